import ClusterControl
import Foundation
import KafkaMessages
import KafkaWire

/// DescribeQuorum (key 55), v0–2: the controller quorum as `kafka-metadata-quorum` reads it, answered by the active
/// controller of this process. Kafka's quorum is the Raft log of `__cluster_metadata`; here etcd is the quorum and
/// the image is its state, so for partition 0 of `__cluster_metadata`:
/// - leader id: the active controller; leader epoch: its controller epoch (the election key's create revision,
///   clamped to Int32); high watermark: the image revision it has applied;
/// - current voters: the active controller alone (the standbys are not known to it), with its revision as log end
///   offset, as Kafka reports a leader (last fetch -1, last caught up now);
/// - observers: every registered broker, with the image revision its last heartbeat reported applied as log end
///   offset, that heartbeat's time as last fetch time, and as last caught-up time too when it had applied the
///   current revision (-1 where unknown: no heartbeat yet in this controller's term). A broker registered
///   in-process (the standalone broker) follows this very image: the current revision, now;
/// - nodes (v2): the active controller's CONTROLLER listener, when it has one.
///
/// A request for anything but `__cluster_metadata` partition 0 gets UNKNOWN_TOPIC_OR_PARTITION at the top, as
/// Kafka's `KafkaRaftClient` answers; while this process's controller is not the active one, the partition gets
/// NOT_LEADER_OR_FOLLOWER (a broker may forward the request to the active controller instead).
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct DescribeQuorumHandler: KafkaHandler {
    public typealias Request = DescribeQuorumRequest

    public var versions: ClosedRange<Int16> { 0...2 }

    /// Kafka's metadata topic, whose partition 0 is the quorum.
    public static let metadataTopic = "__cluster_metadata"

    let controller: Controller

    public init(controller: Controller) {
        self.controller = controller
    }

    public func handle(_ request: DescribeQuorumRequest, context: RequestContext) async -> DescribeQuorumResponse {
        guard request.topics.count == 1, let topic = request.topics.first, topic.topicName == Self.metadataTopic,
            topic.partitions.map(\.partitionIndex) == [0]
        else {
            return DescribeQuorumResponse(errorCode: ErrorCode.unknownTopicOrPartition.rawValue)
        }
        guard let active = self.controller.activeController, let epoch = await active.epoch else {
            return Self.partitionError(.notLeaderOrFollower, message: "this node is not the active controller")
        }
        let sessions = await active.brokerSessions()
        let followed = await self.controller.follower.followed
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let revision = followed.revision
        let observers = followed.image.brokers.values.sorted { $0.nodeID < $1.nodeID }.map { broker in
            if let session = sessions[broker.nodeID] {
                let lastContact = now - session.millisecondsSinceLastContact
                return DescribeQuorumResponse.ReplicaState(
                    replicaID: broker.nodeID,
                    logEndOffset: session.appliedRevision,
                    lastFetchTimestamp: lastContact,
                    lastCaughtUpTimestamp: session.appliedRevision >= revision ? lastContact : -1
                )
            }
            if broker.isInProcess {
                // The standalone broker, registered by its own controller: it follows this very image.
                return DescribeQuorumResponse.ReplicaState(
                    replicaID: broker.nodeID,
                    logEndOffset: revision,
                    lastFetchTimestamp: now,
                    lastCaughtUpTimestamp: now
                )
            }
            return DescribeQuorumResponse.ReplicaState(replicaID: broker.nodeID, logEndOffset: -1)
        }
        let leader = DescribeQuorumResponse.ReplicaState(
            replicaID: active.nodeID,
            logEndOffset: revision,
            lastFetchTimestamp: -1,
            lastCaughtUpTimestamp: now
        )
        let endpoint = followed.controller.flatMap { $0.nodeID == active.nodeID ? $0.endpoint : nil }
        return DescribeQuorumResponse(
            topics: [
                .init(
                    topicName: Self.metadataTopic,
                    partitions: [
                        .init(
                            partitionIndex: 0,
                            leaderID: active.nodeID,
                            leaderEpoch: Int32(clamping: epoch),
                            highWatermark: revision,
                            currentVoters: [leader],
                            observers: observers
                        )
                    ]
                )
            ],
            nodes: endpoint.map { endpoint in
                [
                    .init(
                        nodeID: active.nodeID,
                        listeners: [
                            .init(name: endpoint.listener, host: endpoint.host, port: UInt16(clamping: endpoint.port))
                        ]
                    )
                ]
            } ?? []
        )
    }

    /// The answer for `__cluster_metadata` partition 0 with `error`, as Kafka's `getPartitionLevelErrorResponse`.
    static func partitionError(_ error: ErrorCode, message: String) -> DescribeQuorumResponse {
        DescribeQuorumResponse(
            topics: [
                .init(
                    topicName: Self.metadataTopic,
                    partitions: [.init(partitionIndex: 0, errorCode: error.rawValue, errorMessage: message)]
                )
            ]
        )
    }
}
