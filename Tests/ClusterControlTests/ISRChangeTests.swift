import KafkaWire
import MetadataStore
import Testing

@testable import ClusterControl

/// Leaders' ISR changes (AlterPartition) as a pure decision, with KRaft's refusals; and through the active
/// controller on the local store and on a real etcd.
@Suite struct ISRChangeTests {
    /// Brokers 1–4 (epochs 11–14); topic "t" (id 1:7) with one partition on [1, 2, 3], ISR [1, 2], led by 1 at
    /// leader epoch 5 and partition epoch 9.
    static func image() -> ClusterImage {
        var image = electionImage(brokers: [1, 2, 3, 4], topics: ["t": [([1, 2, 3], [1, 2], 1)]])
        image.brokers[4]?.fenced = true
        return image
    }

    static let topicID = KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 7)

    static func change(
        topicID: KafkaUUID = Self.topicID,
        partition: Int32 = 0,
        leader: Int32 = 1,
        brokerEpoch: Int64 = 11,
        leaderEpoch: Int32 = 5,
        partitionEpoch: Int32 = 9,
        isr: [ISRMember]
    ) -> ISRChange {
        ISRChange(
            topicID: topicID,
            partition: partition,
            leaderID: leader,
            brokerEpoch: brokerEpoch,
            leaderEpoch: leaderEpoch,
            partitionEpoch: partitionEpoch,
            newISR: isr
        )
    }

    static func members(_ ids: Int32...) -> [ISRMember] { ids.map { ISRMember(brokerID: $0) } }

    @Test func aLeaderGrowsAndShrinksTheISRWithTheRightEpochsAndTheChangeIsCommittedWithTheNextEpoch() throws {
        let image = Self.image()
        // Any order; kept in replica order.
        let grown = ControllerDecisions.alteringPartitions(
            image,
            [
                Self.change(isr: [
                    ISRMember(brokerID: 3, brokerEpoch: 13), ISRMember(brokerID: 1), ISRMember(brokerID: 2),
                ])
            ]
        )
        let expected = PartitionState(
            replicas: [1, 2, 3],
            isr: [1, 2, 3],
            leader: 1,
            leaderEpoch: 5,
            partitionEpoch: 10
        )
        #expect(grown.answer == [ISRChangeOutcome(topicID: Self.topicID, partition: 0, error: nil, state: expected)])
        #expect(grown.writes.map(\.key) == [ImageKeys.topic("t")])
        let next = try applying(grown, to: image)
        #expect(next.topics["t"]?.partitions[0] == expected)

        // Two changes of one partition in one request: the second was made on the old epoch.
        let twice = ControllerDecisions.alteringPartitions(
            next,
            [
                Self.change(partitionEpoch: 10, isr: Self.members(1)),
                Self.change(partitionEpoch: 10, isr: Self.members(1, 3)),
            ]
        )
        #expect(twice.answer[0].state?.isr == [1] && twice.answer[0].state?.partitionEpoch == 11)
        #expect(twice.answer[1].error?.kafkaErrorCode == .invalidUpdateVersion)

        // The ISR it already has: answered as it is, nothing written.
        let same = ControllerDecisions.alteringPartitions(
            next,
            [Self.change(partitionEpoch: 10, isr: Self.members(2, 3, 1))]
        )
        #expect(same.writes.isEmpty && same.answer[0].state == expected && same.answer[0].error == nil)
    }

    @Test(arguments: [
        (
            ISRChangeTests.change(
                topicID: KafkaUUID(mostSignificantBits: 9, leastSignificantBits: 9),
                isr: ISRChangeTests.members(1)
            ),
            ErrorCode.unknownTopicID
        ),
        (ISRChangeTests.change(topicID: .zero, isr: ISRChangeTests.members(1)), .unknownTopicID),
        (ISRChangeTests.change(partition: 1, isr: ISRChangeTests.members(1)), .unknownTopicOrPartition),
        (ISRChangeTests.change(partition: -1, isr: ISRChangeTests.members(1)), .unknownTopicOrPartition),
        (ISRChangeTests.change(brokerEpoch: 10, isr: ISRChangeTests.members(1)), .staleBrokerEpoch),
        (ISRChangeTests.change(leader: 9, brokerEpoch: 19, isr: ISRChangeTests.members(1)), .staleBrokerEpoch),
        (ISRChangeTests.change(leaderEpoch: 6, isr: ISRChangeTests.members(1)), .notController),
        (ISRChangeTests.change(partitionEpoch: 10, isr: ISRChangeTests.members(1)), .notController),
        (ISRChangeTests.change(leaderEpoch: 4, isr: ISRChangeTests.members(1)), .fencedLeaderEpoch),
        (ISRChangeTests.change(leader: 2, brokerEpoch: 12, isr: ISRChangeTests.members(1, 2)), .invalidRequest),
        (ISRChangeTests.change(partitionEpoch: 8, isr: ISRChangeTests.members(1)), .invalidUpdateVersion),
        (ISRChangeTests.change(isr: ISRChangeTests.members(1, 4)), .invalidRequest),  // 4 is not a replica
        (ISRChangeTests.change(isr: ISRChangeTests.members(1, 2, 2)), .invalidRequest),
        (ISRChangeTests.change(isr: ISRChangeTests.members(2, 3)), .invalidRequest),  // without the leader
        (ISRChangeTests.change(isr: ISRChangeTests.members()), .invalidRequest),
        (
            ISRChangeTests.change(isr: [ISRMember(brokerID: 1), ISRMember(brokerID: 3, brokerEpoch: 12)]),
            .ineligibleReplica
        ),
    ])
    func aRefusedChangeGetsKafkasErrorAndWritesNothing(change: ISRChange, error: ErrorCode) {
        let result = ControllerDecisions.alteringPartitions(Self.image(), [change])
        #expect(result.writes.isEmpty)
        #expect(result.answer.count == 1 && result.answer[0].state == nil)
        #expect(result.answer[0].error?.kafkaErrorCode == error)
    }

    @Test func fencedShuttingDownAndUnregisteredBrokersCannotJoin() {
        var image = Self.image()
        // Broker 3 (a replica) fenced, as a controlled shutdown also leaves it.
        image.brokers[3]?.fenced = true
        let fenced = ControllerDecisions.alteringPartitions(image, [Self.change(isr: Self.members(1, 2, 3))])
        #expect(fenced.answer[0].error?.kafkaErrorCode == .ineligibleReplica && fenced.writes.isEmpty)
        image.brokers[3] = nil
        let unregistered = ControllerDecisions.alteringPartitions(image, [Self.change(isr: Self.members(1, 3))])
        #expect(unregistered.answer[0].error?.kafkaErrorCode == .ineligibleReplica)
        // The same change without broker 3 passes.
        #expect(
            ControllerDecisions.alteringPartitions(image, [Self.change(isr: Self.members(1))]).answer[0].error == nil
        )
    }

    @Test(arguments: StoreKind.allCases)
    func theActiveControllerCommitsAnAcceptedChangeAndNothingForARefusedOne(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let node = try await Node.start(1, on: fixture.store, brokerSessionTimeout: .seconds(3600))
            try await bootstrap(node.controller)
            let epoch2 = try await node.controller.registerUnfenced(2, incarnation: 20)
            let topic = try await node.controller.createTopic("t", assignment: [[2, 1]])
            let change = ISRChange(
                topicID: topic.id,
                partition: 0,
                leaderID: 2,
                brokerEpoch: epoch2,
                leaderEpoch: 0,
                partitionEpoch: 0,
                newISR: [ISRMember(brokerID: 2)]
            )
            let shrunk = try await node.controller.alterPartition([change])
            #expect(shrunk[0].error == nil)
            #expect(
                shrunk[0].state
                    == PartitionState(replicas: [2, 1], isr: [2], leader: 2, leaderEpoch: 0, partitionEpoch: 1)
            )
            #expect(await node.follower.followed.image.topics["t"]?.partitions[0] == shrunk[0].state)

            // The same change again is on an old partition epoch: refused, and the store's revision stays.
            let revision = try await fixture.store.revision()
            let stale = try await node.controller.alterPartition([change])
            #expect(stale[0].error?.kafkaErrorCode == .invalidUpdateVersion && stale[0].state == nil)
            #expect(try await fixture.store.revision() == revision)

            // Broker 1 rejoins; a member whose broker epoch the leader does not know is sent as -1 (not checked).
            var rejoin = change
            rejoin.partitionEpoch = 1
            rejoin.newISR = [ISRMember(brokerID: 2, brokerEpoch: epoch2), ISRMember(brokerID: 1)]
            let grown = try await node.controller.alterPartition([rejoin])
            #expect(grown[0].state?.isr == [2, 1] && grown[0].state?.partitionEpoch == 2)
            await node.stop()
        }
    }

    @Test func theStandaloneBrokersControllerAnswersAnISRChangeInProcess() async throws {
        let (controller, _, cleanup) = try await ControllerTests().started()
        defer { cleanup() }
        let topic = try await controller.createTopic("t", partitions: 1, replicationFactor: 1)
        let brokerEpoch = try #require(try await controller.image().brokers[1]?.brokerEpoch)
        var change = Self.change(
            topicID: topic.id,
            brokerEpoch: brokerEpoch,
            leaderEpoch: 0,
            partitionEpoch: 0,
            isr: Self.members(1)
        )
        // Its one replica is the ISR already: answered as it is.
        let same = try await controller.alterPartition([change])
        #expect(same == [ISRChangeOutcome(topicID: topic.id, partition: 0, error: nil, state: topic.partitions[0])])
        change.partitionEpoch = 1
        let ahead = try await controller.alterPartition([change])
        #expect(ahead[0].error?.kafkaErrorCode == .notController)
        await controller.stop()
    }
}
