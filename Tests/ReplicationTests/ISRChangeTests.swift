import ClusterControl
import KafkaWire
import LogStorage
import Replication
import Synchronization
import Testing

/// The leader's ISR changes through the replica manager: shrinks proposed by the periodic check, expansions by a
/// follower's fetch, each answered by `CompareAndSetController`, which decides as the controller's AlterPartition
/// does (compare-and-set on the partition and leader epochs). Times are passed in; nothing sleeps.
@Suite struct ISRChangeTests {
    static let lagMs: Int64 = 1_000
    static let topicPartition = TopicPartition("t", 0)

    /// The controller's side of AlterPartition for one partition: refuses a stale partition epoch
    /// (INVALID_UPDATE_VERSION) or leader epoch (FENCED_LEADER_EPOCH), else commits the ISR at the next partition
    /// epoch. Records what it was asked. Thread-safe: a `Mutex`.
    final class CompareAndSetController: ISRChangeSending {
        struct State {
            var leaderEpoch: Int32
            var partitionEpoch: Int32
            var isr: [Int32]
            var asked: [ISRChange] = []
        }

        let state: Mutex<State>

        init(leaderEpoch: Int32, partitionEpoch: Int32, isr: [Int32]) {
            self.state = Mutex(State(leaderEpoch: leaderEpoch, partitionEpoch: partitionEpoch, isr: isr))
        }

        var asked: [ISRChange] { self.state.withLock { $0.asked } }

        func send(_ change: ISRChange, topic: String) async -> ISRChangeAnswer {
            self.state.withLock { state in
                state.asked.append(change)
                guard change.leaderEpoch == state.leaderEpoch else { return .refused(.fencedLeaderEpoch) }
                guard change.partitionEpoch == state.partitionEpoch else { return .refused(.invalidUpdateVersion) }
                state.isr = change.newISR.map(\.brokerID)
                state.partitionEpoch += 1
                return .committed(isr: state.isr, leaderEpoch: state.leaderEpoch, partitionEpoch: state.partitionEpoch)
            }
        }
    }

    static func eventually(_ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(2))
        }
        return condition()
    }

    /// A leader of `t-0` (epoch 1, partition epoch 5) on replicas 1 and 2, both in the ISR, with three records.
    static func leader(
        _ controller: CompareAndSetController,
        minInsync: Int32 = 1
    ) async throws -> (ReplicaFixture, Partition) {
        var config = LogConfig()
        config.minInSyncReplicas = minInsync
        let topicConfig = config
        let fixture = try ReplicaFixture(
            topicConfig: { _ in topicConfig },
            configuration: ReplicaManagerConfiguration(brokerID: 1, replicaLagTimeMaxMs: Self.lagMs),
            isrChanges: controller
        )
        let partition = try await fixture.replicas.becomeLeader(
            topic: "t",
            partition: 0,
            topicID: KafkaUUID(mostSignificantBits: 3, leastSignificantBits: 4),
            leaderEpoch: 1,
            partitionEpoch: 5,
            replicas: [1, 2],
            isr: [1, 2]
        )
        let appended = await fixture.replicas.append(
            topic: "t",
            partition: 0,
            records: try TestBatches.make(count: 3),
            requiredAcks: 1
        )
        #expect(appended.error == .none)
        return (fixture, partition)
    }

    static func followerFetch(_ replicas: ReplicaManager, at offset: Int64) async -> PartitionReadResult {
        let results = await replicas.read(
            [PartitionRead(topicPartition: Self.topicPartition, fetchOffset: offset, maxBytes: 1 << 20)],
            maxBytes: 1 << 20,
            origin: .follower(replicaID: 2, brokerEpoch: 77)
        )
        return results[0]
    }

    @Test func aFollowerLaggingLongerThanTheLagTimeLeavesTheISRAndTheWaitingProduceIsAnswered() async throws {
        let controller = CompareAndSetController(leaderEpoch: 1, partitionEpoch: 5, isr: [1, 2])
        let (fixture, partition) = try await Self.leader(controller)
        defer { fixture.close() }
        #expect(partition.highWatermark == 0)
        let started = try #require(partition.leaderState?.followers[2]?.lastCaughtUpTimeMs)
        let appended = await fixture.replicas.append(
            topic: "t",
            partition: 0,
            records: try TestBatches.make(count: 1),
            requiredAcks: -1
        )
        let replicas = fixture.replicas
        let waiting = Task {
            await replicas.awaitReplication(
                [(Self.topicPartition, appended.requiredOffset)],
                timeout: .seconds(60)
            )
        }
        // Within the lag time nothing is proposed.
        fixture.replicas.shrinkISRs(nowMs: started + Self.lagMs)
        #expect(controller.asked.isEmpty)
        fixture.replicas.shrinkISRs(nowMs: started + Self.lagMs + 1)
        #expect(try await Self.eventually { partition.leaderState?.isr == [1] })
        #expect(controller.asked.map(\.newISR) == [[ISRMember(brokerID: 1)]])
        #expect(controller.asked.first?.partitionEpoch == 5)
        #expect(controller.asked.first?.leaderEpoch == 1)
        #expect(partition.leaderState?.partitionEpoch == 6)
        #expect(partition.highWatermark == 4)
        #expect(await waiting.value == [ErrorCode.none])
    }

    @Test func aFollowerThatCaughtUpIsProposedBackIntoTheISRWithItsBrokerEpoch() async throws {
        let controller = CompareAndSetController(leaderEpoch: 1, partitionEpoch: 5, isr: [1, 2])
        let (fixture, partition) = try await Self.leader(controller)
        defer { fixture.close() }
        let started = try #require(partition.leaderState?.followers[2]?.lastCaughtUpTimeMs)
        fixture.replicas.shrinkISRs(nowMs: started + Self.lagMs + 1)
        #expect(try await Self.eventually { partition.leaderState?.isr == [1] })
        // Below the high watermark (3): still out.
        _ = await Self.followerFetch(fixture.replicas, at: 2)
        #expect(controller.asked.count == 1)
        let caughtUp = await Self.followerFetch(fixture.replicas, at: 3)
        #expect(caughtUp.error == .none)
        #expect(try await Self.eventually { partition.leaderState?.isr == [1, 2] })
        #expect(controller.asked.last?.newISR == [ISRMember(brokerID: 1), ISRMember(brokerID: 2, brokerEpoch: 77)])
        #expect(partition.leaderState?.partitionEpoch == 7)
    }

    @Test func aFencedFollowerOrOneFromAnotherIncarnationIsNotProposedBackIntoTheISR() async throws {
        let controller = CompareAndSetController(leaderEpoch: 1, partitionEpoch: 5, isr: [1, 2])
        let (fixture, partition) = try await Self.leader(controller)
        defer { fixture.close() }
        let started = try #require(partition.leaderState?.followers[2]?.lastCaughtUpTimeMs)
        fixture.replicas.shrinkISRs(nowMs: started + Self.lagMs + 1)
        #expect(try await Self.eventually { partition.leaderState?.isr == [1] })
        func register(fenced: Bool, brokerEpoch: Int64, revision: Int64) {
            fixture.replicas.applyImage(
                topics: [:],
                brokers: [2: BrokerRegistration(nodeID: 2, endpoints: [], fenced: fenced, brokerEpoch: brokerEpoch)],
                revision: revision
            )
        }
        register(fenced: true, brokerEpoch: 77, revision: 1)
        _ = await Self.followerFetch(fixture.replicas, at: 3)
        // The follower fetches with broker epoch 77; the image knows a newer registration (a restart since).
        register(fenced: false, brokerEpoch: 90, revision: 2)
        _ = await Self.followerFetch(fixture.replicas, at: 3)
        #expect(controller.asked.count == 1)
        register(fenced: false, brokerEpoch: 77, revision: 3)
        _ = await Self.followerFetch(fixture.replicas, at: 3)
        #expect(try await Self.eventually { partition.leaderState?.isr == [1, 2] })
        #expect(controller.asked.count == 2)
    }

    @Test func aProposalRefusedForAStaleEpochWaitsForTheImageWhichBringsTheNewEpoch() async throws {
        // The controller is ahead: another change was committed that this leader has not heard of.
        let controller = CompareAndSetController(leaderEpoch: 1, partitionEpoch: 8, isr: [1, 2])
        let (fixture, partition) = try await Self.leader(controller)
        defer { fixture.close() }
        let started = try #require(partition.leaderState?.followers[2]?.lastCaughtUpTimeMs)
        fixture.replicas.shrinkISRs(nowMs: started + Self.lagMs + 1)
        #expect(try await Self.eventually { partition.leaderState?.inFlight?.awaitingImage == true })
        #expect(partition.leaderState?.isr == [1, 2])
        // Nothing more is proposed until the image brings the newer partition epoch.
        fixture.replicas.shrinkISRs(nowMs: started + Self.lagMs + 2)
        #expect(controller.asked.count == 1)
        try await fixture.replicas.becomeLeader(
            topic: "t",
            partition: 0,
            topicID: partition.topicID,
            leaderEpoch: 1,
            partitionEpoch: 8,
            replicas: [1, 2],
            isr: [1, 2]
        )
        #expect(partition.leaderState?.inFlight == nil)
        fixture.replicas.shrinkISRs(nowMs: started + Self.lagMs + 3)
        #expect(try await Self.eventually { partition.leaderState?.isr == [1] })
        #expect(controller.asked.map(\.partitionEpoch) == [5, 8])
    }
}
