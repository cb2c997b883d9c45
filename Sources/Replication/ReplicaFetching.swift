import KafkaWire
import LogStorage

/// A leader a follower fetches from: the leader's node id and the address of its inter-broker listener.
public struct LeaderEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var nodeID: Int32
    public var host: String
    public var port: Int

    public init(nodeID: Int32, host: String, port: Int) {
        self.nodeID = nodeID
        self.host = host
        self.port = port
    }

    public var description: String { "\(self.nodeID)@\(self.host):\(self.port)" }
}

/// A partition this broker follows, as handed to the fetchers.
public struct FollowedPartition: Sendable {
    public var topicPartition: TopicPartition
    public var topicID: KafkaUUID
    /// The leader epoch the controller gave the leader being followed: sent as the current leader epoch in Fetch
    /// and OffsetForLeaderEpoch, so a fetcher behind or ahead of the leader is told so.
    public var leaderEpoch: Int32
    /// The follower's log: fetched batches are appended to it as follower, it is truncated by leader epoch, and
    /// its `highWatermark` follows the leader's.
    public var log: ManagedLog

    public init(topicPartition: TopicPartition, topicID: KafkaUUID, leaderEpoch: Int32, log: ManagedLog) {
        self.topicPartition = topicPartition
        self.topicID = topicID
        self.leaderEpoch = leaderEpoch
        self.log = log
    }
}

/// Followers' fetching (Kafka's `ReplicaFetcherManager`): the replica manager tells it which partitions to follow
/// from which leader as the image changes; the fetchers truncate each partition by leader epoch, then fetch and
/// append as follower.
public protocol ReplicaFetching: Sendable {
    /// Starts fetching `partitions` from `leader`, each after truncating to where its log and the leader's agree
    /// (OffsetForLeaderEpoch). A partition already followed from another leader or at another epoch moves.
    func follow(_ partitions: [FollowedPartition], from leader: LeaderEndpoint) async
    /// Stops fetching `partitions`. When it returns, no fetcher appends to or truncates their logs any more, so
    /// the replica manager may make this broker their leader.
    func unfollow(_ partitions: [TopicPartition]) async
}
