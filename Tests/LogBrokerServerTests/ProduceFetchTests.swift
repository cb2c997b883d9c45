import DelayedOperations
import Foundation
import KafkaMessages
import KafkaNIO
import KafkaRecords
import KafkaWire
import LogBrokerServer
import LogStorage
import NIOCore
import Replication
import SystemPackage
import Testing

/// Produce, Fetch and ListOffsets end to end on real sockets: an in-process server with a ReplicaManager over a
/// temporary log directory, partition `events-0` made leader (epoch 3) directly, as the controller will.
@Suite struct ProduceFetchTests {
    static let topic = "events"
    static let leaderEpoch: Int32 = 3

    /// Runs `body` with the server's port and the replica manager, then stops both and removes the log directory.
    /// The fetch session cache holds `sessionSlots` sessions (`max.incremental.fetch.session.cache.slots`).
    static func withBroker<Result: Sendable>(
        sessionSlots: Int = 1000,
        _ body: @Sendable (Int, ReplicaManager) async throws -> Result
    ) async throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("produce-fetch-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let pool = DiskIOPool(threadCount: 2)
        defer {
            pool.shutdown()
            try? FileManager.default.removeItem(atPath: directory)
        }
        let logManager = try LogManager(config: LogManagerConfig(logDirectories: [FilePath(directory)]), ioPool: pool)
        defer { try? logManager.shutdown() }
        let replicas = ReplicaManager(
            logManager: logManager,
            ioPool: pool,
            configuration: ReplicaManagerConfiguration(brokerID: 1)
        )
        try await replicas.becomeLeader(topic: Self.topic, partition: 0, topicID: .zero, leaderEpoch: Self.leaderEpoch)
        var handlers = HandlerTable()
        handlers.register(ProduceHandler(replicas: replicas))
        handlers.register(FetchHandler(replicas: replicas, sessions: FetchSessionCache(capacity: sessionSlots)))
        handlers.register(ListOffsetsHandler(replicas: replicas))
        return try await withServer(handlers: handlers) { port in try await body(port, replicas) }
    }

    /// One batch of `values`, timestamps `timestamp`, `timestamp + 1`, ...
    static func batch(
        _ values: [String],
        codec: CompressionCodec = .none,
        timestamp: Int64 = Int64(Date().timeIntervalSince1970 * 1000)
    ) throws -> ByteBuffer {
        var builder = RecordBatchBuilder(codec: codec)
        for (index, value) in values.enumerated() {
            builder.append(timestamp: timestamp + Int64(index), key: nil, value: ByteBuffer(string: value))
        }
        return try builder.build().buffer
    }

    static func produceRequest(
        _ records: ByteBuffer?,
        acks: Int16 = 1,
        topic: String = Self.topic,
        partition: Int32 = 0
    ) -> ProduceRequest {
        ProduceRequest(
            acks: acks,
            timeoutMs: 30_000,
            topicData: [.init(name: topic, partitionData: [.init(index: partition, records: records)])]
        )
    }

    static func fetchRequest(
        offset: Int64,
        maxWaitMs: Int32 = 0,
        minBytes: Int32 = 1,
        currentLeaderEpoch: Int32 = -1,
        partitionMaxBytes: Int32 = 1 << 20
    ) -> FetchRequest {
        FetchRequest(
            maxWaitMs: maxWaitMs,
            minBytes: minBytes,
            maxBytes: 50 << 20,
            topics: [
                .init(
                    topic: Self.topic,
                    partitions: [
                        .init(
                            partition: 0,
                            currentLeaderEpoch: currentLeaderEpoch,
                            fetchOffset: offset,
                            partitionMaxBytes: partitionMaxBytes
                        )
                    ]
                )
            ]
        )
    }

    static func listOffsets(_ timestamp: Int64, currentLeaderEpoch: Int32 = -1) -> ListOffsetsRequest {
        ListOffsetsRequest(
            replicaID: -1,
            topics: [
                .init(
                    name: Self.topic,
                    partitions: [.init(partitionIndex: 0, currentLeaderEpoch: currentLeaderEpoch, timestamp: timestamp)]
                )
            ]
        )
    }

    /// The record values in `records` (whole batches), with the batches' base offsets and leader epochs.
    static func decode(_ records: ByteBuffer?) throws -> (values: [String], baseOffsets: [Int64], epochs: [Int32]) {
        var splitter = RecordBatchSplitter(records ?? ByteBuffer())
        var result: ([String], [Int64], [Int32]) = ([], [], [])
        let compression = CompressionContext()
        while let batch = try splitter.next() {
            #expect(batch.isCRCValid)
            result.1.append(batch.baseOffset)
            result.2.append(batch.partitionLeaderEpoch)
            var iterator = try batch.makeRecordIterator(compression: compression, maxDecompressedBytes: 1 << 26)
            while let record = try iterator.next() {
                result.0.append(String(buffer: try #require(record.value)))
            }
        }
        return result
    }

    @Test func produceV3To11AndFetchV4To12RoundTrip() async throws {
        try await Self.withBroker { port, _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                var expected: [String] = []
                var sent: [ByteBuffer] = []
                for version in Int16(3)...11 {
                    let values = ["v\(version)-a", "v\(version)-b"]
                    let codec: CompressionCodec = version >= 7 ? .zstd : .gzip
                    let records = try Self.batch(values, codec: codec)
                    let response = try await connection.send(
                        Self.produceRequest(records, acks: version % 2 == 0 ? 1 : -1),
                        version: version
                    )
                    let partition = try #require(response.responses.first?.partitionResponses.first)
                    #expect(partition.errorCode == 0, "Produce v\(version)")
                    #expect(partition.baseOffset == Int64(expected.count))
                    #expect(partition.logAppendTimeMs == -1)
                    if version >= 5 { #expect(partition.logStartOffset == 0) }
                    expected += values
                    sent.append(records)
                }
                for version in Int16(4)...12 {
                    let response = try await connection.send(Self.fetchRequest(offset: 0), version: version)
                    #expect(response.errorCode == 0)
                    #expect(response.sessionID == 0)
                    let partition = try #require(response.responses.first?.partitions.first)
                    #expect(partition.errorCode == 0, "Fetch v\(version)")
                    #expect(partition.highWatermark == Int64(expected.count))
                    #expect(partition.lastStableOffset == Int64(expected.count))
                    if version >= 5 { #expect(partition.logStartOffset == 0) }
                    let decoded = try Self.decode(partition.records)
                    #expect(decoded.values == expected)
                    #expect(decoded.baseOffsets == stride(from: Int64(0), to: 18, by: 2).map { $0 })
                    #expect(decoded.epochs.allSatisfy { $0 == Self.leaderEpoch })
                    // The batches are stored as sent: only the base offset and leader epoch were rewritten.
                    var stored = partition.records ?? ByteBuffer()
                    for original in sent {
                        let size = original.readableBytes
                        let slice = stored.readSlice(length: size)
                        let copy = try #require(slice)
                        #expect(
                            copy.getBytes(at: copy.readerIndex + 16, length: size - 16)
                                == original.getBytes(at: original.readerIndex + 16, length: size - 16)
                        )
                    }
                }
                // A fetch from the middle starts at the batch holding the offset; the limit still gives one batch.
                let middle = try await connection.send(
                    Self.fetchRequest(offset: 5, partitionMaxBytes: 1),
                    version: 12
                )
                let decoded = try Self.decode(middle.responses.first?.partitions.first?.records)
                #expect(decoded.baseOffsets == [4])
            }
        }
    }

    @Test func produceErrorsArePerPartition() async throws {
        try await Self.withBroker { port, _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let records = try Self.batch(["x"])
                let unknown = try await connection.send(Self.produceRequest(records, topic: "missing"), version: 9)
                #expect(unknown.responses.first?.partitionResponses.first?.errorCode == 3)
                let badAcks = try await connection.send(Self.produceRequest(records, acks: 2), version: 9)
                #expect(badAcks.responses.first?.partitionResponses.first?.errorCode == 21)
                var corrupt = records
                corrupt.setInteger(UInt8(0x55), at: corrupt.writerIndex - 1)
                let crc = try await connection.send(Self.produceRequest(corrupt), version: 9)
                let partition = try #require(crc.responses.first?.partitionResponses.first)
                #expect(partition.errorCode == 2)
                #expect(partition.baseOffset == -1)
                #expect(partition.errorMessage != nil)
                let zstd = try await connection.send(
                    Self.produceRequest(try Self.batch(["z"], codec: .zstd)),
                    version: 6
                )
                #expect(zstd.responses.first?.partitionResponses.first?.errorCode == 76)
            }
        }
    }

    @Test func acksZeroGetsNoResponseAndAnErrorOnItClosesTheConnection() async throws {
        try await Self.withBroker { port, replicas in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let frame = KafkaFrame.request(
                    Self.produceRequest(try Self.batch(["quiet"]), acks: 0),
                    version: 9,
                    correlationID: connection.takeCorrelationID(),
                    clientID: "test"
                )
                try await connection.sendFrame(frame)
                // The next answer on the connection is ListOffsets': the produce got none.
                let latest = try await connection.send(Self.listOffsets(-1), version: 7)
                #expect(latest.topics.first?.partitions.first?.offset == 1)
            }
            #expect(replicas.partition(TopicPartition(Self.topic, 0))?.highWatermark == 1)
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let frame = KafkaFrame.request(
                    Self.produceRequest(try Self.batch(["lost"]), acks: 0, topic: "missing"),
                    version: 9,
                    correlationID: connection.takeCorrelationID(),
                    clientID: "test"
                )
                try await connection.sendFrame(frame)
                let next = try? await connection.receiveFrame()
                #expect(next == nil)
            }
        }
    }

    /// A magic 0 message set of `values` (offset, size, CRC-32, magic, attributes, null key, value per message).
    static func magic0Set(_ values: [String]) -> ByteBuffer {
        var set = ByteBuffer()
        for (index, value) in values.enumerated() {
            var body = ByteBuffer()
            body.writeInteger(Int8(0))  // magic
            body.writeInteger(Int8(0))  // attributes: uncompressed
            body.writeInteger(Int32(-1))  // null key
            body.writeInteger(Int32(value.utf8.count))
            body.writeString(value)
            set.writeInteger(Int64(index))
            set.writeInteger(Int32(4 + body.readableBytes))
            set.writeInteger(body.withUnsafeReadableBytes { LegacyMessageSet.crc32($0) })
            set.writeImmutableBuffer(body)
        }
        return set
    }

    /// Produce v0-2 are served as Kafka 3.9 serves them: magic 0/1 message sets converted to v2 batches, and magic 2
    /// batches too (Kafka checks the magic only from v3); from v3 a message set is INVALID_RECORD.
    @Test func produceV0To2TakeMessageSetsAndV3RefusesThem() async throws {
        try await Self.withBroker { port, _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let versions = try await connection.send(ApiVersionsRequest(), version: 0)
                #expect(versions.apiKeys.contains(.init(apiKey: 0, minVersion: 0, maxVersion: 11)))
                #expect(versions.apiKeys.contains(.init(apiKey: 1, minVersion: 0, maxVersion: 12)))
                #expect(versions.apiKeys.contains(.init(apiKey: 2, minVersion: 0, maxVersion: 7)))
                var offsets: [Int64] = []
                for version: Int16 in 0...2 {
                    let legacy = try await connection.send(
                        Self.produceRequest(Self.magic0Set(["old-\(version)-a", "old-\(version)-b"])),
                        version: version
                    )
                    let answer = try #require(legacy.responses.first?.partitionResponses.first)
                    #expect(answer.errorCode == 0)
                    offsets.append(answer.baseOffset)
                    let batch = try await connection.send(
                        Self.produceRequest(try Self.batch(["v2-in-v\(version)"])),
                        version: version
                    )
                    #expect(batch.responses.first?.partitionResponses.first?.errorCode == 0)
                }
                #expect(offsets == [0, 3, 6])
                let refused = try await connection.send(Self.produceRequest(Self.magic0Set(["new"])), version: 3)
                let refusal = refused.responses.first?.partitionResponses.first
                #expect(refusal?.errorCode == ErrorCode.invalidRecord.rawValue)
                let fetched = try await connection.send(Self.fetchRequest(offset: 0, maxWaitMs: 0), version: 12)
                let records = try Self.decode(fetched.responses.first?.partitions.first?.records)
                #expect(
                    records.values == [
                        "old-0-a", "old-0-b", "v2-in-v0", "old-1-a", "old-1-b", "v2-in-v1", "old-2-a", "old-2-b",
                        "v2-in-v2",
                    ]
                )
                #expect(records.baseOffsets == [0, 2, 3, 5, 6, 8])
            }
        }
    }

    @Test func fetchAtTheHighWatermarkWaitsAndWakesOnAProduceFromAnotherConnection() async throws {
        try await Self.withBroker { port, replicas in
            // With a short wait: empty, no error (never OFFSET_OUT_OF_RANGE at the high watermark).
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let empty = try await connection.send(Self.fetchRequest(offset: 0, maxWaitMs: 50), version: 12)
                let partition = try #require(empty.responses.first?.partitions.first)
                #expect(partition.errorCode == 0)
                #expect(partition.highWatermark == 0)
                #expect(partition.records?.readableBytes ?? 0 == 0)
            }
            let clock = ContinuousClock()
            let start = clock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                        let response = try await connection.send(
                            Self.fetchRequest(offset: 0, maxWaitMs: 120_000),
                            version: 12
                        )
                        let partition = try #require(response.responses.first?.partitions.first)
                        #expect(partition.errorCode == 0)
                        #expect(try Self.decode(partition.records).values == ["wake up"])
                    }
                }
                while replicas.delayedFetches.parkedCount == 0 { try await Task.sleep(for: .milliseconds(5)) }
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                    let produced = try await connection.send(
                        Self.produceRequest(try Self.batch(["wake up"])),
                        version: 9
                    )
                    #expect(produced.responses.first?.partitionResponses.first?.errorCode == 0)
                }
                try await group.waitForAll()
            }
            // Woken by the produce, not answered at its 120 s max wait: the bound sits far from both, so a test task
            // scheduled late on a loaded machine (seen: 6.5 s behind a 5 s bound) cannot fail it.
            #expect(clock.now - start < .seconds(60))
        }
    }

    @Test func fetchErrors() async throws {
        try await Self.withBroker { port, _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                _ = try await connection.send(Self.produceRequest(try Self.batch(["a", "b"])), version: 9)
                func error(_ request: FetchRequest, version: Int16 = 12) async throws -> Int16? {
                    try await connection.send(request, version: version).responses.first?.partitions.first?.errorCode
                }
                #expect(try await error(Self.fetchRequest(offset: 3, maxWaitMs: 5_000)) == 1)
                #expect(try await error(Self.fetchRequest(offset: -1)) == 1)
                #expect(try await error(Self.fetchRequest(offset: 0, currentLeaderEpoch: 2)) == 74)
                #expect(try await error(Self.fetchRequest(offset: 0, currentLeaderEpoch: 4)) == 75)
                #expect(try await error(Self.fetchRequest(offset: 0, currentLeaderEpoch: 3)) == 0)
                // v8 has no current leader epoch: not checked.
                #expect(try await error(Self.fetchRequest(offset: 0, currentLeaderEpoch: 2), version: 8) == 0)
                var incremental = Self.fetchRequest(offset: 0)
                incremental.sessionID = 0
                incremental.sessionEpoch = 1
                #expect(try await connection.send(incremental, version: 12).errorCode == 70)
            }
        }
    }

    @Test func listOffsetsEarliestLatestMaxTimestampAndByTimestamp() async throws {
        try await Self.withBroker { port, _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let base = Int64(Date().timeIntervalSince1970 * 1000) - 60_000
                for start in [base, base + 1_000, base + 500] {
                    let values = (0..<3).map { "t\(start - base)-\($0)" }
                    _ = try await connection.send(
                        Self.produceRequest(try Self.batch(values, timestamp: start)),
                        version: 9
                    )
                }
                for version in Int16(1)...7 {
                    func lookup(_ timestamp: Int64) async throws -> ListOffsetsResponse.ListOffsetsPartitionResponse {
                        let response = try await connection.send(Self.listOffsets(timestamp), version: version)
                        return try #require(response.topics.first?.partitions.first)
                    }
                    #expect(try await lookup(-2).offset == 0)
                    #expect(try await lookup(-1).offset == 9)
                    let byTime = try await lookup(base + 700)
                    #expect(byTime.errorCode == 0)
                    #expect(byTime.offset == 3)
                    #expect(byTime.timestamp == base + 1_000)
                    #expect(try await lookup(base + 10_000).offset == -1)
                    if version >= 4 { #expect(byTime.leaderEpoch == Self.leaderEpoch) }
                    if version == 7 {
                        let max = try await lookup(-3)
                        #expect(max.offset == 5)
                        #expect(max.timestamp == base + 1_002)
                    }
                }
                let fenced = try await connection.send(Self.listOffsets(-1, currentLeaderEpoch: 1), version: 7)
                #expect(fenced.topics.first?.partitions.first?.errorCode == 74)
            }
        }
    }
}
