import Foundation
import KafkaMessages
import KafkaNIO
import KafkaRecords
import KafkaWire
import LogStorage
import NIOCore
import Replication
import Testing

@testable import LogBrokerServer

/// Fetch responses whose records go out as file regions (sendfile).
@Suite struct ZeroCopyTests {
    static func context(version: Int16, correlationID: Int32) -> RequestContext {
        RequestContext(
            apiVersion: version,
            correlationID: correlationID,
            clientID: "zero-copy",
            remoteAddress: nil,
            listenerName: "PLAINTEXT",
            advertisedAPIs: [],
            logger: CapturedLog().logger()
        )
    }

    /// The bytes `parts` put on the wire, file regions read with pread; closes the regions' descriptors.
    static func wireBytes(_ parts: [IOData]) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for part in parts {
            switch part {
            case .byteBuffer(let buffer):
                bytes += buffer.readableBytesView
            case .fileRegion(let region):
                var chunk = [UInt8](repeating: 0, count: region.readableBytes)
                let read = try region.fileHandle.withUnsafeFileDescriptor { descriptor in
                    chunk.withUnsafeMutableBytes {
                        pread(descriptor, $0.baseAddress, $0.count, off_t(region.readerIndex))
                    }
                }
                try region.fileHandle.close()
                #expect(read == chunk.count)
                bytes += chunk
            }
        }
        return bytes
    }

    /// The hand-laid parts equal the generated encoding (records read into memory) byte for byte at every version:
    /// two topics, partitions with records, an empty partition, an unknown partition, aborted transactions null
    /// and empty.
    @Test func partsEqualTheGeneratedEncodingAtEveryVersion() async throws {
        try await ProduceFetchTests.withBroker { _, replicas in
            try await replicas.becomeLeader(topic: "second", partition: 0, topicID: .zero, leaderEpoch: 1)
            try await replicas.becomeLeader(
                topic: ProduceFetchTests.topic,
                partition: 1,
                topicID: .zero,
                leaderEpoch: 1
            )
            for index in 0..<5 {
                let values = (0..<(index + 1) * 20).map { "value \(index) \($0) " + String(repeating: "x", count: 50) }
                let batch = try ProduceFetchTests.batch(values)
                _ = await replicas.append(topic: ProduceFetchTests.topic, partition: 0, records: batch, requiredAcks: 1)
                _ = await replicas.append(topic: "second", partition: 0, records: batch, requiredAcks: 1)
            }
            let handler = FetchHandler(replicas: replicas, sessions: FetchSessionCache(capacity: 10))
            for version in Int16(4)...12 {
                let request = FetchRequest(
                    maxWaitMs: 0,
                    minBytes: 1,
                    maxBytes: 50 << 20,
                    isolationLevel: Int8(version % 2),
                    topics: [
                        .init(
                            topic: ProduceFetchTests.topic,
                            partitions: [
                                .init(partition: 0, fetchOffset: 20, partitionMaxBytes: 1 << 20),
                                .init(partition: 1, fetchOffset: 0, partitionMaxBytes: 1 << 20),
                                .init(partition: 7, fetchOffset: 0, partitionMaxBytes: 1 << 20),
                            ]
                        ),
                        .init(
                            topic: "second",
                            partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 5000)]
                        ),
                    ]
                )
                let context = Self.context(version: version, correlationID: Int32(version) * 1000)
                let generated = KafkaFrame.response(
                    await handler.handle(request, context: context),
                    version: version,
                    correlationID: context.correlationID
                )
                guard case .responseParts(let parts) = await handler.respond(to: request, context: context) else {
                    Issue.record("v\(version): no parts")
                    continue
                }
                let regions = parts.filter { if case .fileRegion = $0 { true } else { false } }
                #expect(regions.count == 2, "v\(version): one region per partition with records")
                #expect(try Self.wireBytes(parts) == Array(generated.readableBytesView), "v\(version)")
                let decoded = try KafkaFrame.decodeResponse(generated, to: FetchRequest.self, version: version).1
                #expect(decoded.responses.map(\.partitions.count) == [3, 1])
                #expect(try ProduceFetchTests.decode(decoded.responses[0].partitions[0].records).values.count == 280)
            }
        }
    }
}
