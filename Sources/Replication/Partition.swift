import KafkaWire
import LogStorage
import Synchronization

/// One partition this broker hosts, over its `ManagedLog`. For now always the leader with the ISR being this broker
/// alone, so the high watermark is the log end offset (DESIGN.md: "one way to do each thing"; followers, the ISR
/// and a lagging high watermark come with the cluster issue).
///
/// Thread-safe: the leader epoch and topic id are behind a `Mutex`, the appended-bytes counter is an atomic, and
/// `ManagedLog` is thread-safe itself.
public final class Partition: Sendable {
    public let topicPartition: TopicPartition
    public let log: ManagedLog
    private let leadership: Mutex<(topicID: KafkaUUID, leaderEpoch: Int32)>
    /// Bytes appended since this broker became leader: a delayed Fetch compares two readings of it to learn how
    /// many bytes arrived while it was parked without touching the disk.
    private let appendedBytes = Atomic<Int64>(0)

    init(topicPartition: TopicPartition, log: ManagedLog, topicID: KafkaUUID, leaderEpoch: Int32) {
        self.topicPartition = topicPartition
        self.log = log
        self.leadership = Mutex((topicID, leaderEpoch))
    }

    public var topicID: KafkaUUID { self.leadership.withLock { $0.topicID } }
    public var leaderEpoch: Int32 { self.leadership.withLock { $0.leaderEpoch } }

    /// The offset below which records are committed (visible to consumers): the log end while the ISR is this
    /// broker alone.
    public var highWatermark: Int64 { self.log.logEndOffset }
    /// The last stable offset: the high watermark while there are no transactions.
    public var lastStableOffset: Int64 { self.highWatermark }
    public var logStartOffset: Int64 { self.log.logStartOffset }
    public var logEndOffset: Int64 { self.log.logEndOffset }

    /// The running total of bytes appended (see `appendedBytes`).
    public var bytesAppended: Int64 { self.appendedBytes.load(ordering: .relaxed) }

    func recordAppend(bytes: Int) {
        self.appendedBytes.add(Int64(bytes), ordering: .relaxed)
        // The replication-offset-checkpoint records what the replica layer last set.
        self.log.highWatermark = self.log.logEndOffset
    }

    /// Takes the controller's newer leadership; an older epoch (a stale, reordered notice) is ignored, since leader
    /// epochs never go backwards. Returns whether the epoch was applied.
    @discardableResult
    func update(topicID: KafkaUUID, leaderEpoch: Int32) -> Bool {
        self.leadership.withLock { current in
            guard leaderEpoch >= current.leaderEpoch else { return false }
            current = (topicID, leaderEpoch)
            return true
        }
    }

    /// Kafka's check of a client's current leader epoch (KIP-320): -1 skips it; an older epoch is FENCED_LEADER_EPOCH
    /// (the client learns of a newer leader), a newer one UNKNOWN_LEADER_EPOCH (this broker has not caught up).
    public func checkLeaderEpoch(_ requested: Int32) -> ErrorCode {
        guard requested >= 0 else { return .none }
        let current = self.leaderEpoch
        if requested < current { return .fencedLeaderEpoch }
        if requested > current { return .unknownLeaderEpoch }
        return .none
    }
}
