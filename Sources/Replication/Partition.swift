import ClusterControl
import KafkaWire
import LogStorage
import Synchronization

/// One partition this broker hosts, over its `ManagedLog`, in one of two roles the controller's image gives it:
///
/// - **leader**: takes appends and serves reads, with a `LeaderReplicaState` (the ISR, the followers' fetch
///   positions, the high watermark); the standalone broker's partitions are leaders whose ISR is this broker alone,
///   so their high watermark is the log end (DESIGN.md: "one way to do each thing");
/// - **follower**: the leader's id and epoch are known; clients are refused (NOT_LEADER_OR_FOLLOWER) and the
///   followers' fetchers write the log; the high watermark is the one the leader sent them (`log.highWatermark`).
///
/// Thread-safe: the role and epochs are behind a `Mutex`, the appended-bytes counters are atomics, and
/// `ManagedLog` is thread-safe itself.
public final class Partition: Sendable {
    /// What this broker does for the partition.
    public enum Role: Hashable, Sendable {
        case leader(LeaderReplicaState)
        /// `leaderID` nil while the partition has no leader (offline): nothing is fetched.
        case follower(leaderID: Int32?)
    }

    /// What `recordFollowerFetch` found.
    public enum FollowerFetchOutcome: Sendable, Hashable {
        /// This broker does not lead the partition (any more).
        case notLeader
        /// The fetching broker is not a replica of the partition.
        case notReplica
        /// Recorded: whether the high watermark moved, and the ISR expansion to propose, if any.
        case recorded(highWatermarkMoved: Bool, expansion: [ISRMember]?)
    }

    private struct State {
        var topicID: KafkaUUID
        var leaderEpoch: Int32
        var partitionEpoch: Int32
        var role: Role
        /// Appends above the high watermark, in order: each one's end offset and the running byte total after it.
        /// As the high watermark passes them, `committedBytes` takes their totals.
        var uncommittedAppends: [(endOffset: Int64, bytesAppended: Int64)] = []
    }

    public let topicPartition: TopicPartition
    public let log: ManagedLog
    private let state: Mutex<State>
    /// Bytes appended since this broker became leader: a delayed follower Fetch compares two readings of it to learn
    /// how many bytes arrived while it was parked without touching the disk.
    private let appendedBytes = Atomic<Int64>(0)
    /// Of those, the bytes below the high watermark (visible to consumers): what a delayed consumer Fetch compares.
    private let committedBytes = Atomic<Int64>(0)
    /// At most this many appends are tracked above the high watermark; older ones merge (their bytes then count only
    /// once a later append is committed).
    private static let uncommittedAppendLimit = 4096

    init(
        topicPartition: TopicPartition,
        log: ManagedLog,
        topicID: KafkaUUID,
        leaderEpoch: Int32,
        partitionEpoch: Int32 = 0,
        role: Role
    ) {
        self.topicPartition = topicPartition
        self.log = log
        self.state = Mutex(
            State(topicID: topicID, leaderEpoch: leaderEpoch, partitionEpoch: partitionEpoch, role: role)
        )
    }

    public var topicID: KafkaUUID { self.state.withLock { $0.topicID } }
    public var leaderEpoch: Int32 { self.state.withLock { $0.leaderEpoch } }
    public var partitionEpoch: Int32 { self.state.withLock { $0.partitionEpoch } }
    public var role: Role { self.state.withLock { $0.role } }

    /// Whether this broker leads the partition.
    public var isLeader: Bool {
        if case .leader = self.role { return true }
        return false
    }

    /// The leader's replication state; nil on a follower.
    public var leaderState: LeaderReplicaState? {
        if case .leader(let state) = self.role { return state }
        return nil
    }

    /// The offset below which records are committed (visible to consumers): on the leader the smallest log end
    /// over the ISR, on a follower what the leader last sent.
    public var highWatermark: Int64 {
        if case .leader(let state) = self.role { return state.highWatermark }
        return self.log.highWatermark
    }
    /// The last stable offset: the high watermark while there are no transactions.
    public var lastStableOffset: Int64 { self.highWatermark }
    public var logStartOffset: Int64 { self.log.logStartOffset }
    public var logEndOffset: Int64 { self.log.logEndOffset }

    /// The running total of bytes appended (see `appendedBytes`).
    public var bytesAppended: Int64 { self.appendedBytes.load(ordering: .relaxed) }
    /// The running total of bytes appended and committed (see `committedBytes`).
    public var bytesCommitted: Int64 { self.committedBytes.load(ordering: .relaxed) }

    /// Counts an append of `bytes` ending at `endOffset` and moves the high watermark (the leader's own log end
    /// moved). Returns whether the high watermark moved.
    @discardableResult
    func recordAppend(bytes: Int, endOffset: Int64) -> Bool {
        let total = self.appendedBytes.add(Int64(bytes), ordering: .relaxed).newValue
        return self.withLeaderState { state, pending in
            pending.append((endOffset, total))
            if pending.count > Self.uncommittedAppendLimit { pending.removeFirst(pending.count / 2) }
            return state.updateHighWatermark(leaderLogEndOffset: self.log.logEndOffset)
        } ?? false
    }

    /// Runs `body` on the leader state (nil on a follower); if the high watermark moved, the log's checkpointed high
    /// watermark and the committed-bytes counter follow.
    private func withLeaderState<Result>(
        _ body: (inout LeaderReplicaState, inout [(endOffset: Int64, bytesAppended: Int64)]) -> Result
    ) -> Result? {
        let (result, moved, bytes): (Result?, Bool, Int64?) = self.state.withLock { state in
            guard case .leader(var leader) = state.role else { return (nil, false, nil) }
            let before = leader.highWatermark
            let result = body(&leader, &state.uncommittedAppends)
            state.role = .leader(leader)
            // The replication-offset-checkpoint records what the replica layer last set; under the lock, so two
            // moves cannot land in the wrong order.
            if leader.highWatermark != before { self.log.highWatermark = leader.highWatermark }
            // Appends may be recorded out of offset order (two finished side by side): every one the high watermark
            // passed is committed, the largest running total counts.
            var bytes: Int64?
            while let first = state.uncommittedAppends.first, first.endOffset <= leader.highWatermark {
                bytes = max(bytes ?? 0, first.bytesAppended)
                state.uncommittedAppends.removeFirst()
            }
            return (result, leader.highWatermark != before, bytes)
        }
        if moved, bytes == nil {
            // The high watermark passed records this leader did not append (it fetched them as a follower): at
            // least one byte was committed, which wakes consumers waiting for any.
            self.committedBytes.add(1, ordering: .relaxed)
        }
        if let bytes {
            var current = self.committedBytes.load(ordering: .relaxed)
            while current < bytes {
                let (exchanged, original) = self.committedBytes.compareExchange(
                    expected: current,
                    desired: bytes,
                    ordering: .relaxed
                )
                if exchanged { break }
                current = original
            }
        }
        return result
    }

    /// What `becomeLeader` did.
    enum LeaderChange {
        /// A new leader epoch: the caller records its start in the log's epoch cache.
        case newEpoch
        /// The same leader epoch at a newer partition epoch (the ISR or replicas changed).
        case updated
        /// Nothing: an older epoch (a stale, reordered notice) or the same state again.
        case unchanged
    }

    /// Takes the controller's leadership: at a newer leader epoch (or when this broker followed until now) a fresh
    /// leader state, its high watermark starting at the log's; at the same epoch a newer partition epoch updates the
    /// ISR and replicas; older epochs are ignored, since epochs never go backwards.
    func becomeLeader(
        topicID: KafkaUUID,
        leaderID: Int32,
        leaderEpoch: Int32,
        partitionEpoch: Int32,
        replicas: [Int32],
        isr: [Int32],
        nowMs: Int64
    ) -> LeaderChange {
        let change: LeaderChange = self.state.withLock { state in
            guard leaderEpoch >= state.leaderEpoch else { return .unchanged }
            if leaderEpoch == state.leaderEpoch, case .leader(var leader) = state.role {
                guard leader.update(partitionEpoch: partitionEpoch, replicas: replicas, isr: isr, nowMs: nowMs)
                else { return .unchanged }
                state.partitionEpoch = partitionEpoch
                state.topicID = topicID
                state.role = .leader(leader)
                return .updated
            }
            let logEnd = self.log.logEndOffset
            state.topicID = topicID
            state.leaderEpoch = leaderEpoch
            state.partitionEpoch = partitionEpoch
            state.uncommittedAppends = []
            state.role = .leader(
                LeaderReplicaState(
                    leaderID: leaderID,
                    leaderEpoch: leaderEpoch,
                    partitionEpoch: partitionEpoch,
                    replicas: replicas,
                    isr: isr,
                    leaderEpochStartOffset: logEnd,
                    highWatermark: min(self.log.highWatermark, logEnd),
                    nowMs: nowMs
                )
            )
            return .newEpoch
        }
        if change != .unchanged {
            // The ISR may be this broker alone now: the high watermark catches up with the log end at once.
            let logEnd = self.log.logEndOffset
            _ = self.withLeaderState { state, _ in state.updateHighWatermark(leaderLogEndOffset: logEnd) }
        }
        return change
    }

    /// Takes the controller's word that `leaderID` (nil: nobody) leads the partition at `leaderEpoch`. An older
    /// epoch is ignored. Returns whether anything changed.
    func becomeFollower(topicID: KafkaUUID, leaderID: Int32?, leaderEpoch: Int32, partitionEpoch: Int32) -> Bool {
        self.state.withLock { state in
            guard
                leaderEpoch > state.leaderEpoch
                    || (leaderEpoch == state.leaderEpoch && partitionEpoch >= state.partitionEpoch)
            else { return false }
            let next = Role.follower(leaderID: leaderID)
            if state.role == next, state.leaderEpoch == leaderEpoch, state.partitionEpoch == partitionEpoch {
                return false
            }
            if case .leader(let leader) = state.role {
                // The committed offsets stay in the log's checkpoint; the fetchers move them from here on.
                self.log.highWatermark = leader.highWatermark
            }
            state.topicID = topicID
            state.leaderEpoch = leaderEpoch
            state.partitionEpoch = partitionEpoch
            state.role = next
            state.uncommittedAppends = []
            return true
        }
    }

    /// Records a follower's fetch (see `LeaderReplicaState.recordFetch`) and computes the ISR expansion it allows.
    func recordFollowerFetch(
        from replica: Int32,
        fetchOffset: Int64,
        brokerEpoch: Int64,
        leaderLogEndOffset: Int64,
        nowMs: Int64
    ) -> FollowerFetchOutcome {
        self.withLeaderState { state, _ -> FollowerFetchOutcome in
            guard
                let moved = state.recordFetch(
                    from: replica,
                    fetchOffset: fetchOffset,
                    brokerEpoch: brokerEpoch,
                    leaderLogEndOffset: leaderLogEndOffset,
                    nowMs: nowMs
                )
            else { return .notReplica }
            return .recorded(highWatermarkMoved: moved, expansion: state.proposedExpansion(adding: replica))
        } ?? .notLeader
    }

    /// Whether `replica` is a follower of this partition while this broker leads it.
    func isFollower(_ replica: Int32) -> Bool {
        self.leaderState?.followers[replica] != nil
    }

    /// Marks an ISR change as sent (the high watermark counts the maximal ISR from now on), if this broker still
    /// leads at `leaderEpoch` and `partitionEpoch` and nothing else is in flight. Returns whether it did.
    func markISRChangeInFlight(_ proposed: [Int32], leaderEpoch: Int32, partitionEpoch: Int32) -> Bool {
        self.withLeaderState { state, _ in
            guard state.leaderEpoch == leaderEpoch, state.partitionEpoch == partitionEpoch, state.inFlight == nil
            else { return false }
            state.markInFlight(proposed, leaderLogEndOffset: self.log.logEndOffset)
            return true
        } ?? false
    }

    /// The controller's answer to the ISR change proposed at `leaderEpoch` and `partitionEpoch`: `committed` (the ISR
    /// and partition epoch it stored), or an error that leaves the change waiting for the image (`awaitingImage:
    /// true`) or forgets it. An answer to an older leadership or proposal changes nothing. Returns whether the high
    /// watermark moved.
    func settleISRChange(
        leaderEpoch: Int32,
        partitionEpoch proposedAt: Int32,
        committed: (isr: [Int32], partitionEpoch: Int32)?,
        awaitingImage: Bool,
        nowMs: Int64
    ) -> Bool {
        let moved: Bool? = self.withLeaderState { state, _ in
            guard state.leaderEpoch == leaderEpoch else { return false }
            if let committed {
                return state.commit(
                    isr: committed.isr,
                    partitionEpoch: committed.partitionEpoch,
                    proposedAt: proposedAt,
                    leaderLogEndOffset: self.log.logEndOffset,
                    nowMs: nowMs
                )
            }
            if awaitingImage {
                state.awaitImage(proposedAt: proposedAt)
            } else {
                state.abandonInFlight(proposedAt: proposedAt)
            }
            return false
        }
        if let committed, moved != nil {
            self.state.withLock { state in
                if committed.partitionEpoch > state.partitionEpoch, state.leaderEpoch == leaderEpoch {
                    state.partitionEpoch = committed.partitionEpoch
                }
            }
        }
        return moved ?? false
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
