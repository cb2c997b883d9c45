import KafkaRecords
import KafkaWire
import NIOCore
import SystemPackage
import Testing

@testable import LogStorage

@Suite struct RetentionTests {
    static func config(retentionMs: Int64 = -1, retentionBytes: Int64 = -1) -> LogConfig {
        var config = smallConfig(segmentBytes: 1 << 20, indexInterval: 100)
        config.retentionMs = retentionMs
        config.retentionBytes = retentionBytes
        config.fileDeleteDelayMs = 1_000
        return config
    }

    /// Four segments: three rolled ones holding timestamps around 1000, 2000 and 3000, and the active one around
    /// 4000. Each holds two batches (3 records each), one from producer 7 and one without a producer id; segment n
    /// is written under leader epoch n + 1. Segments are 6 offsets apart: bases 0, 6, 12, 18; log end 24.
    static func makeLog(_ directory: TemporaryDirectory, _ config: LogConfig) throws -> PartitionLog {
        let log = try PartitionLog(
            logDirectory: directory.path,
            topicPartition: partition,
            config: config,
            nowMs: 0
        )
        for segment in 0..<4 {
            let timestamp = Int64(segment + 1) * 1_000
            _ = try log.appendAsLeader(
                producerBatch(producerId: 7, sequence: Int32(segment * 3), count: 3, timestamp: timestamp),
                leaderEpoch: Int32(segment + 1),
                nowMs: timestamp
            )
            _ = try log.appendAsLeader(
                Batches.make(count: 3, firstTimestamp: timestamp, valueSize: 20),
                leaderEpoch: Int32(segment + 1),
                nowMs: timestamp
            )
            if segment < 3 { try log.roll(nowMs: timestamp) }
        }
        #expect(log.segmentBaseOffsets == [0, 6, 12, 18])
        #expect(log.logEndOffset == 24)
        return log
    }

    static func names(_ directory: TemporaryDirectory) throws -> Set<String> {
        Set(try FileIO.listDirectory(directory.appending(partition.directoryName)))
    }

    @Test func retentionMsJudgesASegmentByItsLargestTimestamp() throws {
        try TemporaryDirectory.with { directory in
            let log = try Self.makeLog(directory, Self.config(retentionMs: 1_500))
            // The files were written just now (mtime 2026); only the record timestamps make them old.
            // Segment 0's largest timestamp is 1002: at 2502 it is exactly 1500 old, not more, so it stays.
            #expect(try log.deleteOldSegments(nowMs: 2_502, highWatermark: 24).deletedSegments == [])
            let result = try log.deleteOldSegments(nowMs: 3_503, highWatermark: 24)
            #expect(result.deletedSegments == [0, 6])
            #expect(result.logStartOffset == 12 && log.logStartOffset == 12)
            #expect(log.segmentBaseOffsets == [12, 18])
            // The epoch cache starts at the log start; reads below it are out of range.
            #expect(log.epochEntries == [.init(epoch: 3, startOffset: 12), .init(epoch: 4, startOffset: 18)])
            #expect(storageErrorCode { _ = try log.read(from: 11, maxBytes: 1 << 20) } == .offsetOutOfRange)
            #expect(try log.read(from: 12, maxBytes: 1 << 20).range != nil)
            #expect(try log.offset(for: .earliest)?.offset == 12)
            #expect(try log.offset(for: .timestamp(0))?.offset == 12)

            // Deleted files are renamed .deleted and unlinked only after file.delete.delay.ms.
            let deletedName = Segment.fileName(0, ".log.deleted")
            #expect(try Self.names(directory).contains(deletedName))
            #expect(!(try Self.names(directory).contains(Segment.fileName(0, ".log"))))
            log.deleteExpiredFiles(nowMs: 3_503 + 999)
            #expect(try Self.names(directory).contains(deletedName))
            log.deleteExpiredFiles(nowMs: 3_503 + 1_000)
            #expect(!(try Self.names(directory).contains { $0.hasSuffix(".deleted") }))
            try log.close()
        }
    }

    @Test func retentionNeverPassesTheHighWatermark() throws {
        try TemporaryDirectory.with { directory in
            let log = try Self.makeLog(directory, Self.config(retentionMs: 10))
            // Everything has expired, but segment 6...11 holds offsets at or above the high watermark 11.
            let result = try log.deleteOldSegments(nowMs: 1_000_000, highWatermark: 11)
            #expect(result.deletedSegments == [0])
            #expect(log.logStartOffset == 6)
            // The active segment stays while the high watermark is below the log end.
            #expect(try log.deleteOldSegments(nowMs: 1_000_000, highWatermark: 23).deletedSegments == [6, 12])
            #expect(log.segmentBaseOffsets == [18])
            #expect(log.logStartOffset == 18)
            try log.close()
        }
    }

    @Test func whenEverythingExpiredTheActiveSegmentIsRolledAndDeletedToo() throws {
        try TemporaryDirectory.with { directory in
            let log = try Self.makeLog(directory, Self.config(retentionMs: 10))
            let producers = log.producerStates
            let result = try log.deleteOldSegments(nowMs: 1_000_000, highWatermark: 24)
            #expect(result.deletedSegments == [0, 6, 12, 18])
            #expect(log.segmentBaseOffsets == [24])
            #expect(log.logStartOffset == 24 && log.logEndOffset == 24 && log.size == 0)
            #expect(log.epochEntries == [.init(epoch: 4, startOffset: 24)])
            #expect(storageErrorCode { _ = try log.read(from: 23, maxBytes: 100) } == .offsetOutOfRange)
            // Producer entries outlive their batches (Kafka keeps them until producer.id.expiration.ms), and the
            // snapshots of deleted segments are gone.
            #expect(log.producerStates == producers)
            #expect(log.producerSnapshotOffsets == [24])
            // The empty active segment is never deleted; appends continue at the log end.
            #expect(try log.deleteOldSegments(nowMs: 2_000_000, highWatermark: 24).deletedSegments == [])
            let next = try log.appendAsLeader(
                producerBatch(producerId: 7, sequence: 12, count: 1, timestamp: 5_000),
                leaderEpoch: 5,
                nowMs: 5_000
            )
            #expect(next.firstOffset == 24 && !next.isDuplicate)
            try log.close()

            let reopened = try PartitionLog(
                logDirectory: directory.path,
                topicPartition: partition,
                config: Self.config(retentionMs: 10),
                logStartOffset: 24,
                nowMs: 5_000
            )
            #expect(reopened.logStartOffset == 24 && reopened.logEndOffset == 25)
            #expect(reopened.producerStates[7]?.lastSequence == 12)
            try reopened.close()
        }
    }

    @Test func retentionBytesDeletesWholeOldestSegments() throws {
        try TemporaryDirectory.with { directory in
            var config = Self.config()
            let probe = try Self.makeLog(directory, config)
            let sizes = [0, 6, 12, 18].map { base in
                Int64(TestFiles.size(directory.appending("orders-0/" + Segment.fileName(base, ".log")))!)
            }
            let total = sizes.reduce(0, +)
            #expect(probe.size == total)
            try probe.close()

            // One byte short of being able to drop segment 0: nothing goes.
            config.retentionBytes = total - sizes[0] + 1
            var log = try PartitionLog(
                logDirectory: directory.path,
                topicPartition: partition,
                config: config,
                nowMs: 0
            )
            #expect(try log.deleteOldSegments(nowMs: 0, highWatermark: 24).deletedSegments == [])
            try log.close()
            // Exactly at the limit without segments 0 and 6: both go, the rest stays.
            config.retentionBytes = total - sizes[0] - sizes[1]
            log = try PartitionLog(logDirectory: directory.path, topicPartition: partition, config: config, nowMs: 0)
            #expect(try log.deleteOldSegments(nowMs: 0, highWatermark: 24).deletedSegments == [0, 6])
            #expect(log.size == sizes[2] + sizes[3])
            #expect(log.logStartOffset == 12)
            #expect(log.producerSnapshotOffsets.allSatisfy { $0 >= 12 })
            try log.close()
        }
    }

    @Test func deleteRecordsMovesTheLogStartAndRetentionThenDropsWholeSegments() throws {
        try TemporaryDirectory.with { directory in
            let log = try Self.makeLog(directory, Self.config())
            // Above the high watermark, or negative: OFFSET_OUT_OF_RANGE, nothing changes.
            #expect(storageErrorCode { try log.deleteRecords(before: 21, highWatermark: 20) } == .offsetOutOfRange)
            #expect(storageErrorCode { try log.deleteRecords(before: -2, highWatermark: 20) } == .offsetOutOfRange)
            #expect(log.logStartOffset == 0)

            #expect(try log.deleteRecords(before: 14, highWatermark: 20) == 14)
            #expect(log.logStartOffset == 14)
            #expect(log.epochEntries.first == .init(epoch: 3, startOffset: 14))
            #expect(storageErrorCode { _ = try log.read(from: 13, maxBytes: 1 << 20) } == .offsetOutOfRange)
            // A read at the log start returns the batch holding it (12...14).
            let bytes = try log.read(from: 14, maxBytes: 1).range!.readBytes()
            #expect(Batches.headers(ByteBuffer(bytes: bytes)).first?.base == 12)
            #expect(try log.offset(for: .earliest)?.offset == 14)
            #expect(try log.offset(for: .timestamp(0))?.offset == 14)
            // A lower offset does not move it back.
            #expect(try log.deleteRecords(before: 3, highWatermark: 20) == 14)
            // The segments wholly below the log start go at the next retention pass (time and size unlimited).
            #expect(log.segmentBaseOffsets == [0, 6, 12, 18])
            #expect(try log.deleteOldSegments(nowMs: 0, highWatermark: 20).deletedSegments == [0, 6])
            #expect(log.segmentBaseOffsets == [12, 18])
            #expect(log.logStartOffset == 14)
            try log.close()

            let reopened = try PartitionLog(
                logDirectory: directory.path,
                topicPartition: partition,
                config: Self.config(),
                logStartOffset: 14,
                nowMs: 0
            )
            #expect(reopened.logStartOffset == 14)
            #expect(reopened.epochEntries.first == .init(epoch: 3, startOffset: 14))
            #expect(reopened.producerStates[7]?.lastSequence == 11)
            try reopened.close()
        }
    }
}
