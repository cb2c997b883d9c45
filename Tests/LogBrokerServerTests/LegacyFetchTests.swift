import DelayedOperations
import KafkaMessages
import KafkaNIO
import KafkaRecords
import KafkaWire
import NIOCore
import Replication
import Testing

/// Fetch v0–3 on real sockets against the in-process broker of `ProduceFetchTests`: the answers carry legacy message
/// sets (magic 0 for v0–1, magic 1 for v2–3), v3 obeys its response-level max_bytes, and a fetch at the high
/// watermark parks and wakes as v4+ does.
@Suite struct LegacyFetchTests {
    /// Each top-level message of a legacy set: offset, magic, value (nil for null).
    static func messages(_ records: ByteBuffer?) -> [(offset: Int64, magic: Int8, value: String?)] {
        guard var buffer = records else { return [] }
        var result: [(Int64, Int8, String?)] = []
        while let offset = buffer.readInteger(as: Int64.self), let size = buffer.readInteger(as: Int32.self),
            var message = buffer.readSlice(length: Int(size))
        {
            message.moveReaderIndex(forwardBy: 4)
            let magic = message.readInteger(as: Int8.self)!
            message.moveReaderIndex(forwardBy: magic == 0 ? 1 : 9)
            let keyLength = Int(message.readInteger(as: Int32.self)!)
            message.moveReaderIndex(forwardBy: max(keyLength, 0))
            let valueLength = Int(message.readInteger(as: Int32.self)!)
            result.append((offset, magic, valueLength < 0 ? nil : message.readString(length: valueLength)))
        }
        return result
    }

    static func fetch(_ partitions: [(partition: Int32, offset: Int64)], maxWaitMs: Int32 = 0, maxBytes: Int32)
        -> FetchRequest
    {
        FetchRequest(
            maxWaitMs: maxWaitMs,
            minBytes: 1,
            maxBytes: maxBytes,
            topics: [
                .init(
                    topic: ProduceFetchTests.topic,
                    partitions: partitions.map {
                        .init(partition: $0.partition, fetchOffset: $0.offset, partitionMaxBytes: 1 << 20)
                    }
                )
            ]
        )
    }

    @Test func eachVersionGetsItsMessageFormatFromTheFetchOffset() async throws {
        try await ProduceFetchTests.withBroker { port, _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let values = ["a", "b", "c", "d"]
                _ = try await connection.send(
                    ProduceFetchTests.produceRequest(try ProduceFetchTests.batch(values)),
                    version: 9
                )
                for version in Int16(0)...3 {
                    let response = try await connection.send(
                        Self.fetch([(0, 1)], maxBytes: Int32.max),
                        version: version
                    )
                    let partition = try #require(response.responses.first?.partitions.first)
                    #expect(partition.errorCode == 0)
                    #expect(partition.highWatermark == 4)
                    let read = Self.messages(partition.records)
                    // An uncompressed batch is converted from the fetch offset on.
                    #expect(read.map(\.offset) == [1, 2, 3], "v\(version)")
                    #expect(read.map(\.value) == ["b", "c", "d"], "v\(version)")
                    #expect(Set(read.map(\.magic)) == [version <= 1 ? 0 : 1], "v\(version)")
                }
            }
        }
    }

    @Test func fetchV3ObeysItsResponseMaxBytesAndV2HasNone() async throws {
        try await ProduceFetchTests.withBroker { port, replicas in
            try await replicas.becomeLeader(
                topic: ProduceFetchTests.topic,
                partition: 1,
                topicID: .zero,
                leaderEpoch: ProduceFetchTests.leaderEpoch
            )
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                for partition in Int32(0)...1 {
                    _ = try await connection.send(
                        ProduceFetchTests.produceRequest(
                            try ProduceFetchTests.batch(["p\(partition)-0", "p\(partition)-1"]),
                            partition: partition
                        ),
                        version: 9
                    )
                }
                // max_bytes 1: the first partition still gets its whole first batch; nothing is left for the second.
                let bounded = try await connection.send(Self.fetch([(0, 0), (1, 0)], maxBytes: 1), version: 3)
                let boundedPartitions = try #require(bounded.responses.first?.partitions)
                #expect(
                    boundedPartitions.map { Self.messages($0.records).compactMap(\.value) } == [["p0-0", "p0-1"], []]
                )
                // v2 has no max_bytes in the request: the decoder's default (no limit) applies.
                let unbounded = try await connection.send(Self.fetch([(0, 0), (1, 0)], maxBytes: 1), version: 2)
                let unboundedPartitions = try #require(unbounded.responses.first?.partitions)
                #expect(
                    unboundedPartitions.map { Self.messages($0.records).compactMap(\.value) }
                        == [["p0-0", "p0-1"], ["p1-0", "p1-1"]]
                )
            }
        }
    }

    @Test(arguments: [Int16(0), 2])
    func fetchAtTheHighWatermarkParksAndWakesOnAProduce(_ version: Int16) async throws {
        try await ProduceFetchTests.withBroker { port, replicas in
            let clock = ContinuousClock()
            let start = clock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                        let response = try await connection.send(
                            Self.fetch([(0, 0)], maxWaitMs: 120_000, maxBytes: Int32.max),
                            version: version
                        )
                        let partition = try #require(response.responses.first?.partitions.first)
                        #expect(partition.errorCode == 0)
                        #expect(Self.messages(partition.records).map(\.value) == ["wake up"])
                    }
                }
                while replicas.delayedFetches.parkedCount == 0 { try await Task.sleep(for: .milliseconds(5)) }
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                    _ = try await connection.send(
                        ProduceFetchTests.produceRequest(try ProduceFetchTests.batch(["wake up"])),
                        version: 9
                    )
                }
                try await group.waitForAll()
            }
            // Woken by the produce, not answered at its 120 s max wait (see ProduceFetchTests' twin of this test).
            #expect(clock.now - start < .seconds(60))
        }
    }

    @Test func zstdFirstInLineAnswersUnsupportedCompressionType() async throws {
        try await ProduceFetchTests.withBroker { port, _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                _ = try await connection.send(
                    ProduceFetchTests.produceRequest(try ProduceFetchTests.batch(["z"], codec: .zstd)),
                    version: 9
                )
                let response = try await connection.send(Self.fetch([(0, 0)], maxBytes: Int32.max), version: 3)
                let partition = try #require(response.responses.first?.partitions.first)
                #expect(partition.errorCode == ErrorCode.unsupportedCompressionType.rawValue)
                #expect(partition.highWatermark == -1)
                #expect(partition.records?.readableBytes ?? 0 == 0)
            }
        }
    }
}
