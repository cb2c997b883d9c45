import Foundation
import KafkaMessages
import KafkaNIO
import KafkaRecords
import NIOCore
import Testing

/// A consumer that goes away while its Fetch waits for `min.bytes` (found with `logcat ... | head -1`): the waiting
/// fetch is cancelled and answers with what it has, file regions (sendfile) included, but nobody is left to write
/// them to. The broker must close their descriptors: a debug build asserted on the leaked handle and died, a release
/// build leaked one descriptor per abandoned fetch.
@Suite(.timeLimit(.minutes(2))) struct AbandonedFetchTests {
    @Test func abandonedWaitingFetchesLeakNoDescriptorAndTheBrokerLives() async throws {
        try await BrokerProcess.withBroker { broker in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                _ = try await connection.send(
                    CreateTopicsRequest(topics: [.init(name: "abandoned", numPartitions: 1, replicationFactor: 1)]),
                    version: 7
                )
                var builder = RecordBatchBuilder()
                builder.append(timestamp: 1, key: nil, value: ByteBuffer(string: "some data"))
                let produced = try await connection.send(
                    ProduceRequest(
                        acks: -1,
                        timeoutMs: 5_000,
                        topicData: [.init(name: "abandoned", partitionData: [.init(index: 0, records: try builder.build().buffer)])]
                    ),
                    version: 9
                )
                #expect(produced.responses.first?.partitionResponses.first?.errorCode == 0)
            }
            let pid = try #require(broker.processIdentifier)
            func openDescriptors() throws -> Int {
                try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
            }
            let before = try openDescriptors()
            for _ in 0..<20 {
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                    // Data is there, but less than min.bytes: the fetch waits; the connection closes under it.
                    let fetch = FetchRequest(
                        replicaID: -1,
                        maxWaitMs: 10_000,
                        minBytes: 10_000_000,
                        topics: [.init(topic: "abandoned", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])]
                    )
                    try await connection.sendFrame(
                        KafkaFrame.request(fetch, version: 12, correlationID: connection.takeCorrelationID(), clientID: "t")
                    )
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            try await Task.sleep(for: .milliseconds(500))
            #expect(broker.isRunning, "the broker died: \(broker.stderr.suffix(2_000))")
            #expect(try openDescriptors() <= before + 2, "descriptors leaked")
            // It still answers.
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                let response = try await connection.send(MetadataRequest(topics: nil), version: 12)
                #expect(response.topics.contains { $0.name == "abandoned" })
            }
        }
    }
}
