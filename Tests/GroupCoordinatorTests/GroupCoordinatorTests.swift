import Foundation
import GroupCoordinator
import KafkaWire
import Testing

/// The classic group protocol's rules and error codes, as Kafka's `GroupCoordinator` gives them.
@Suite struct GroupCoordinatorTests {
    static func configuration(initialDelayMs: Int32 = 0) -> GroupCoordinator.Configuration {
        var configuration = GroupCoordinator.Configuration()
        configuration.initialRebalanceDelayMs = initialDelayMs
        configuration.maxMetadataBytes = 10
        return configuration
    }

    static func request(
        _ memberID: String = "",
        group: String = "g",
        // Long enough that a loaded CI machine (the whole suite in parallel on 2 cores) does not expire anyone.
        sessionTimeoutMs: Int32 = 300_000,
        protocols: [String] = ["range"],
        type: String = "consumer",
        requiresKnownMemberID: Bool = true
    ) -> GroupCoordinator.JoinRequest {
        GroupCoordinator.JoinRequest(
            groupID: group, memberID: memberID, instanceID: nil, clientID: "client", clientHost: "127.0.0.1",
            sessionTimeoutMs: sessionTimeoutMs, rebalanceTimeoutMs: 60_000, protocolType: type,
            protocols: protocols.map { ($0, Array($0.utf8)) }, requiresKnownMemberID: requiresKnownMemberID
        )
    }

    /// Joins with the member id the first answer hands out (KIP-394).
    static func join(_ coordinator: GroupCoordinator, protocols: [String] = ["range"]) async -> JoinResult {
        let first = await coordinator.join(Self.request(protocols: protocols))
        #expect(first.error == .memberIDRequired && !first.memberID.isEmpty)
        return await coordinator.join(Self.request(first.memberID, protocols: protocols))
    }

    @Test func aSingleMemberJoinsSyncsAndCommits() async {
        let coordinator = GroupCoordinator(configuration: Self.configuration())
        let joined = await Self.join(coordinator)
        #expect(joined.error == .none && joined.generation == 1 && joined.leader == joined.memberID)
        #expect(joined.protocolName == "range" && joined.members.map(\.memberID) == [joined.memberID])
        let synced = await coordinator.sync(groupID: "g", generation: 1, memberID: joined.memberID,
                                            assignments: [joined.memberID: [1, 2, 3]])
        #expect(synced.error == .none && synced.assignment == [1, 2, 3])
        #expect(await coordinator.heartbeat(groupID: "g", generation: 1, memberID: joined.memberID) == .none)
        #expect(await coordinator.heartbeat(groupID: "g", generation: 0, memberID: joined.memberID) == .illegalGeneration)
        #expect(await coordinator.heartbeat(groupID: "g", generation: 1, memberID: "nobody") == .unknownMemberID)

        let partition = TopicPartition("t", 0)
        let offset = CommittedOffset(offset: 42, leaderEpoch: 3, metadata: "m", commitTimestamp: 1)
        let committed = await coordinator.commit(groupID: "g", generation: 1, memberID: joined.memberID,
                                                 offsets: [(partition, offset)], partitionExists: { _ in true })
        #expect(committed == [.none])
        #expect(await coordinator.committed(groupID: "g", partitions: [partition]).first?.1 == offset)
        // A stale generation, an unknown member, a group-less commit while the group has members, absurd metadata,
        // an unknown partition: refused, the stored offset intact.
        let cases: [(Int32, String, CommittedOffset, Bool, ErrorCode)] = [
            (0, joined.memberID, offset, true, .illegalGeneration),
            (1, "nobody", offset, true, .unknownMemberID),
            (-1, "", offset, true, .unknownMemberID),
            (1, joined.memberID, CommittedOffset(offset: 1, leaderEpoch: -1, metadata: String(repeating: "x", count: 11),
                                                 commitTimestamp: 1), true, .offsetMetadataTooLarge),
            (1, joined.memberID, offset, false, .unknownTopicOrPartition),
        ]
        for (generation, member, value, exists, error) in cases {
            let result = await coordinator.commit(groupID: "g", generation: generation, memberID: member,
                                                  offsets: [(partition, value)], partitionExists: { _ in exists })
            #expect(result == [error])
        }
        #expect(await coordinator.committed(groupID: "g", partitions: [partition]).first?.1 == offset)
        // An unknown group has no offsets.
        #expect(await coordinator.committed(groupID: "other", partitions: [partition]).first?.1 == nil)
    }

    @Test func refusalsOfJoinGroup() async {
        let coordinator = GroupCoordinator(configuration: Self.configuration())
        #expect(await coordinator.join(Self.request(sessionTimeoutMs: 10)).error == .invalidSessionTimeout)
        #expect(await coordinator.join(Self.request(group: "")).error == .invalidGroupID)
        #expect(await coordinator.join(Self.request("made-up")).error == .unknownMemberID)
        let joined = await Self.join(coordinator)
        #expect(joined.error == .none)
        // Another protocol type, or no protocol in common with the members: INCONSISTENT_GROUP_PROTOCOL.
        let otherType = await coordinator.join(Self.request(type: "connect", requiresKnownMemberID: false))
        #expect(otherType.error == .inconsistentGroupProtocol)
        let noCommon = await coordinator.join(Self.request(protocols: ["roundrobin"], requiresKnownMemberID: false))
        #expect(noCommon.error == .inconsistentGroupProtocol)
    }

    @Test func aSecondMemberRebalancesAndTheLeaderAssignsBoth() async {
        let coordinator = GroupCoordinator(configuration: Self.configuration())
        let first = await Self.join(coordinator, protocols: ["roundrobin", "range"])
        _ = await coordinator.sync(groupID: "g", generation: first.generation, memberID: first.memberID,
                                   assignments: [:])
        // The second member's join waits until the first rejoins (it learns of the rebalance by heartbeat).
        async let second = Self.join(coordinator, protocols: ["range", "roundrobin"])
        var heartbeat = ErrorCode.none
        for _ in 0..<1_500 where heartbeat != .rebalanceInProgress {
            try? await Task.sleep(for: .milliseconds(20))
            heartbeat = await coordinator.heartbeat(groupID: "g", generation: first.generation, memberID: first.memberID)
        }
        #expect(heartbeat == .rebalanceInProgress)
        let rejoined = await coordinator.join(Self.request(first.memberID, protocols: ["roundrobin", "range"]))
        let joined = await second
        #expect(rejoined.generation == 2 && joined.generation == 2)
        #expect(rejoined.leader == first.memberID && rejoined.members.count == 2 && joined.members.isEmpty)
        // One vote each: the first member's first choice wins the tie.
        #expect(rejoined.protocolName == "roundrobin")
        async let followerSync = coordinator.sync(groupID: "g", generation: 2, memberID: joined.memberID, assignments: [:])
        try? await Task.sleep(for: .milliseconds(20))
        let leaderSync = await coordinator.sync(
            groupID: "g", generation: 2, memberID: first.memberID,
            assignments: [first.memberID: [1], joined.memberID: [2]]
        )
        #expect(leaderSync.assignment == [1])
        #expect(await followerSync.assignment == [2])

        // The leader leaves: the follower rejoins alone and leads generation 3.
        #expect(await coordinator.leave(groupID: "g", memberIDs: [first.memberID, "nobody"]) == [.none, .unknownMemberID])
        let alone = await coordinator.join(Self.request(joined.memberID, protocols: ["range", "roundrobin"]))
        #expect(alone.generation == 3 && alone.leader == joined.memberID)
    }

    /// A parked JoinGroup whose request is cancelled (its connection closed) leaves the delayed-operation queue at
    /// once instead of waiting for the rebalance.
    @Test func aCancelledJoinLeavesTheQueue() async throws {
        let coordinator = GroupCoordinator(configuration: Self.configuration())
        let first = await Self.join(coordinator)
        _ = await coordinator.sync(groupID: "g", generation: first.generation, memberID: first.memberID, assignments: [:])
        // The second member waits for the first to rejoin, which it never does here.
        let second = Task { await coordinator.join(Self.request(requiresKnownMemberID: false)) }
        for _ in 0..<1_000 where coordinator.parkedRequests == 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(coordinator.parkedRequests == 1)
        second.cancel()
        #expect(await second.value.error == .rebalanceInProgress)
        #expect(coordinator.parkedRequests == 0)
    }

    @Test func aSilentMemberIsDroppedAfterItsSessionTimeout() async throws {
        var configuration = Self.configuration()
        configuration.minSessionTimeoutMs = 100
        let coordinator = GroupCoordinator(configuration: configuration)
        let first = await coordinator.join(Self.request(sessionTimeoutMs: 300, requiresKnownMemberID: false))
        #expect(first.error == .none)
        _ = await coordinator.sync(groupID: "g", generation: first.generation, memberID: first.memberID, assignments: [:])
        // Silent from here: dropped once 300 ms passed and the sweeper (every 100 ms) ran; waited for up to 30 s, since
        // on a loaded machine the sweeper's task may start late.
        try await Task.sleep(for: .milliseconds(400))
        for _ in 0..<300 where await !coordinator.describe(groupID: "g").members.isEmpty {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(await coordinator.describe(groupID: "g").state == .empty)
        #expect(await coordinator.heartbeat(groupID: "g", generation: first.generation, memberID: first.memberID)
            == .unknownMemberID)
        // The group is empty again: a group-less consumer may commit.
        let result = await coordinator.commit(
            groupID: "g", generation: -1, memberID: "",
            offsets: [(TopicPartition("t", 0), CommittedOffset(offset: 1, leaderEpoch: -1, metadata: nil, commitTimestamp: 1))],
            partitionExists: { _ in true }
        )
        #expect(result == [.none])
    }

    /// JoinGroup v9 (KIP-814): a static leader restarting while the group is stable is told it leads, gets every
    /// member, and skips the assignment; its SyncGroup then returns its old assignment, and the old member id is
    /// fenced. Below v9 the answer names the old leader id, so the client does not assign.
    @Test(arguments: [true, false]) func aRestartedStaticLeaderKeepsTheGroupStable(supportsSkip: Bool) async {
        let coordinator = GroupCoordinator(configuration: Self.configuration())
        func staticJoin(_ memberID: String) -> GroupCoordinator.JoinRequest {
            var request = Self.request(memberID)
            request.instanceID = "leader-1"
            request.supportsSkipAssignment = supportsSkip
            return request
        }
        let leader = await coordinator.join(staticJoin(""))
        #expect(leader.error == .none && leader.leader == leader.memberID, "a static member needs no KIP-394 round")
        _ = await coordinator.sync(groupID: "g", generation: leader.generation, memberID: leader.memberID,
                                   assignments: [leader.memberID: [7]])

        let restarted = await coordinator.join(staticJoin(""))
        #expect(restarted.error == .none && restarted.memberID != leader.memberID)
        #expect(restarted.generation == leader.generation, "no rebalance")
        if supportsSkip {
            #expect(restarted.skipAssignment && restarted.leader == restarted.memberID)
            #expect(restarted.members.map(\.memberID) == [restarted.memberID])
        } else {
            #expect(!restarted.skipAssignment && restarted.leader == leader.memberID && restarted.members.isEmpty)
        }
        let synced = await coordinator.sync(groupID: "g", generation: restarted.generation, memberID: restarted.memberID,
                                            assignments: [:])
        #expect(synced.error == .none && synced.assignment == [7])
        #expect(await coordinator.describe(groupID: "g").state == .stable)
        #expect(await coordinator.join(staticJoin(leader.memberID)).error == .fencedInstanceID)
    }

    /// An in-memory store that records what the coordinator keeps, to check its tombstones.
    final class RecordingStore: GroupStore, @unchecked Sendable {
        private let lock = NSLock()
        private var kept: [String: [TopicPartition: CommittedOffset?]] = [:]
        /// Everything persisted, in order, as `load` takes it.
        private(set) var records: [StoredRecord] = []

        func persist(groupID: String, offsets: [(TopicPartition, CommittedOffset?)]) async throws {
            self.lock.withLock {
                for (partition, offset) in offsets {
                    self.kept[groupID, default: [:]][partition] = offset
                    self.records.append(.offset(groupID: groupID, partition: partition, offset: offset))
                }
            }
        }

        func persist(groupID: String, group: StoredGroup?) async throws {
            self.lock.withLock { self.records.append(.group(groupID: groupID, group)) }
        }

        /// The last record per partition: `.some(nil)` is a tombstone.
        func last(_ groupID: String, _ partition: TopicPartition) -> CommittedOffset?? {
            self.lock.withLock { self.kept[groupID]?[partition] }
        }
    }

    static func commit(
        _ coordinator: GroupCoordinator, group: String = "g", generation: Int32 = -1, member: String = "",
        _ partition: TopicPartition, at timestamp: Int64, expireTimestamp: Int64? = nil
    ) async -> [ErrorCode] {
        let offset = CommittedOffset(offset: timestamp, leaderEpoch: -1, metadata: nil, commitTimestamp: timestamp,
                                     expireTimestamp: expireTimestamp)
        return await coordinator.commit(groupID: group, generation: generation, memberID: member,
                                        offsets: [(partition, offset)], partitionExists: { _ in true })
    }

    @Test func offsetsOfAGroupWithoutMembersExpireEachAfterTheRetentionFromItsCommit() async {
        var configuration = Self.configuration()
        configuration.offsetsRetentionMs = 1_000
        let store = RecordingStore()
        let coordinator = GroupCoordinator(configuration: configuration, store: store)
        await coordinator.load([])
        let (old, young, explicit) = (TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0))
        #expect(await Self.commit(coordinator, old, at: 10_000) == [.none])
        #expect(await Self.commit(coordinator, young, at: 10_500) == [.none])
        // OffsetCommit v2-4's retention: its own expiry, however long offsets.retention.minutes is.
        #expect(await Self.commit(coordinator, explicit, at: 10_500, expireTimestamp: 50_000) == [.none])

        #expect(await coordinator.expireOffsets(nowMs: 10_999) == 0)
        #expect(await coordinator.expireOffsets(nowMs: 11_000) == 1)
        #expect(await coordinator.committed(groupID: "g", partitions: [old, young]).map { $0.1?.offset } == [nil, 10_500])
        #expect(store.last("g", old) == .some(nil))
        #expect(await coordinator.expireOffsets(nowMs: 49_999) == 1)
        #expect(await coordinator.committed(groupID: "g", partitions: nil).map(\.0) == [explicit])
        #expect(await coordinator.expireOffsets(nowMs: 50_000) == 1)
        // No offsets and no members: the group is gone.
        #expect(await coordinator.list(states: []).isEmpty)
        #expect(await coordinator.describe(groupID: "g").state == .dead)
    }

    @Test func offsetsOfAConsumerGroupExpireOnlyOnceItHasBeenEmptyForTheRetention() async throws {
        var configuration = Self.configuration()
        configuration.offsetsRetentionMs = 60_000
        let coordinator = GroupCoordinator(configuration: configuration, store: RecordingStore())
        await coordinator.load([])
        let joined = await Self.join(coordinator)
        _ = await coordinator.sync(groupID: "g", generation: joined.generation, memberID: joined.memberID, assignments: [:])
        let partition = TopicPartition("t", 0)
        // Committed long ago: while the member is in the group, nothing expires.
        #expect(await Self.commit(coordinator, generation: joined.generation, member: joined.memberID, partition, at: 1) == [.none])
        let farFuture = Int64(Date().timeIntervalSince1970 * 1000) + 3_600_000
        #expect(await coordinator.expireOffsets(nowMs: farFuture) == 0)
        // Empty from now: the retention counts from here, not from the commit.
        let left = Int64(Date().timeIntervalSince1970 * 1000)
        #expect(await coordinator.leave(groupID: "g", memberIDs: [joined.memberID]) == [.none])
        #expect(await coordinator.expireOffsets(nowMs: left + 30_000) == 0)
        #expect(await coordinator.committed(groupID: "g", partitions: [partition]).first?.1?.offset == 1)
        #expect(await coordinator.expireOffsets(nowMs: left + 61_000) == 1)
        #expect(await coordinator.committed(groupID: "g", partitions: [partition]).first?.1 == nil)
    }

    /// The group's state is kept when the leader's plan arrives and when it empties; a coordinator loaded from those
    /// records has the stable group back (generation, leader, members, assignments), so heartbeats go on unchanged.
    @Test func aRestartedCoordinatorHasTheStableGroupBack() async throws {
        let store = RecordingStore()
        let coordinator = GroupCoordinator(configuration: Self.configuration(), store: store)
        await coordinator.load([])
        let joined = await Self.join(coordinator)
        let synced = await coordinator.sync(groupID: "g", generation: joined.generation, memberID: joined.memberID,
                                            assignments: [joined.memberID: [4, 2]])
        #expect(synced.error == .none)
        #expect(await Self.commit(coordinator, generation: joined.generation, member: joined.memberID,
                                  TopicPartition("t", 0), at: 5) == [.none])

        let restarted = GroupCoordinator(configuration: Self.configuration(), store: RecordingStore())
        await restarted.load(store.records)
        #expect(await restarted.heartbeat(groupID: "g", generation: joined.generation, memberID: joined.memberID) == .none)
        let again = await restarted.sync(groupID: "g", generation: joined.generation, memberID: joined.memberID,
                                         assignments: [:])
        #expect(again.error == .none && again.assignment == [4, 2] && again.protocolName == "range")
        let described = await restarted.describe(groupID: "g")
        #expect(described.state == .stable && described.members.map(\.memberID) == [joined.memberID])
        #expect(await restarted.committed(groupID: "g", partitions: nil).map { $0.1?.offset } == [5])

        // It leaves: the empty group is kept as such; after DeleteGroups a restart finds nothing.
        #expect(await coordinator.leave(groupID: "g", memberIDs: [joined.memberID]) == [.none])
        await Self.settle(store)
        let afterLeave = GroupCoordinator(configuration: Self.configuration())
        await afterLeave.load(store.records)
        #expect(await afterLeave.describe(groupID: "g").state == .empty)
        #expect(await coordinator.delete(groupIDs: ["g"]) == [.none])
        let afterDelete = GroupCoordinator(configuration: Self.configuration())
        await afterDelete.load(store.records)
        #expect(await afterDelete.list(states: []).isEmpty)
    }

    /// Waits until the store's record count stops changing (writes not awaited by the caller land in the background).
    static func settle(_ store: RecordingStore) async {
        var count = -1
        while count != store.records.count {
            count = store.records.count
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test func offsetsOfDeletedTopicsGoFromEveryGroup() async {
        let store = RecordingStore()
        let coordinator = GroupCoordinator(configuration: Self.configuration(), store: store)
        await coordinator.load([])
        let (deleted, kept) = (TopicPartition("gone", 0), TopicPartition("kept", 0))
        for group in ["a", "b"] {
            #expect(await Self.commit(coordinator, group: group, deleted, at: 1) == [.none])
        }
        #expect(await Self.commit(coordinator, group: "b", kept, at: 1) == [.none])
        #expect(await coordinator.topicsWithOffsets() == ["gone", "kept"])
        await coordinator.removeOffsets(ofTopics: ["gone"])
        #expect(await coordinator.topicsWithOffsets() == ["kept"])
        #expect(store.last("a", deleted) == .some(nil) && store.last("b", deleted) == .some(nil))
        // "a" had nothing else and no members: gone; "b" keeps its other offset.
        #expect(await coordinator.list(states: []).map(\.groupID) == ["b"])
    }
}
