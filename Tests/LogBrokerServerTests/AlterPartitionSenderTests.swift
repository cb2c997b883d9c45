import ClusterControl
import KafkaMessages
import KafkaWire
import NIOCore
import Replication
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

/// The replication settings and where followers reach a leader.
@Suite struct ReplicationSettingsTests {
    @Test func followersFetchOnTheInterBrokerListenerOrPlaintext() throws {
        let brokers: [Int32: BrokerRegistration] = [
            2: BrokerRegistration(
                nodeID: 2,
                endpoints: [
                    BrokerEndpoint(listener: "CLIENT", host: "c2", port: 1),
                    BrokerEndpoint(listener: "REPLICATION", host: "r2", port: 2),
                    BrokerEndpoint(listener: "PLAINTEXT", host: "p2", port: 3),
                ]
            ),
            3: BrokerRegistration(nodeID: 3, endpoints: [BrokerEndpoint(listener: "CLIENT", host: "c3", port: 4)]),
        ]
        #expect(
            BrokerStorage.leaderEndpoints(of: [2, 3, 4], brokers: brokers, listener: "REPLICATION") == [
                2: LeaderEndpoint(nodeID: 2, host: "r2", port: 2), 3: LeaderEndpoint(nodeID: 3, host: "c3", port: 4),
            ]
        )
        #expect(
            BrokerStorage.leaderEndpoints(of: [2], brokers: brokers, listener: "PLAINTEXT") == [
                2: LeaderEndpoint(nodeID: 2, host: "p2", port: 3)
            ]
        )

        let defaults = try testConfiguration()
        #expect(defaults.interBrokerListenerName == "PLAINTEXT")
        #expect(defaults.replicaLagTimeMaxMs == 30_000)
        let named = try testConfiguration([
            ("listeners", "CLIENT://127.0.0.1:0,REPLICATION://127.0.0.1:0"),
            ("listener.security.protocol.map", "CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT"),
            ("inter.broker.listener.name", "REPLICATION"), ("replica.lag.time.max.ms", "5000"),
        ])
        #expect(named.interBrokerListenerName == "REPLICATION")
        #expect(named.replicaLagTimeMaxMs == 5_000)
        #expect(throws: (any Error).self) {
            try testConfiguration([("inter.broker.listener.name", "NOWHERE")])
        }
    }
}
