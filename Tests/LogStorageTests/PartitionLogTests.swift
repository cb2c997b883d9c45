import KafkaRecords
import KafkaWire
import NIOCore
import SystemPackage
import Testing

@testable import LogStorage

/// Small segments and a small index interval, so a few batches exercise rolls and index entries.
func smallConfig(segmentBytes: Int = 1_000, indexInterval: Int = 100, logAppendTime: Bool = false) -> LogConfig {
    var config = LogConfig()
    config.segmentBytes = segmentBytes
    config.indexIntervalBytes = indexInterval
    config.segmentIndexBytes = 4096
    config.logAppendTime = logAppendTime
    return config
}

let partition = TopicPartition("orders", 0)

@Suite struct PartitionLogTests {
    @Test func leaderAppendAssignsOffsetsStampsEpochsAndReads() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(
                logDirectory: directory.path, topicPartition: partition, config: smallConfig(segmentBytes: 1 << 20))
            var infos: [LogAppendInfo] = []
            for (count, epoch) in [(3, Int32(1)), (2, 1), (4, 2)] {
                infos.append(try log.appendAsLeader(Batches.make(count: count, baseOffset: 777), leaderEpoch: epoch))
            }
            #expect(infos.map(\.firstOffset) == [0, 3, 5])
            #expect(infos.map(\.lastOffset) == [2, 4, 8])
            #expect(log.logEndOffset == 9)
            #expect(log.epochEntries == [.init(epoch: 1, startOffset: 0), .init(epoch: 2, startOffset: 5)])
            #expect(TestFiles.text(directory.appending("orders-0/leader-epoch-checkpoint")) == "0\n2\n1 0\n2 5\n")

            // From an offset inside the second batch: the read starts at that batch, whole batches only.
            let all = try log.read(from: 4, maxBytes: 1 << 20)
            let bytes = try all.range!.readBytes()
            let headers = Batches.headers(ByteBuffer(bytes: bytes))
            #expect(headers.map(\.base) == [3, 5])
            #expect(headers.map(\.epoch) == [1, 2])
            #expect(all.logEndOffset == 9)

            // A byte limit smaller than one batch still returns that batch; a larger one stops at whole batches.
            let one = try log.read(from: 0, maxBytes: 1)
            #expect(Batches.headers(ByteBuffer(bytes: try one.range!.readBytes())).map(\.base) == [0])
            #expect(try log.read(from: 0, maxBytes: 1, minOneBatch: false).range == nil)
            // An upper bound (high watermark) inside the last batch excludes it.
            let bounded = try log.read(from: 0, maxBytes: 1 << 20, maxOffset: 6)
            #expect(Batches.headers(ByteBuffer(bytes: try bounded.range!.readBytes())).map(\.base) == [0, 3])
            #expect(try log.read(from: 9, maxBytes: 100).range == nil)
            #expect(throws: StorageError.self) { try log.read(from: 10, maxBytes: 100) }
            do throws(StorageError) {
                _ = try log.read(from: 10, maxBytes: 100)
            } catch {
                #expect(error.kafkaErrorCode == .offsetOutOfRange)
            }
            try log.close()
        }
    }

    /// A leader append writes each batch's stamped head from a scratch buffer and the rest from the caller's bytes
    /// (pwritev, at most 1,024 pieces per call): 700 batches in one append (1,400 pieces) land whole, with their
    /// offsets and epoch, valid CRCs, and the caller's buffer unchanged.
    @Test func oneLeaderAppendOfSevenHundredBatchesIsStampedOnDiskAndLeavesTheCallersBytesAlone() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(
                logDirectory: directory.path, topicPartition: partition, config: smallConfig(segmentBytes: 1 << 20))
            _ = try log.appendAsLeader(Batches.make(count: 2), leaderEpoch: 3)
            let request = Batches.concatenate((0..<700).map { Batches.make(count: 1 + $0 % 3, baseOffset: 5) })
            let before = Array(request.readableBytesView)
            let info = try log.appendAsLeader(request, leaderEpoch: 4)
            #expect(Array(request.readableBytesView) == before)
            #expect(info.firstOffset == 2)
            #expect(info.batchCount == 700)
            let stored = Batches.headers(ByteBuffer(bytes: try log.read(from: 2, maxBytes: 1 << 30).range!.readBytes()))
            #expect(stored.count == 700)
            var next: Int64 = 2
            for (number, batch) in stored.enumerated() {
                #expect(batch.base == next && batch.last == next + Int64(number % 3) && batch.epoch == 4)
                next = batch.last + 1
            }
            #expect(log.logEndOffset == next)
            #expect(log.epochEntries == [.init(epoch: 3, startOffset: 0), .init(epoch: 4, startOffset: 2)])
            try log.close()
        }
    }

    /// segment.ms counts from the first batch's timestamp only when it has one: after a batch without timestamps
    /// (-1, as converted magic 0 data carries), timestamped batches join the same segment, as in Kafka.
    @Test func aFirstBatchWithoutTimestampDoesNotRollEveryLaterBatch() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(
                logDirectory: directory.path, topicPartition: partition, config: smallConfig(segmentBytes: 1 << 20))
            _ = try log.appendAsLeader(Batches.make(count: 2, timestamps: [-1, -1]), leaderEpoch: 0)
            for _ in 0..<3 {
                _ = try log.appendAsLeader(Batches.make(count: 2, firstTimestamp: PartitionLog.nowMs()), leaderEpoch: 0)
            }
            #expect(log.segmentBaseOffsets == [0])
            #expect(Batches.headers(ByteBuffer(bytes: try log.read(from: 0, maxBytes: 1 << 20).range!.readBytes())).count == 4)
            try log.close()
        }
    }

    @Test func rollsAtSegmentBytesAndReadsAcrossSegments() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(
                logDirectory: directory.path, topicPartition: partition, config: smallConfig(segmentBytes: 500))
            for _ in 0..<10 { _ = try log.appendAsLeader(Batches.make(count: 5, valueSize: 20), leaderEpoch: 0) }
            let bases = log.segmentBaseOffsets
            #expect(bases.count > 2)
            #expect(bases.first == 0)
            for base in bases {
                #expect(TestFiles.exists(directory.appending("orders-0/" + Segment.fileName(base, ".log"))))
            }
            // Every offset reads back from the batch that holds it.
            for offset in Int64(0)..<50 {
                let range = try log.read(from: offset, maxBytes: 1).range!
                let header = Batches.headers(ByteBuffer(bytes: try range.readBytes()))[0]
                #expect(header.base <= offset && offset <= header.last)
            }
            // Rolled segments had their indexes trimmed to their entries.
            let rolled = directory.appending("orders-0/" + Segment.fileName(bases[0], ".index"))
            #expect(TestFiles.size(rolled)! % 8 == 0)
            #expect(TestFiles.size(rolled)! < 4096)
            try log.close()

            // A clean reopen finds the same log.
            let reopened = try PartitionLog(
                logDirectory: directory.path, topicPartition: partition, config: smallConfig(segmentBytes: 500))
            #expect(reopened.logEndOffset == 50)
            #expect(reopened.segmentBaseOffsets == bases)
            #expect(reopened.epochEntries == [.init(epoch: 0, startOffset: 0)])
            #expect(try reopened.appendAsLeader(Batches.make(count: 1), leaderEpoch: 0).firstOffset == 50)
            try reopened.close()
        }
    }

    @Test func lookUpsByTimestampIncludingInsideCompressedBatches() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(
                logDirectory: directory.path, topicPartition: partition, config: smallConfig(segmentBytes: 800))
            // Offsets 0-9 at t=1000..1009 (gzip), 10-19 at t=2000..2009 (zstd), 20-24 at 500..504 (late, uncompressed).
            _ = try log.appendAsLeader(Batches.make(count: 10, firstTimestamp: 1_000, codec: .gzip), leaderEpoch: 3)
            _ = try log.appendAsLeader(Batches.make(count: 10, firstTimestamp: 2_000, codec: .zstd), leaderEpoch: 4)
            _ = try log.appendAsLeader(Batches.make(count: 5, firstTimestamp: 500), leaderEpoch: 4)
            #expect(try log.offset(for: .earliest) == TimestampAndOffset(timestamp: -1, offset: 0, leaderEpoch: 3))
            #expect(try log.offset(for: .latest) == TimestampAndOffset(timestamp: -1, offset: 25, leaderEpoch: 4))
            #expect(try log.offset(for: .timestamp(0))?.offset == 0)
            #expect(
                try log.offset(for: .timestamp(1_004))
                    == TimestampAndOffset(timestamp: 1_004, offset: 4, leaderEpoch: 3))
            #expect(
                try log.offset(for: .timestamp(1_500))
                    == TimestampAndOffset(timestamp: 2_000, offset: 10, leaderEpoch: 4))
            #expect(try log.offset(for: .timestamp(2_007))?.offset == 17)
            #expect(try log.offset(for: .timestamp(2_010)) == nil)
            #expect(
                try log.offset(for: .maxTimestamp) == TimestampAndOffset(timestamp: 2_009, offset: 19, leaderEpoch: 4))
            try log.close()
        }
    }

    @Test func logAppendTimeRewritesTimestampsAndCRC() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(
                logDirectory: directory.path, topicPartition: partition, config: smallConfig(logAppendTime: true)
            )
            let info = try log.appendAsLeader(Batches.make(count: 3, codec: .lz4), leaderEpoch: 1, nowMs: 123_456)
            #expect(info.logAppendTime == 123_456)
            let bytes = try log.read(from: 0, maxBytes: 1 << 20).range!.readBytes()
            let batch = try RecordBatch(ByteBuffer(bytes: bytes))
            #expect(batch.attributes.timestampType == .logAppendTime)
            #expect(batch.maxTimestamp == 123_456)
            #expect(batch.isCRCValid)
            #expect(try log.offset(for: .timestamp(123_000))?.offset == 0)
            try log.close()
        }
    }

    @Test func followerKeepsOffsetsAndEpochsAndRefusesGoingBack() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(logDirectory: directory.path, topicPartition: partition, config: smallConfig())
            let fetched = Batches.concatenate([
                Batches.make(count: 2, baseOffset: 0, leaderEpoch: 1),
                Batches.make(count: 3, baseOffset: 2, leaderEpoch: 1),
                Batches.make(count: 1, baseOffset: 5, leaderEpoch: 4),
            ])
            let info = try log.appendAsFollower(fetched)
            #expect(info.firstOffset == 0 && info.lastOffset == 5 && info.batchCount == 3)
            #expect(log.epochEntries == [.init(epoch: 1, startOffset: 0), .init(epoch: 4, startOffset: 5)])
            #expect(log.endOffset(forEpoch: 2) == (1, 5))
            do throws(StorageError) {
                _ = try log.appendAsFollower(Batches.make(count: 1, baseOffset: 3, leaderEpoch: 4))
                Issue.record("an append below the log end was accepted")
            } catch {
                #expect(error.kafkaErrorCode == .invalidRecord)
            }
            #expect(log.logEndOffset == 6)
            #expect(
                Batches.headers(ByteBuffer(bytes: try log.read(from: 0, maxBytes: 1 << 20).range!.readBytes())).count
                    == 3)
            try log.close()
        }
    }

    @Test func truncationRollsTheEpochCacheBack() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(
                logDirectory: directory.path, topicPartition: partition, config: smallConfig(segmentBytes: 400))
            for epoch in Int32(1)...6 {
                _ = try log.appendAsLeader(Batches.make(count: 4, valueSize: 30), leaderEpoch: epoch)
            }
            #expect(log.logEndOffset == 24)
            let segmentsBefore = log.segmentBaseOffsets.count
            #expect(segmentsBefore > 2)
            try log.truncate(to: 9)  // inside the batch 8...11: the whole batch goes
            #expect(log.logEndOffset == 8)
            #expect(log.epochEntries.map(\.epoch) == [1, 2])
            #expect(log.segmentBaseOffsets.count < segmentsBefore)
            #expect(try log.read(from: 4, maxBytes: 1 << 20).range != nil)
            #expect(throws: StorageError.self) { try log.read(from: 9, maxBytes: 100) }
            let next = try log.appendAsLeader(Batches.make(count: 2), leaderEpoch: 7)
            #expect(next.firstOffset == 8)
            #expect(log.epochEntries.map(\.epoch) == [1, 2, 7])

            try log.truncateFullyAndStart(at: 100)
            #expect(log.logEndOffset == 100 && log.logStartOffset == 100)
            #expect(log.epochEntries.isEmpty)
            #expect(log.segmentBaseOffsets == [100])
            #expect(try log.appendAsLeader(Batches.make(count: 1), leaderEpoch: 8).firstOffset == 100)
            log.deleteExpiredFiles(nowMs: Int64.max)
            let names = try FileIO.listDirectory(directory.appending("orders-0"))
            #expect(!names.contains { $0.hasSuffix(".deleted") })
            #expect(!names.contains(Segment.fileName(0, ".log")))
            try log.close()
        }
    }
}
