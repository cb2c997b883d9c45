import Glibc
import KafkaWire

/// The classic group coordinator (Kafka's `GroupCoordinator`, before KIP-848): members join, the group rebalances
/// (JoinGroup answers are held until every known member has rejoined or the rebalance timeout passed, the first
/// rebalance of an empty group waits `group.initial.rebalance.delay.ms` for more members), the leader's assignment
/// goes out through SyncGroup, heartbeats keep members in, and a member silent for its session timeout is dropped
/// and the group rebalances. Offsets committed by members of the current generation, or by consumers without a
/// group generation while the group has no members, are kept per partition.
///
/// Committed offsets are handed to a `GroupStore` (the broker's `__consumer_offsets`) and acknowledged only once
/// it kept them. So is each group's state, as Kafka keeps it: when the leader's assignment arrives (SyncGroup is
/// answered once it is kept), when the group empties, when a static member is replaced, and a tombstone when the
/// group goes. `load` replays the records at start: a stable group comes back with its generation, members and
/// assignments, so members that keep heartbeating across a coordinator restart see no rebalance.
/// Offsets expire as Kafka's `removeExpiredOffsets` (KIP-211) has them: those of a group with a protocol type once
/// it has been empty for `offsets.retention.minutes`, those of a group used only for commits each that long after
/// its commit (or at the expire timestamp an OffsetCommit v2–4 gave); offsets of deleted topics go at once.
/// Static members (KIP-345) that restart within their session timeout keep their assignment without a rebalance.
///
/// JoinGroup and SyncGroup requests that must wait park on the broker's delayed-operation queue under the group id
/// (`ParkedRequests`), so a closed connection's request leaves at once. Rebalance deadlines are timers of the
/// actor, and session expiry is a 100 ms sweep of its members rather than one parked heartbeat per member.
///
/// Thread safety: an actor.
public actor GroupCoordinator {
    public struct Configuration: Sendable {
        /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
        public var minSessionTimeoutMs: Int32 = 6_000
        public var maxSessionTimeoutMs: Int32 = 1_800_000
        /// `group.initial.rebalance.delay.ms`.
        public var initialRebalanceDelayMs: Int32 = 3_000
        /// `offset.metadata.max.bytes`.
        public var maxMetadataBytes = 4_096
        /// `group.max.size`.
        public var maxGroupSize = Int(Int32.max)
        /// `offsets.retention.minutes`, in ms.
        public var offsetsRetentionMs: Int64 = 7 * 24 * 3_600_000
        /// `offsets.retention.check.interval.ms`.
        public var offsetsRetentionCheckIntervalMs: Int64 = 600_000

        public init() {}
    }

    /// One member's JoinGroup.
    public struct JoinRequest: Sendable {
        public var groupID: String
        public var memberID: String
        public var instanceID: String?
        public var clientID: String
        public var clientHost: String
        public var sessionTimeoutMs: Int32
        public var rebalanceTimeoutMs: Int32
        public var protocolType: String
        public var protocols: [(name: String, metadata: [UInt8])]
        /// JoinGroup v4+: a first join without a member id gets one with MEMBER_ID_REQUIRED (KIP-394).
        public var requiresKnownMemberID: Bool
        /// JoinGroup v9+: a restarted static leader can be told to skip the assignment (KIP-814).
        public var supportsSkipAssignment: Bool

        public init(
            groupID: String, memberID: String, instanceID: String?, clientID: String, clientHost: String,
            sessionTimeoutMs: Int32, rebalanceTimeoutMs: Int32, protocolType: String,
            protocols: [(name: String, metadata: [UInt8])], requiresKnownMemberID: Bool,
            supportsSkipAssignment: Bool = false
        ) {
            self.groupID = groupID
            self.memberID = memberID
            self.instanceID = instanceID
            self.clientID = clientID
            self.clientHost = clientHost
            self.sessionTimeoutMs = sessionTimeoutMs
            self.rebalanceTimeoutMs = rebalanceTimeoutMs
            self.protocolType = protocolType
            self.protocols = protocols
            self.requiresKnownMemberID = requiresKnownMemberID
            self.supportsSkipAssignment = supportsSkipAssignment
        }
    }

    public let configuration: Configuration
    private let store: (any GroupStore)?
    /// The last group-state write: each waits for the one before, so a group's records land in the order they
    /// were made (an emptied group's record must not overtake the next generation's).
    private var lastGroupWrite: Task<Bool, Never>?
    private var groups: [String: Group] = [:]
    private var sweeper: Task<Void, Never>?
    /// Parked JoinGroup and SyncGroup requests.
    private let parked = ParkedRequests()
    /// JoinGroup and SyncGroup requests parked now.
    public nonisolated var parkedRequests: Int { self.parked.count }
    /// Until the store's offsets are loaded, group requests answer COORDINATOR_LOAD_IN_PROGRESS (retriable).
    public private(set) var isLoaded: Bool

    /// A coordinator whose commits `store` keeps, loaded by `load` (nil: in memory only, loaded at once).
    public init(configuration: Configuration = Configuration(), store: (any GroupStore)? = nil) {
        self.configuration = configuration
        self.store = store
        self.isLoaded = store == nil
    }

    /// Records kept earlier, in the order they were written; the coordinator serves from then on.
    public func load(_ records: [StoredRecord]) {
        defer { self.isLoaded = true }
        self.startSweeper()
        var kept: [String: StoredGroup?] = [:]
        for record in records {
            switch record {
            case .offset(let groupID, let partition, let offset):
                var group = self.groups[groupID] ?? Group(id: groupID)
                group.offsets[partition] = offset
                self.groups[groupID] = group
            case .group(let groupID, let stored):
                kept[groupID] = .some(stored)
                // A tombstone ends the group's offsets too (DeleteGroups writes both).
                if stored == nil { self.groups[groupID] = nil }
            }
        }
        for (groupID, stored) in kept {
            guard let stored else { continue }
            var group = self.groups[groupID] ?? Group(id: groupID)
            group.restore(stored)
            self.groups[groupID] = group
        }
        // A group with no members and no offsets left is gone, as after DeleteGroups.
        self.groups = self.groups.filter { !$0.value.members.isEmpty || !$0.value.offsets.isEmpty }
    }

    // MARK: Membership

    public func join(_ request: JoinRequest) async -> JoinResult {
        guard self.isLoaded else { return JoinResult(error: .coordinatorLoadInProgress) }
        guard !request.groupID.isEmpty else { return JoinResult(error: .invalidGroupID) }
        guard (self.configuration.minSessionTimeoutMs...self.configuration.maxSessionTimeoutMs)
            .contains(request.sessionTimeoutMs)
        else { return JoinResult(error: .invalidSessionTimeout) }
        self.startSweeper()
        var group = self.groups[request.groupID] ?? Group(id: request.groupID)
        var memberID = request.memberID
        if let instanceID = request.instanceID,
            let known = group.members.values.first(where: { $0.instanceID == instanceID })
        {
            // Static membership (KIP-345): the instance's member id is the one the group knows; another one is fenced.
            guard memberID.isEmpty || memberID == known.id else {
                return JoinResult(error: .fencedInstanceID, memberID: memberID)
            }
            if memberID.isEmpty, let replaced = self.replaceStaticMember(known.id, in: &group, request: request) {
                self.groups[request.groupID] = group
                // Kept before the answer, so a restarted coordinator knows the new member id.
                _ = await self.writeGroup(group.id, group.stored(at: Self.nowMs())).value
                return replaced
            }
            memberID = known.id
        } else if memberID.isEmpty {
            memberID = "\(request.clientID)-\(Self.randomSuffix())"
            if request.requiresKnownMemberID && request.instanceID == nil {
                group.pending.insert(memberID)
                self.groups[request.groupID] = group
                return JoinResult(error: .memberIDRequired, memberID: memberID)
            }
        } else if group.members[memberID] == nil && !group.pending.contains(memberID) {
            return JoinResult(error: .unknownMemberID, memberID: memberID)
        }
        guard group.accepts(type: request.protocolType, protocols: request.protocols.map(\.name), replacing: memberID)
        else { return JoinResult(error: .inconsistentGroupProtocol, memberID: memberID) }
        let isNew = group.members[memberID] == nil
        if isNew && group.members.count >= self.configuration.maxGroupSize {
            return JoinResult(error: .groupMaxSizeReached, memberID: memberID)
        }
        group.pending.remove(memberID)
        let deadline = ContinuousClock.now + .milliseconds(Int64(request.sessionTimeoutMs))
        let changed = isNew || group.members[memberID].map { old in
            old.protocols.map(\.name) != request.protocols.map(\.name)
                || zip(old.protocols, request.protocols).contains { $0.metadata != $1.metadata }
        } ?? true
        var member = group.members[memberID] ?? Member(
            id: memberID, instanceID: request.instanceID, clientID: request.clientID, clientHost: request.clientHost,
            sessionTimeoutMs: request.sessionTimeoutMs, rebalanceTimeoutMs: request.rebalanceTimeoutMs,
            protocolType: request.protocolType, protocols: request.protocols, sessionDeadline: deadline
        )
        member.protocols = request.protocols
        member.sessionTimeoutMs = request.sessionTimeoutMs
        member.rebalanceTimeoutMs = request.rebalanceTimeoutMs
        member.sessionDeadline = deadline
        if isNew { group.order.append(memberID) }
        // A stable group answers a follower that rejoins unchanged at once; anything else rebalances.
        if group.state == .stable && !changed && group.leader != memberID {
            group.members[memberID] = member
            self.groups[request.groupID] = group
            return self.joinResult(group, for: memberID)
        }
        // A repeated JoinGroup replaces the one still parked, which learns a rebalance is on.
        if let earlier = member.joinWaiter {
            self.parked.post(.join(JoinResult(error: .rebalanceInProgress, memberID: memberID)), to: earlier,
                             groupID: group.id)
        }
        let ticket = self.parked.ticket()
        member.joinWaiter = ticket
        group.members[memberID] = member
        if group.state != .preparingRebalance { self.prepareRebalance(&group) }
        self.groups[request.groupID] = group
        self.completeJoinIfReady(request.groupID)
        guard case .join(let result)? = await self.park(ticket, of: memberID, in: group) else {
            return JoinResult(error: .rebalanceInProgress, memberID: memberID)
        }
        return result
    }

    public func sync(
        groupID: String,
        generation: Int32,
        memberID: String,
        assignments: [String: [UInt8]]
    ) async -> SyncResult {
        guard var group = self.groups[groupID], var member = group.members[memberID] else {
            return SyncResult(error: .unknownMemberID)
        }
        guard generation == group.generation else { return SyncResult(error: .illegalGeneration) }
        switch group.state {
        case .empty, .dead:
            return SyncResult(error: .unknownMemberID)
        case .preparingRebalance:
            return SyncResult(error: .rebalanceInProgress)
        case .stable:
            return SyncResult(error: .none, protocolType: group.protocolType, protocolName: group.protocolName,
                              assignment: member.assignment)
        case .completingRebalance where memberID == group.leader:
            // The plan is kept before anyone learns it, as Kafka does, so a restarted coordinator has it.
            var planned = group
            for id in planned.order { planned.members[id]?.assignment = assignments[id] ?? [] }
            let kept = await self.writeGroup(groupID, planned.stored(at: Self.nowMs())).value
            guard var group = self.groups[groupID], group.state == .completingRebalance, group.generation == generation,
                group.leader == memberID
            else { return SyncResult(error: .rebalanceInProgress) }
            guard kept else {
                // Not kept: the members rejoin for another try (Kafka answers the append's error and rebalances).
                for id in group.order { self.answerSync(id, in: &group, SyncResult(error: .coordinatorNotAvailable)) }
                self.prepareRebalance(&group)
                self.groups[groupID] = group
                return SyncResult(error: .coordinatorNotAvailable)
            }
            for id in group.order { group.members[id]?.assignment = assignments[id] ?? [] }
            group.state = .stable
            for id in group.order {
                self.answerSync(id, in: &group, SyncResult(
                    error: .none, protocolType: group.protocolType, protocolName: group.protocolName,
                    assignment: group.members[id]?.assignment ?? []
                ))
            }
            self.groups[groupID] = group
            return SyncResult(error: .none, protocolType: group.protocolType, protocolName: group.protocolName,
                              assignment: group.members[memberID]?.assignment ?? [])
        case .completingRebalance:
            let ticket = self.parked.ticket()
            member.syncWaiter = ticket
            group.members[memberID] = member
            self.groups[groupID] = group
            guard case .sync(let result)? = await self.park(ticket, of: memberID, in: group) else {
                return SyncResult(error: .rebalanceInProgress)
            }
            return result
        }
    }

    /// Parks a JoinGroup or SyncGroup on the delayed-operation queue until its answer is posted. The timeout is a
    /// safety net (the rebalance deadline answers first); a request that gives up, or whose connection closed,
    /// withdraws its ticket, so its member counts as not having rejoined.
    private func park(_ ticket: UInt64, of memberID: String, in group: Group) async -> ParkedRequests.Answer? {
        let rebalanceTimeoutMs = group.members.values.map(\.rebalanceTimeoutMs).max() ?? 0
        let timeout = Duration.milliseconds(
            Int64(rebalanceTimeoutMs) + Int64(self.configuration.initialRebalanceDelayMs) + 10_000
        )
        if let answer = await self.parked.wait(for: ticket, groupID: group.id, timeout: timeout) { return answer }
        if self.groups[group.id]?.members[memberID]?.joinWaiter == ticket {
            self.groups[group.id]?.members[memberID]?.joinWaiter = nil
        }
        if self.groups[group.id]?.members[memberID]?.syncWaiter == ticket {
            self.groups[group.id]?.members[memberID]?.syncWaiter = nil
        }
        return self.parked.take(ticket)
    }

    /// Answers the member's parked JoinGroup, if any.
    private func answerJoin(_ memberID: String, in group: inout Group, _ result: JoinResult) {
        guard let ticket = group.members[memberID]?.joinWaiter else { return }
        group.members[memberID]?.joinWaiter = nil
        self.parked.post(.join(result), to: ticket, groupID: group.id)
    }

    /// Answers the member's parked SyncGroup, if any.
    private func answerSync(_ memberID: String, in group: inout Group, _ result: SyncResult) {
        guard let ticket = group.members[memberID]?.syncWaiter else { return }
        group.members[memberID]?.syncWaiter = nil
        self.parked.post(.sync(result), to: ticket, groupID: group.id)
    }

    /// Queues the group's state (nil: its tombstone) behind the writes before it; the task says whether it was kept.
    @discardableResult
    private func writeGroup(_ groupID: String, _ stored: StoredGroup?) -> Task<Bool, Never> {
        let previous = self.lastGroupWrite
        let store = self.store
        let write = Task {
            _ = await previous?.value
            guard let store else { return true }
            do {
                try await store.persist(groupID: groupID, group: stored)
                return true
            } catch {
                return false  // The store logs why.
            }
        }
        self.lastGroupWrite = write
        return write
    }

    public func heartbeat(groupID: String, generation: Int32, memberID: String) -> ErrorCode {
        guard var group = self.groups[groupID], var member = group.members[memberID] else { return .unknownMemberID }
        guard generation == group.generation else { return .illegalGeneration }
        member.sessionDeadline = .now + .milliseconds(Int64(member.sessionTimeoutMs))
        group.members[memberID] = member
        self.groups[groupID] = group
        return group.state == .preparingRebalance ? .rebalanceInProgress : .none
    }

    /// Removes the members; per member NONE or UNKNOWN_MEMBER_ID.
    public func leave(groupID: String, memberIDs: [String]) -> [ErrorCode] {
        guard var group = self.groups[groupID] else { return memberIDs.map { _ in .unknownMemberID } }
        let errors = memberIDs.map { group.members[$0] == nil ? ErrorCode.unknownMemberID : .none }
        var left = false
        for id in memberIDs where group.members[id] != nil {
            self.remove(id, from: &group)
            left = true
        }
        if left { self.membershipChanged(&group) }
        self.groups[groupID] = group
        self.completeJoinIfReady(groupID)
        return errors
    }

    /// A static member restarted (same `group.instance.id`, no member id): it takes over its old membership under a
    /// new member id, keeping its assignment, without a rebalance when the group is stable and its protocols are
    /// unchanged (KIP-345); the old id is fenced. A restarted leader leads on: from v9 it is told it leads and to
    /// skip the assignment (KIP-814); before, the answer names the old leader id, so it does not assign (as Kafka).
    /// Returns the answer, or nil when the join must go the usual way.
    private func replaceStaticMember(
        _ oldID: String,
        in group: inout Group,
        request: JoinRequest
    ) -> JoinResult? {
        guard group.state == .stable, let member = group.members[oldID],
            member.protocols.map(\.name) == request.protocols.map(\.name),
            zip(member.protocols, request.protocols).allSatisfy({ $0.metadata == $1.metadata })
        else { return nil }
        let newID = "\(request.clientID)-\(Self.randomSuffix())"
        self.answerJoin(oldID, in: &group, JoinResult(error: .fencedInstanceID, memberID: oldID))
        self.answerSync(oldID, in: &group, SyncResult(error: .fencedInstanceID))
        let renamed = Member(
            id: newID, instanceID: member.instanceID, clientID: request.clientID, clientHost: request.clientHost,
            sessionTimeoutMs: request.sessionTimeoutMs, rebalanceTimeoutMs: request.rebalanceTimeoutMs,
            protocolType: member.protocolType, protocols: member.protocols, assignment: member.assignment,
            sessionDeadline: .now + .milliseconds(Int64(request.sessionTimeoutMs))
        )
        group.members[oldID] = nil
        group.members[newID] = renamed
        group.order = group.order.map { $0 == oldID ? newID : $0 }
        let wasLeader = group.leader == oldID
        if wasLeader { group.leader = newID }
        var result = self.joinResult(group, for: newID)
        if wasLeader && request.supportsSkipAssignment {
            result.skipAssignment = true
        } else if wasLeader {
            result.leader = oldID
            result.members = []
        }
        return result
    }

    // MARK: Offsets

    /// Stores `offsets` for the group; per partition NONE or the refusal. `partitionExists` says whether the
    /// broker has the partition (UNKNOWN_TOPIC_OR_PARTITION otherwise). Accepted offsets are acknowledged once the
    /// store kept them (COORDINATOR_NOT_AVAILABLE, retriable, when it could not).
    public func commit(
        groupID: String,
        generation: Int32,
        memberID: String,
        offsets: [(TopicPartition, CommittedOffset)],
        partitionExists: (TopicPartition) -> Bool
    ) async -> [ErrorCode] {
        guard self.isLoaded else { return offsets.map { _ in .coordinatorLoadInProgress } }
        guard !groupID.isEmpty else { return offsets.map { _ in .invalidGroupID } }
        self.startSweeper()
        let group = self.groups[groupID] ?? Group(id: groupID)
        let groupError: ErrorCode
        if generation < 0 && memberID.isEmpty {
            // A consumer that only stores offsets here (assign, no group membership).
            groupError = group.members.isEmpty ? .none : .unknownMemberID
        } else if group.members[memberID] == nil {
            groupError = .unknownMemberID
        } else if generation != group.generation {
            groupError = .illegalGeneration
        } else if group.state == .completingRebalance {
            groupError = .rebalanceInProgress
        } else {
            groupError = .none
        }
        var errors = offsets.map { partition, committed -> ErrorCode in
            guard groupError == .none else { return groupError }
            guard (committed.metadata?.utf8.count ?? 0) <= self.configuration.maxMetadataBytes else {
                return .offsetMetadataTooLarge
            }
            return partitionExists(partition) ? .none : .unknownTopicOrPartition
        }
        let accepted = zip(offsets, errors).filter { $1 == .none }.map(\.0)
        guard !accepted.isEmpty else { return errors }
        if let store = self.store {
            do {
                try await store.persist(groupID: groupID, offsets: accepted.map { ($0.0, $0.1) })
            } catch {
                errors = errors.map { $0 == .none ? .coordinatorNotAvailable : $0 }
                return errors
            }
        }
        var stored = self.groups[groupID] ?? Group(id: groupID)
        for (partition, committed) in accepted { stored.offsets[partition] = committed }
        self.groups[groupID] = stored
        return errors
    }

    /// The group's committed offsets: of `partitions`, or all when nil; an unknown group has none.
    public func committed(groupID: String, partitions: [TopicPartition]?) -> [(TopicPartition, CommittedOffset?)] {
        let offsets = self.groups[groupID]?.offsets ?? [:]
        if let partitions { return partitions.map { ($0, offsets[$0]) } }
        return offsets.sorted { ($0.key.topic, $0.key.partition) < ($1.key.topic, $1.key.partition) }.map { ($0.key, $0.value) }
    }

    /// Deletes the offsets that expired by `nowMs` (see the type's comment), with tombstones, and groups left
    /// empty with no offsets; the number of offsets removed.
    @discardableResult
    public func expireOffsets(nowMs: Int64) async -> Int {
        let retention = self.configuration.offsetsRetentionMs
        var removed = 0
        for group in self.groups.values where group.state == .empty {
            let expired = group.offsets.filter { _, committed in
                if let expireTimestamp = committed.expireTimestamp { return expireTimestamp <= nowMs }
                // A group of consumers counts from when it became empty; commits alone each from their own time.
                let since = group.protocolType == nil ? committed.commitTimestamp : group.emptySinceMs ?? committed.commitTimestamp
                return since + retention <= nowMs
            }
            removed += await self.removeOffsets(Array(expired), of: group.id)
        }
        return removed
    }

    /// Deletes every group's offsets of `topics` (topics deleted from the cluster), with tombstones.
    public func removeOffsets(ofTopics topics: Set<String>) async {
        for group in self.groups.values {
            let gone = group.offsets.filter { topics.contains($0.key.topic) }
            await self.removeOffsets(Array(gone), of: group.id)
        }
    }

    /// The topics the groups hold offsets of.
    public func topicsWithOffsets() -> Set<String> {
        Set(self.groups.values.flatMap { $0.offsets.keys.map(\.topic) })
    }

    /// Writes tombstones for `offsets` and drops them, then the group when it is empty with no offsets left. An
    /// offset committed again while the tombstones were written is kept and written again after them, so the
    /// topic's last record for the partition is the value served.
    @discardableResult
    private func removeOffsets(_ offsets: [(key: TopicPartition, value: CommittedOffset)], of groupID: String) async -> Int {
        guard !offsets.isEmpty else { return 0 }
        do {
            try await self.store?.persist(groupID: groupID, offsets: offsets.map { ($0.key, nil) })
        } catch {
            return 0  // Kept; the next check tries again.
        }
        guard var group = self.groups[groupID] else { return 0 }
        var recommitted: [(TopicPartition, CommittedOffset?)] = []
        for (partition, removed) in offsets {
            if let current = group.offsets[partition], current != removed {
                recommitted.append((partition, current))
            } else {
                group.offsets[partition] = nil
            }
        }
        if group.state == .empty && group.members.isEmpty && group.offsets.isEmpty {
            self.groups[groupID] = nil
            self.writeGroup(groupID, nil)
        } else {
            self.groups[groupID] = group
        }
        if !recommitted.isEmpty { try? await self.store?.persist(groupID: groupID, offsets: recommitted) }
        return offsets.count - recommitted.count
    }

    // MARK: Administration

    /// The group's state, protocol and members; a group never seen is Dead with no members, as Kafka reports it.
    public func describe(groupID: String) -> GroupDescription {
        guard let group = self.groups[groupID], group.state != .dead else {
            return GroupDescription(groupID: groupID, state: .dead, protocolType: "", protocolName: "", members: [])
        }
        let name = group.protocolName ?? ""
        return GroupDescription(
            groupID: groupID,
            state: group.state,
            protocolType: group.protocolType ?? "",
            protocolName: group.state == .stable ? name : "",
            members: group.order.compactMap { id in
                group.members[id].map {
                    MemberDescription(
                        memberID: id, instanceID: $0.instanceID, clientID: $0.clientID, clientHost: $0.clientHost,
                        metadata: $0.metadata(for: name), assignment: group.state == .stable ? $0.assignment : []
                    )
                }
            }
        )
    }

    /// Every group, or those in one of `states` (by Kafka's state names), with its protocol type and state.
    public func list(states: Set<String>) -> [(groupID: String, protocolType: String, state: GroupState)] {
        self.groups.values.sorted { $0.id < $1.id }
            .filter { states.isEmpty || states.contains($0.state.rawValue) }
            .map { ($0.id, $0.protocolType ?? "", $0.state) }
    }

    /// Deletes empty groups and their offsets: NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND for a group
    /// never seen.
    public func delete(groupIDs: [String]) async -> [ErrorCode] {
        var results: [ErrorCode] = []
        for groupID in groupIDs {
            guard let group = self.groups[groupID] else {
                results.append(.groupIDNotFound)
                continue
            }
            guard group.members.isEmpty else {
                results.append(.nonEmptyGroup)
                continue
            }
            if let store = self.store, !group.offsets.isEmpty {
                do {
                    let tombstones: [(TopicPartition, CommittedOffset?)] = group.offsets.keys.map { ($0, nil) }
                    try await store.persist(groupID: groupID, offsets: tombstones)
                } catch {
                    results.append(.coordinatorNotAvailable)
                    continue
                }
            }
            guard await self.writeGroup(groupID, nil).value else {
                results.append(.coordinatorNotAvailable)
                continue
            }
            self.groups[groupID] = nil
            results.append(.none)
        }
        return results
    }

    /// Deletes the group's offsets of `partitions`, except those of `subscribed` topics while the group has members
    /// (GROUP_SUBSCRIBED_TO_TOPIC). The group-level error is GROUP_ID_NOT_FOUND for a group never seen.
    public func deleteOffsets(
        groupID: String,
        partitions: [TopicPartition],
        subscribed: Set<String>
    ) async -> (group: ErrorCode, partitions: [ErrorCode]) {
        guard let group = self.groups[groupID] else { return (.groupIDNotFound, []) }
        let errors = partitions.map { partition -> ErrorCode in
            !group.members.isEmpty && subscribed.contains(partition.topic) ? .groupSubscribedToTopic : .none
        }
        let deleted = zip(partitions, errors).filter { $1 == .none && group.offsets[$0] != nil }.map(\.0)
        if let store = self.store, !deleted.isEmpty {
            do {
                let tombstones: [(TopicPartition, CommittedOffset?)] = deleted.map { ($0, nil) }
                try await store.persist(groupID: groupID, offsets: tombstones)
            } catch {
                return (.coordinatorNotAvailable, [])
            }
        }
        for partition in deleted { self.groups[groupID]?.offsets[partition] = nil }
        return (.none, errors)
    }

    // MARK: Rebalancing

    /// Moves `group` to PreparingRebalance: pending syncs learn a rebalance started; the join completes when every
    /// member has rejoined, or at the rebalance deadline (members that did not rejoin are dropped). An empty
    /// group's first rebalance waits `group.initial.rebalance.delay.ms` for more members.
    private func prepareRebalance(_ group: inout Group) {
        for id in group.order { self.answerSync(id, in: &group, SyncResult(error: .rebalanceInProgress)) }
        let wasEmpty = group.state == .empty
        group.state = .preparingRebalance
        group.rebalanceEpoch += 1
        let epoch = group.rebalanceEpoch
        let groupID = group.id
        let rebalanceTimeout = group.members.values.map(\.rebalanceTimeoutMs).max() ?? 0
        let delay = wasEmpty ? min(self.configuration.initialRebalanceDelayMs, rebalanceTimeout) : rebalanceTimeout
        Task {
            try? await Task.sleep(for: .milliseconds(Int64(max(delay, 0))))
            await self.rebalanceDeadlinePassed(groupID, epoch: epoch, initialDelay: wasEmpty)
        }
        if wasEmpty { group.initialDelayPending = true }
    }

    private func rebalanceDeadlinePassed(_ groupID: String, epoch: Int, initialDelay: Bool) {
        guard var group = self.groups[groupID], group.rebalanceEpoch == epoch, group.state == .preparingRebalance
        else { return }
        if initialDelay && group.initialDelayPending {
            group.initialDelayPending = false
            self.groups[groupID] = group
            self.completeJoinIfReady(groupID)
            return
        }
        // The deadline: whoever has not rejoined is out.
        for id in group.order where group.members[id]?.joinWaiter == nil { self.remove(id, from: &group) }
        self.groups[groupID] = group
        self.completeJoin(groupID)
    }

    /// Completes the join once every member has rejoined (and an initial delay has passed).
    private func completeJoinIfReady(_ groupID: String) {
        guard let group = self.groups[groupID], group.state == .preparingRebalance, !group.initialDelayPending,
            group.members.values.allSatisfy({ $0.joinWaiter != nil })
        else { return }
        self.completeJoin(groupID)
    }

    /// A new generation: the protocol chosen, the leader kept or the first member, every parked JoinGroup answered.
    private func completeJoin(_ groupID: String) {
        guard var group = self.groups[groupID] else { return }
        group.generation += 1
        guard !group.members.isEmpty else {
            group.state = .empty
            group.emptySinceMs = Self.nowMs()
            group.protocolName = nil
            group.leader = nil
            self.groups[groupID] = group
            self.writeGroup(groupID, group.stored(at: group.emptySinceMs!))
            return
        }
        group.protocolType = group.order.first.flatMap { group.members[$0]?.protocolType }
        group.protocolName = group.selectProtocol()
        if group.leader.map({ group.members[$0] == nil }) ?? true { group.leader = group.order.first }
        group.state = .completingRebalance
        for id in group.order { self.answerJoin(id, in: &group, self.joinResult(group, for: id)) }
        self.groups[groupID] = group
    }

    private func joinResult(_ group: Group, for memberID: String) -> JoinResult {
        var result = JoinResult(error: .none, memberID: memberID)
        result.generation = group.generation
        result.protocolType = group.protocolType
        result.protocolName = group.protocolName
        result.leader = group.leader ?? ""
        if memberID == group.leader, let name = group.protocolName {
            result.members = group.order.compactMap { id in
                group.members[id].map { (id, $0.instanceID, $0.metadata(for: name)) }
            }
        }
        return result
    }

    /// Drops a member; its parked requests are answered UNKNOWN_MEMBER_ID.
    private func remove(_ memberID: String, from group: inout Group) {
        guard group.members[memberID] != nil else { return }
        self.answerJoin(memberID, in: &group, JoinResult(error: .unknownMemberID, memberID: memberID))
        self.answerSync(memberID, in: &group, SyncResult(error: .unknownMemberID))
        group.members[memberID] = nil
        group.order.removeAll { $0 == memberID }
        if group.leader == memberID { group.leader = nil }
    }

    /// After members left or expired: a rebalance among the others, or Empty when none is left.
    private func membershipChanged(_ group: inout Group) {
        if group.members.isEmpty {
            group.rebalanceEpoch += 1
            group.generation += 1
            group.state = .empty
            group.emptySinceMs = Self.nowMs()
            group.leader = nil
            group.protocolName = nil
            self.writeGroup(group.id, group.stored(at: group.emptySinceMs!))
        } else if group.state != .preparingRebalance {
            self.prepareRebalance(&group)
        }
    }

    /// Drops members whose session timed out, every 100 ms, and expired offsets every
    /// `offsets.retention.check.interval.ms`, once the coordinator is in use.
    private func startSweeper() {
        guard self.sweeper == nil else { return }
        let checkInterval = Duration.milliseconds(self.configuration.offsetsRetentionCheckIntervalMs)
        self.sweeper = Task { [weak self] in
            var nextOffsetCheck = ContinuousClock.now + checkInterval
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                await self?.expireSessions()
                if ContinuousClock.now >= nextOffsetCheck {
                    await self?.expireOffsets(nowMs: Self.nowMs())
                    nextOffsetCheck = ContinuousClock.now + checkInterval
                }
            }
        }
    }

    private func expireSessions() {
        let now = ContinuousClock.now
        for (groupID, var group) in self.groups {
            // Members waiting in a join are covered by the rebalance deadline instead.
            let expired = group.members.values.filter { $0.sessionDeadline < now && $0.joinWaiter == nil }.map(\.id)
            guard !expired.isEmpty else { continue }
            for id in expired { self.remove(id, from: &group) }
            self.membershipChanged(&group)
            self.groups[groupID] = group
            self.completeJoinIfReady(groupID)
        }
    }

    static func nowMs() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }

    static func randomSuffix() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        return String(high, radix: 16) + "-" + String(low, radix: 16)
    }
}
