import ClusterControl
import KafkaMessages
import KafkaWire
import NIOCore
import Testing

@testable import LogBrokerServer

/// The AlterPartition v3 request a leader's ISR change becomes, read back as the controller decodes it.
@Suite struct AlterPartitionSenderTests {
    @Test func anISRChangeGoesAsAlterPartitionV3ByTopicIDWithTheMembersBrokerEpochs() throws {
        let topicID = KafkaUUID(mostSignificantBits: 5, leastSignificantBits: 6)
        let change = ISRChange(
            topicID: topicID,
            partition: 3,
            leaderID: 1,
            brokerEpoch: -1,
            leaderEpoch: 4,
            partitionEpoch: 9,
            newISR: [ISRMember(brokerID: 1), ISRMember(brokerID: 2, brokerEpoch: 40)]
        )
        let request = AlterPartitionSender.request(change, brokerEpoch: 21, topic: "orders")
        var writer = WireWriter()
        request.encode(into: &writer, version: 3)
        var reader = WireReader(buffer: writer.buffer)
        let decoded = try AlterPartitionRequest(from: &reader, version: 3)
        #expect(decoded.brokerID == 1)
        #expect(decoded.brokerEpoch == 21)
        let topic = try #require(decoded.topics.first)
        #expect(decoded.topics.count == 1)
        #expect(topic.topicID == topicID)
        let partition = try #require(topic.partitions.first)
        #expect(partition.partitionIndex == 3)
        #expect(partition.leaderEpoch == 4)
        #expect(partition.partitionEpoch == 9)
        #expect(partition.leaderRecoveryState == 0)
        #expect(
            partition.newIsrWithEpochs == [
                .init(brokerID: 1, brokerEpoch: -1), .init(brokerID: 2, brokerEpoch: 40),
            ]
        )
    }
}
