import KafkaWire
import LogStorage
import Replication
import Testing

/// `ReplicaManager.becomeLeader(_:)`: many partitions elected in one call, as at a start.
@Suite struct BatchedLeadershipTests {
    static let topicID = KafkaUUID(mostSignificantBits: 7, leastSignificantBits: 9)

    static func leaderships(_ count: Int, epoch: Int32) -> [ReplicaManager.Leadership] {
        (0..<count).map {
            ReplicaManager.Leadership(topic: "orders", partition: Int32($0), topicID: Self.topicID, leaderEpoch: epoch)
        }
    }

    @Test func everyPartitionIsHostedAtItsEpochWhichStartsAtItsLogEnd() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close() }
        let first = await fixture.replicas.becomeLeader(Self.leaderships(300, epoch: 3))
        #expect(first.count == 300)
        #expect(first.allSatisfy { $0 == nil })
        for number in 0..<300 where number % 3 == 0 {
            let result = await fixture.replicas.append(
                topic: "orders",
                partition: Int32(number),
                records: try TestBatches.make(count: 2),
                requiredAcks: -1
            )
            #expect(result.error == .none)
        }
        // A second batch: hosted partitions move to the new epoch at their log ends; a stale epoch is ignored.
        var second = Self.leaderships(300, epoch: 4)
        second[7].leaderEpoch = 2
        let results = await fixture.replicas.becomeLeader(second)
        #expect(results.allSatisfy { $0 == nil })
        for number in 0..<300 {
            let partition = try #require(fixture.replicas.partition(TopicPartition("orders", Int32(number))))
            let entries = try partition.log.withLog { $0.epochEntries }
            if number == 7 {
                #expect(partition.leaderEpoch == 3)
                #expect(entries == [EpochEntry(epoch: 3, startOffset: 0)])
            } else {
                #expect(partition.leaderEpoch == 4)
                // Epoch 3 stays only where something was appended in it; else epoch 4 replaces it at offset 0.
                let expected: [EpochEntry] =
                    number % 3 == 0
                    ? [EpochEntry(epoch: 3, startOffset: 0), EpochEntry(epoch: 4, startOffset: 2)]
                    : [EpochEntry(epoch: 4, startOffset: 0)]
                #expect(entries == expected)
            }
        }
    }

    @Test func aPartitionWhoseDirectoryBelongsToAnotherTopicFailsAloneAndTheOthersAreHosted() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close() }
        _ = await fixture.replicas.becomeLeader(Self.leaderships(3, epoch: 1))
        fixture.replicas.removePartition(TopicPartition("orders", 1))
        // The same name elected again under another topic id: its directory still names the old id.
        var leaderships = Self.leaderships(3, epoch: 2)
        leaderships[1].topicID = KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 1)
        let results = await fixture.replicas.becomeLeader(leaderships)
        #expect(results[0] == nil)
        #expect(results[1] != nil)
        #expect(results[2] == nil)
        #expect(fixture.replicas.partition(TopicPartition("orders", 1)) == nil)
        #expect(fixture.replicas.partition(TopicPartition("orders", 2))?.leaderEpoch == 2)
    }
}
