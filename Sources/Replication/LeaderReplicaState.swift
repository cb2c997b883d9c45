import ClusterControl
import KafkaWire

/// The leader's view of one partition's replication (Kafka's `Partition` and `Replica` state on the leader): the
/// replicas and the ISR the controller committed, each follower's log end offset, broker epoch and last caught-up
/// time as its fetches report them, the ISR change in flight, and the high watermark.
///
/// The rules, all pure functions of this value and the times and offsets the caller passes in:
/// - the high watermark is the smallest log end offset over the ISR (the leader's own included) and never goes
///   backwards; while an ISR change is in flight it is computed over the larger of the committed and the proposed
///   ISR (KIP-497: an expansion counts the joining follower at once, a shrink keeps counting the leaving one until
///   the controller committed it);
/// - a follower is caught up at a fetch that reached the leader's log end as it was when the fetch started (Kafka's
///   `lastCaughtUpTimeMs`); an ISR member not caught up for `replica.lag.time.max.ms` should leave;
/// - a follower outside the ISR may rejoin once its log end reached the high watermark and the start of the current
///   leader epoch (it fetched within this epoch);
/// - one ISR change is in flight at a time.
///
/// A plain value without I/O or locks; `Partition` keeps it behind its `Mutex`. Thread-safe as a value.
public struct LeaderReplicaState: Hashable, Sendable {
    /// What the leader knows of one follower, from its fetches.
    public struct FollowerState: Hashable, Sendable {
        /// The follower's log end offset (the offset of its last fetch); -1 until it fetched in this leader epoch.
        public var logEndOffset: Int64 = -1
        /// The broker epoch the follower fetched with (Fetch v15+ `ReplicaState`), -1 when not known.
        public var brokerEpoch: Int64 = -1
        /// The time of the last fetch that reached the leader's log end as it was when that fetch started.
        public var lastCaughtUpTimeMs: Int64
        /// The time of the last fetch, and the leader's log end offset then.
        public var lastFetchTimeMs: Int64 = 0
        public var lastFetchLeaderLogEndOffset: Int64 = -1

        public init(lastCaughtUpTimeMs: Int64) {
            self.lastCaughtUpTimeMs = lastCaughtUpTimeMs
        }

        /// Kafka's `isCaughtUp`: at the leader's log end, or caught up within `maxLagMs`.
        public func isCaughtUp(leaderLogEndOffset: Int64, nowMs: Int64, maxLagMs: Int64) -> Bool {
            self.logEndOffset == leaderLogEndOffset || nowMs - self.lastCaughtUpTimeMs <= maxLagMs
        }
    }

    /// An ISR change sent to the controller and not answered, or refused with an answer that only a newer image
    /// can settle (INVALID_UPDATE_VERSION, FENCED_LEADER_EPOCH).
    public struct InFlightChange: Hashable, Sendable {
        public var proposedISR: [Int32]
        /// The partition epoch it was proposed at: an answer to an older proposal does not settle it.
        public var partitionEpoch: Int32
        /// The controller refused it; nothing more is proposed until the image brings a newer partition epoch.
        public var awaitingImage: Bool = false
    }

    public let leaderID: Int32
    public private(set) var leaderEpoch: Int32
    /// The log end offset when this leader epoch began: a follower that reached it has fetched in this epoch.
    public private(set) var leaderEpochStartOffset: Int64
    public private(set) var partitionEpoch: Int32
    /// In assignment order, the leader included.
    public private(set) var replicas: [Int32]
    /// The ISR the controller committed, the leader included.
    public private(set) var isr: [Int32]
    public private(set) var inFlight: InFlightChange?
    public private(set) var highWatermark: Int64
    /// Every replica but the leader.
    public private(set) var followers: [Int32: FollowerState]

    /// The state of a leader at a new leader epoch: followers in the ISR count as caught up now (so they are not
    /// shrunk before they had a chance to fetch), the others never; no follower's log end is known yet, so the high
    /// watermark stays at `highWatermark` until every ISR member fetched (unless the ISR is the leader alone).
    public init(
        leaderID: Int32,
        leaderEpoch: Int32,
        partitionEpoch: Int32,
        replicas: [Int32],
        isr: [Int32],
        leaderEpochStartOffset: Int64,
        highWatermark: Int64,
        nowMs: Int64
    ) {
        self.leaderID = leaderID
        self.leaderEpoch = leaderEpoch
        self.leaderEpochStartOffset = leaderEpochStartOffset
        self.partitionEpoch = partitionEpoch
        self.replicas = replicas
        self.isr = isr
        self.highWatermark = highWatermark
        self.followers = [:]
        for replica in replicas where replica != leaderID {
            self.followers[replica] = FollowerState(lastCaughtUpTimeMs: isr.contains(replica) ? nowMs : 0)
        }
    }

    /// The ISR the high watermark and acks=all wait for: the committed one, joined by the proposed one while a
    /// change is in flight.
    public var maximalISR: [Int32] {
        guard let proposed = self.inFlight?.proposedISR else { return self.isr }
        return self.isr + proposed.filter { !self.isr.contains($0) }
    }

    /// Takes a newer partition epoch of the same leader epoch from the controller (an ISR change committed, or
    /// replicas changed): the ISR and replicas are replaced, the in-flight change is settled, followers keep what
    /// their fetches told. An older or equal partition epoch is ignored. Returns whether it applied.
    @discardableResult
    public mutating func update(partitionEpoch: Int32, replicas: [Int32], isr: [Int32], nowMs: Int64) -> Bool {
        guard partitionEpoch > self.partitionEpoch else { return false }
        self.partitionEpoch = partitionEpoch
        self.replicas = replicas
        self.isr = isr
        self.inFlight = nil
        for replica in replicas where replica != self.leaderID && self.followers[replica] == nil {
            self.followers[replica] = FollowerState(lastCaughtUpTimeMs: isr.contains(replica) ? nowMs : 0)
        }
        for replica in self.followers.keys where !replicas.contains(replica) {
            self.followers[replica] = nil
        }
        return true
    }

    /// Records a follower's fetch at `fetchOffset` (its log end), which started when the leader's log ended at
    /// `leaderLogEndOffset`, and moves the high watermark. Kafka's `updateFetchStateOrThrow`: a fetch that reached
    /// the leader's log end makes the follower caught up now; one that reached the leader's log end as of the
    /// previous fetch makes it caught up as of that fetch.
    /// - Returns: whether the high watermark moved; nil when `replica` is not a follower of this partition.
    public mutating func recordFetch(
        from replica: Int32,
        fetchOffset: Int64,
        brokerEpoch: Int64,
        leaderLogEndOffset: Int64,
        nowMs: Int64
    ) -> Bool? {
        guard var follower = self.followers[replica] else { return nil }
        if fetchOffset >= leaderLogEndOffset {
            follower.lastCaughtUpTimeMs = max(follower.lastCaughtUpTimeMs, nowMs)
        } else if fetchOffset >= follower.lastFetchLeaderLogEndOffset, follower.lastFetchLeaderLogEndOffset >= 0 {
            follower.lastCaughtUpTimeMs = max(follower.lastCaughtUpTimeMs, follower.lastFetchTimeMs)
        }
        follower.logEndOffset = fetchOffset
        if brokerEpoch >= 0 { follower.brokerEpoch = brokerEpoch }
        follower.lastFetchLeaderLogEndOffset = leaderLogEndOffset
        follower.lastFetchTimeMs = nowMs
        self.followers[replica] = follower
        return self.updateHighWatermark(leaderLogEndOffset: leaderLogEndOffset)
    }

    /// Moves the high watermark to the smallest log end offset over the maximal ISR (the leader's is
    /// `leaderLogEndOffset`), never backwards. Returns whether it moved.
    @discardableResult
    public mutating func updateHighWatermark(leaderLogEndOffset: Int64) -> Bool {
        var candidate = leaderLogEndOffset
        for member in self.maximalISR where member != self.leaderID {
            // A member the leader has no state for (not a replica) cannot hold anything back or let anything pass.
            guard let follower = self.followers[member] else { continue }
            candidate = min(candidate, follower.logEndOffset)
        }
        guard candidate > self.highWatermark else { return false }
        self.highWatermark = candidate
        return true
    }

    /// ISR members (never the leader) not caught up for `maxLagMs` (Kafka's `getOutOfSyncReplicas`).
    public func outOfSyncReplicas(leaderLogEndOffset: Int64, nowMs: Int64, maxLagMs: Int64) -> [Int32] {
        self.isr.filter { member in
            guard member != self.leaderID, let follower = self.followers[member] else { return false }
            return !follower.isCaughtUp(leaderLogEndOffset: leaderLogEndOffset, nowMs: nowMs, maxLagMs: maxLagMs)
        }
    }

    /// Whether `replica`, outside the ISR, may rejoin: its log end reached the high watermark and the start of this
    /// leader epoch (Kafka's `isFollowerInSync`).
    public func mayJoinISR(_ replica: Int32) -> Bool {
        guard !self.isr.contains(replica), let follower = self.followers[replica] else { return false }
        return follower.logEndOffset >= self.highWatermark && follower.logEndOffset >= self.leaderEpochStartOffset
    }

    /// The shrink to propose now, if any: the ISR without its out-of-sync members, when no change is in flight.
    public func proposedShrink(leaderLogEndOffset: Int64, nowMs: Int64, maxLagMs: Int64) -> [ISRMember]? {
        guard self.inFlight == nil else { return nil }
        let leaving = self.outOfSyncReplicas(leaderLogEndOffset: leaderLogEndOffset, nowMs: nowMs, maxLagMs: maxLagMs)
        guard !leaving.isEmpty else { return nil }
        return self.members(self.isr.filter { !leaving.contains($0) })
    }

    /// The expansion to propose after `replica`'s fetch, if any: the ISR with it, when it may join and no change is
    /// in flight.
    public func proposedExpansion(adding replica: Int32) -> [ISRMember]? {
        guard self.inFlight == nil, self.mayJoinISR(replica) else { return nil }
        return self.members(self.isr + [replica])
    }

    /// `ids` with the broker epoch each fetched with (-1 for the leader and for followers that did not say).
    private func members(_ ids: [Int32]) -> [ISRMember] {
        ids.map { ISRMember(brokerID: $0, brokerEpoch: self.followers[$0]?.brokerEpoch ?? -1) }
    }

    /// Marks `proposed` as sent to the controller: from now on the high watermark counts the maximal ISR.
    public mutating func markInFlight(_ proposed: [Int32], leaderLogEndOffset: Int64) {
        self.inFlight = InFlightChange(proposedISR: proposed, partitionEpoch: self.partitionEpoch)
        self.updateHighWatermark(leaderLogEndOffset: leaderLogEndOffset)
    }

    /// The controller committed `isr` at `partitionEpoch`, answering the change proposed at `proposedAt`; an answer
    /// the image already overtook changes nothing (and leaves a newer proposal in flight). Returns whether the high
    /// watermark moved.
    @discardableResult
    public mutating func commit(
        isr: [Int32],
        partitionEpoch: Int32,
        proposedAt: Int32,
        leaderLogEndOffset: Int64,
        nowMs: Int64
    ) -> Bool {
        if partitionEpoch > self.partitionEpoch {
            self.update(partitionEpoch: partitionEpoch, replicas: self.replicas, isr: isr, nowMs: nowMs)
        } else if self.inFlight?.partitionEpoch == proposedAt {
            self.inFlight = nil
        }
        return self.updateHighWatermark(leaderLogEndOffset: leaderLogEndOffset)
    }

    /// The change proposed at `proposedAt` failed without an answer (the controller could not be reached): it is
    /// forgotten, so the next check proposes again.
    public mutating func abandonInFlight(proposedAt: Int32) {
        if self.inFlight?.partitionEpoch == proposedAt { self.inFlight = nil }
    }

    /// The controller refused the change proposed at `proposedAt` for a stale partition or leader epoch: nothing more
    /// is proposed until the image brings a newer partition epoch (`update`).
    public mutating func awaitImage(proposedAt: Int32) {
        if self.inFlight?.partitionEpoch == proposedAt { self.inFlight?.awaitingImage = true }
    }

    /// The ISR size acks=all needs: `min.insync.replicas`, but never more than the replicas (Kafka's
    /// `effectiveMinIsr`).
    public func effectiveMinISR(_ minInSyncReplicas: Int) -> Int {
        min(minInSyncReplicas, self.replicas.count)
    }

    /// Whether an acks=all produce is refused before its append (NOT_ENOUGH_REPLICAS).
    public func isUnderMinISR(_ minInSyncReplicas: Int) -> Bool {
        self.isr.count < self.effectiveMinISR(minInSyncReplicas)
    }

    /// Kafka's `checkEnoughReplicasReachOffset`: nil while the high watermark is below `requiredOffset`, then NONE,
    /// or NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below `min.insync.replicas` meanwhile.
    public func acknowledgement(of requiredOffset: Int64, minInSyncReplicas: Int) -> ErrorCode? {
        guard self.highWatermark >= requiredOffset else { return nil }
        return self.isUnderMinISR(minInSyncReplicas) ? .notEnoughReplicasAfterAppend : ErrorCode.none
    }
}
