import ClusterControl
import KafkaRecords
import KafkaWire
import LogStorage
import NIOCore
import Replication
import Testing

@Suite struct ReplicaManagerTests {
    static let client = AppendOrigin.client(produceVersion: 9, transactionalID: nil)

    static func bytes(_ result: PartitionReadResult) throws -> ByteBuffer {
        let range = try #require(result.range)
        return ByteBuffer(bytes: try range.readBytes())
    }

    @Test func appendsAssignOffsetsStampTheEpochAndReadsStopAtTheHighWatermark() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close() }
        let partition = try await fixture.replicas.becomeLeader(
            topic: "orders",
            partition: 0,
            topicID: KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 2),
            leaderEpoch: 5
        )
        let first = await fixture.replicas.append(
            topic: "orders",
            partition: 0,
            records: try TestBatches.make(count: 3),
            requiredAcks: 1,
            origin: Self.client
        )
        #expect(first.error == .none)
        #expect(first.baseOffset == 0)
        #expect(first.logAppendTime == -1)
        #expect(first.logStartOffset == 0)
        let second = await fixture.replicas.append(
            topic: "orders",
            partition: 0,
            records: try TestBatches.make(count: 2, codec: .lz4),
            requiredAcks: -1,
            origin: Self.client
        )
        #expect(second.error == .none)
        #expect(second.baseOffset == 3)
        #expect(partition.highWatermark == 5)
        #expect(partition.log.highWatermark == 5)

        let tp = TopicPartition("orders", 0)
        let all = await fixture.replicas.read(
            [PartitionRead(topicPartition: tp, fetchOffset: 0, maxBytes: 1 << 20)],
            maxBytes: 1 << 20
        )
        #expect(all[0].error == .none)
        #expect(all[0].highWatermark == 5)
        #expect(all[0].lastStableOffset == 5)
        #expect(all[0].logStartOffset == 0)
        let headers = try TestBatches.headers(try Self.bytes(all[0]))
        #expect(headers.map(\.baseOffset) == [0, 3])
        #expect(headers.map(\.epoch) == [5, 5])
        #expect(headers.map(\.count) == [3, 2])

        // At the high watermark: nothing to read, and not an error. Past the log end: out of range.
        let atEnd = await fixture.replicas.read(
            [PartitionRead(topicPartition: tp, fetchOffset: 5, maxBytes: 100)],
            maxBytes: 100
        )
        #expect(atEnd[0].error == .none)
        #expect(atEnd[0].range == nil)
        let past = await fixture.replicas.read(
            [PartitionRead(topicPartition: tp, fetchOffset: 6, maxBytes: 100)],
            maxBytes: 100
        )
        #expect(past[0].error == .offsetOutOfRange)
        #expect(past[0].highWatermark == 5)
        let unknown = await fixture.replicas.read(
            [PartitionRead(topicPartition: TopicPartition("nope", 0), fetchOffset: 0, maxBytes: 100)],
            maxBytes: 100
        )
        #expect(unknown[0].error == .unknownTopicOrPartition)
    }

    @Test func readLimitsGiveAtLeastOneBatchThenOnlyWhatFits() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close() }
        for partition in Int32(0)...1 {
            try await fixture.replicas.becomeLeader(topic: "t", partition: partition, topicID: .zero, leaderEpoch: 0)
            for _ in 0..<3 {
                let result = await fixture.replicas.append(
                    topic: "t",
                    partition: partition,
                    records: try TestBatches.make(count: 10),
                    requiredAcks: 1
                )
                #expect(result.error == .none)
            }
        }
        let reads = [
            PartitionRead(topicPartition: TopicPartition("t", 0), fetchOffset: 0, maxBytes: 10),
            PartitionRead(topicPartition: TopicPartition("t", 1), fetchOffset: 0, maxBytes: 1 << 20),
        ]
        // The first partition returns one whole batch past its 10-byte limit; the second gets what is left of 20.
        let results = await fixture.replicas.read(reads, maxBytes: 20)
        let first = try TestBatches.headers(try Self.bytes(results[0]))
        #expect(first.count == 1)
        #expect(results[1].range == nil)
        #expect(results[1].error == .none)
        // With room for everything, both partitions return all three batches.
        let roomy = await fixture.replicas.read(
            reads.map {
                var read = $0; read.maxBytes = 1 << 20; return read
            },
            maxBytes: 1 << 20
        )
        #expect(try TestBatches.headers(try Self.bytes(roomy[0])).count == 3)
        #expect(try TestBatches.headers(try Self.bytes(roomy[1])).count == 3)
    }

    @Test func refusedBatchesGetKafkasErrorCodesAndWriteNothing() async throws {
        let fixture = try ReplicaFixture(
            topicConfig: { topic in
                var config = LogConfig()
                config.timestampBeforeMaxMs = 60_000
                if topic == "small" { config.maxMessageBytes = 200 }
                return config
            },
            configuration: ReplicaManagerConfiguration(brokerID: 1)
        )
        defer { fixture.close() }
        try await fixture.replicas.becomeLeader(topic: "t", partition: 0, topicID: .zero, leaderEpoch: 0)
        try await fixture.replicas.becomeLeader(topic: "small", partition: 0, topicID: .zero, leaderEpoch: 0)
        let replicas = fixture.replicas
        func append(
            _ records: ByteBuffer?,
            topic: String = "t",
            partition: Int32 = 0,
            acks: Int16 = 1,
            origin: AppendOrigin = Self.client
        ) async -> ErrorCode {
            await replicas.append(
                topic: topic,
                partition: partition,
                records: records,
                requiredAcks: acks,
                origin: origin
            )
            .error
        }

        let good = try TestBatches.make(count: 3)
        #expect(await append(good, acks: 2) == .invalidRequiredAcks)
        #expect(await append(good, topic: "other") == .unknownTopicOrPartition)
        #expect(await append(good, partition: 1) == .unknownTopicOrPartition)

        var corrupt = good
        corrupt.setInteger(UInt8(0xFF), at: corrupt.writerIndex - 1)
        #expect(await append(corrupt) == .corruptMessage)

        var two = good
        var copy = good
        two.writeBuffer(&copy)
        #expect(await append(two) == .invalidRecord)
        #expect(await append(two, origin: .coordinator) == .none)

        var truncated = good
        truncated.moveWriterIndex(to: truncated.writerIndex - 5)
        #expect(await append(truncated) == .corruptMessage)
        #expect(await append(ByteBuffer()) == .invalidRecord)
        #expect(await append(nil) == .invalidRecord)

        let large = try TestBatches.make(count: 20)
        #expect(await append(large, topic: "small") == .messageTooLarge)

        var unknownCodec = good
        unknownCodec.setInteger(Int16(5), at: unknownCodec.readerIndex + 21)
        var unknownBatch = try RecordBatch(unknownCodec)
        unknownBatch.recomputeCRC()
        #expect(await append(unknownBatch.buffer) == .unsupportedCompressionType)

        let zstd = try TestBatches.make(count: 3, codec: .zstd)
        #expect(
            await append(zstd, origin: .client(produceVersion: 6, transactionalID: nil)) == .unsupportedCompressionType
        )

        let old = try TestBatches.make(count: 3, timestamp: PartitionLog.nowMs() - 3_600_000)
        #expect(await append(old) == .invalidTimestamp)
        let future = try TestBatches.make(count: 3, timestamp: PartitionLog.nowMs() + 7_200_000)
        #expect(await append(future) == .invalidTimestamp)

        let transactional = try TestBatches.make(count: 1, isTransactional: true)
        #expect(await append(transactional) == .transactionalIDAuthorizationFailed)
        #expect(
            await append(transactional, origin: .client(produceVersion: 9, transactionalID: "tx")) == .invalidTxnState
        )
        let control = try TestBatches.make(count: 1, isControl: true)
        #expect(await append(control) == .invalidRecord)

        // Only the coordinator's two batches went in.
        #expect(fixture.replicas.partition(TopicPartition("t", 0))?.logEndOffset == 6)
        #expect(await append(zstd, origin: .client(produceVersion: 7, transactionalID: nil)) == .none)
        #expect(fixture.replicas.partition(TopicPartition("t", 0))?.logEndOffset == 9)
    }

    @Test func currentLeaderEpochIsChecked() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close() }
        try await fixture.replicas.becomeLeader(topic: "t", partition: 0, topicID: .zero, leaderEpoch: 5)
        let tp = TopicPartition("t", 0)
        func readError(_ epoch: Int32) async -> ErrorCode {
            await fixture.replicas.read(
                [PartitionRead(topicPartition: tp, fetchOffset: 0, maxBytes: 100, currentLeaderEpoch: epoch)],
                maxBytes: 100
            )[0].error
        }
        #expect(await readError(-1) == .none)
        #expect(await readError(5) == .none)
        #expect(await readError(4) == .fencedLeaderEpoch)
        #expect(await readError(6) == .unknownLeaderEpoch)
        #expect(
            await fixture.replicas.offset(for: .latest, topic: "t", partition: 0, currentLeaderEpoch: 4).error
                == .fencedLeaderEpoch
        )
        #expect(
            await fixture.replicas.offset(for: .latest, topic: "t", partition: 0, currentLeaderEpoch: 7).error
                == .unknownLeaderEpoch
        )
        // A new epoch from the controller moves the check.
        try await fixture.replicas.becomeLeader(topic: "t", partition: 0, topicID: .zero, leaderEpoch: 6)
        #expect(await readError(6) == .none)
        #expect(await readError(5) == .fencedLeaderEpoch)
        // A stale notice with an older epoch does not move it back.
        let partition = try await fixture.replicas.becomeLeader(
            topic: "t",
            partition: 0,
            topicID: .zero,
            leaderEpoch: 2
        )
        #expect(partition.leaderEpoch == 6)
    }

    @Test func listOffsetsEarliestLatestMaxTimestampAndByTimestamp() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close() }
        try await fixture.replicas.becomeLeader(topic: "t", partition: 0, topicID: .zero, leaderEpoch: 3)
        let base = PartitionLog.nowMs() - 10_000
        // Offsets 0-4 at base+0..4, 5-9 at base+1000..1004, 10-14 at base+500..504 (max timestamp is at offset 9).
        for start in [base, base + 1_000, base + 500] {
            let result = await fixture.replicas.append(
                topic: "t",
                partition: 0,
                records: try TestBatches.make(count: 5, timestamp: start),
                requiredAcks: 1
            )
            #expect(result.error == .none)
        }
        let replicas = fixture.replicas
        func lookup(_ spec: OffsetSpec) async -> OffsetLookupResult {
            await replicas.offset(for: spec, topic: "t", partition: 0)
        }
        let earliest = await lookup(.earliest)
        #expect(earliest.error == .none)
        #expect(earliest.offset == 0)
        #expect(earliest.timestamp == -1)
        let latest = await lookup(.latest)
        #expect(latest.offset == 15)
        #expect(latest.leaderEpoch == 3)
        let maxTimestamp = await lookup(.maxTimestamp)
        #expect(maxTimestamp.offset == 9)
        #expect(maxTimestamp.timestamp == base + 1_004)
        let byTime = await lookup(.timestamp(base + 600))
        #expect(byTime.offset == 5)
        #expect(byTime.timestamp == base + 1_000)
        #expect(byTime.leaderEpoch == 3)
        let exact = await lookup(.timestamp(base + 2))
        #expect(exact.offset == 2)
        let none = await lookup(.timestamp(base + 5_000))
        #expect(none.error == .none)
        #expect(none.offset == -1)
        #expect(none.timestamp == -1)
        #expect(await replicas.offset(for: .earliest, topic: "x", partition: 0).error == .unknownTopicOrPartition)
    }

    /// The image decides who answers for a partition (Kafka's `getPartitionOrError`): NOT_LEADER_OR_FOLLOWER for a
    /// partition it has that this broker does not lead (hosted or not), UNKNOWN_TOPIC_OR_PARTITION for one it lacks;
    /// a hosted partition the image does not have yet is served; an older image never replaces a newer one.
    @Test func theImageDecidesWhichPartitionsThisBrokerServes() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close() }
        let replicas = fixture.replicas
        let id = KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 2)
        try await replicas.becomeLeader(topic: "orders", partition: 0, topicID: id, leaderEpoch: 0)
        func latest(_ partition: Int32) async -> ErrorCode {
            await replicas.offset(for: .latest, topic: "orders", partition: partition).error
        }
        func topic(leaders: [Int32?]) -> [String: TopicImage] {
            let partitions = leaders.map { leader in
                PartitionState(replicas: [1, 2], isr: [1, 2], leader: leader, leaderEpoch: 0, partitionEpoch: 0)
            }
            return ["orders": TopicImage(name: "orders", id: id, partitions: partitions)]
        }
        #expect(await latest(0) == .none)
        #expect(await latest(1) == .unknownTopicOrPartition)

        replicas.applyImage(topics: topic(leaders: [1, 2]), revision: 10)
        #expect(await latest(0) == .none)
        #expect(await latest(1) == .notLeaderOrFollower)
        #expect(await latest(2) == .unknownTopicOrPartition)

        // Partition 0 moved to broker 2: hosted here, no longer served; then no leader at all.
        replicas.applyImage(topics: topic(leaders: [2, 2]), revision: 11)
        #expect(await latest(0) == .notLeaderOrFollower)
        let append = await replicas.append(
            topic: "orders",
            partition: 0,
            records: try TestBatches.make(count: 1),
            requiredAcks: 1,
            origin: Self.client
        )
        #expect(append.error == .notLeaderOrFollower)
        let read = await replicas.read(
            [PartitionRead(topicPartition: TopicPartition("orders", 0), fetchOffset: 0, maxBytes: 1 << 20)],
            maxBytes: 1 << 20
        )
        #expect(read.map(\.error) == [.notLeaderOrFollower])
        let epochs = await replicas.endOffset(forLeaderEpoch: 0, topic: "orders", partition: 0)
        #expect(epochs.error == .notLeaderOrFollower)
        replicas.applyImage(topics: topic(leaders: [1, 2]), revision: 9)
        #expect(await latest(0) == .notLeaderOrFollower, "an older image is ignored")
        replicas.applyImage(topics: topic(leaders: [nil, 2]), revision: 12)
        #expect(await latest(0) == .notLeaderOrFollower)
        replicas.applyImage(topics: topic(leaders: [1, 2]), revision: 13)
        #expect(await latest(0) == .none)

        // An image without the topic: the hosted partition is served until it is removed (as while a creation's
        // image is a moment behind its leaderships), the others are unknown.
        replicas.applyImage(topics: [:], revision: 14)
        #expect(await latest(0) == .none)
        #expect(await latest(1) == .unknownTopicOrPartition)
    }
}
