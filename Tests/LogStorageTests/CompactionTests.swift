import KafkaRecords
import KafkaWire
import NIOCore
import SystemPackage
import Testing

@testable import LogStorage

/// The log cleaner on real segment files: the latest value per key survives with its offset, superseded records and
/// old tombstones go, batches keep their codec and producer fields, a small key map cleans in passes, and a stop
/// after any step of the swap leaves a log a restart completes.
@Suite struct CompactionTests {
    static let partition = TopicPartition("compacted", 0)

    static func config(segmentBytes: Int = 400, deleteRetentionMs: Int64 = 86_400_000) -> LogConfig {
        var config = LogConfig()
        config.segmentBytes = segmentBytes
        config.segmentIndexBytes = 4096
        config.deletesOldSegments = false
        config.compacts = true
        config.deleteRetentionMs = deleteRetentionMs
        config.fileDeleteDelayMs = 0
        return config
    }

    /// One batch of (key, value) records; a nil value is a tombstone.
    static func batch(
        _ records: [(String, String?)],
        timestamp: Int64 = 1_000,
        codec: CompressionCodec = .none,
        producer: (id: Int64, sequence: Int32)? = nil
    ) -> ByteBuffer {
        var builder = RecordBatchBuilder(
            codec: codec,
            producerID: producer?.id ?? -1,
            producerEpoch: producer == nil ? -1 : 0,
            baseSequence: producer?.sequence ?? -1
        )
        for (key, value) in records {
            builder.append(timestamp: timestamp, key: ByteBuffer(string: key), value: value.map { ByteBuffer(string: $0) })
        }
        return try! builder.build(compression: CompressionContext()).buffer
    }

    /// Every record of the log as (offset, key, value).
    static func contents(_ log: PartitionLog) throws -> [(Int64, String, String?)] {
        var result: [(Int64, String, String?)] = []
        var offset = log.logStartOffset
        while offset < log.logEndOffset, let range = try log.read(from: offset, maxBytes: 1 << 20).range {
            var splitter = RecordBatchSplitter(ByteBuffer(bytes: try range.readBytes()))
            while let batch = try splitter.next() {
                var records = try batch.makeRecordIterator(compression: CompressionContext(), maxDecompressedBytes: 1 << 24)
                while let record = try records.next() {
                    guard record.offset >= offset, let key = record.key else { continue }
                    result.append((record.offset, String(buffer: key), record.value.map { String(buffer: $0) }))
                }
                offset = batch.lastOffset + 1
            }
        }
        return result
    }

    /// 10 keys updated 10 times, one key per batch, over many small segments: offsets 0-99, key i at offsets
    /// i, i+10, ..., value "k<i>-v<round>".
    static func writeUpdates(_ log: PartitionLog, timestamp: Int64 = 1_000, codec: CompressionCodec = .none) throws {
        for round in 0..<10 {
            for key in 0..<10 {
                _ = try log.appendAsLeader(
                    Self.batch([("k\(key)", "k\(key)-v\(round)")], timestamp: timestamp, codec: codec),
                    leaderEpoch: 0
                )
            }
        }
        try log.roll()
    }

    /// `body` with the managed log's open `PartitionLog`, for helpers whose errors are not `StorageError`s.
    static func with<T>(_ managed: ManagedLog, _ body: (PartitionLog) throws -> T) throws -> T {
        var result: Result<T, any Error>?
        try managed.withLog { (log) throws(StorageError) in result = Result { try body(log) } }
        return try #require(result).get()
    }

    static func latestPerKey(_ contents: [(Int64, String, String?)]) -> [String: String?] {
        Dictionary(contents.map { ($0.1, $0.2) }, uniquingKeysWith: { $1 })
    }

    @Test(arguments: [CompressionCodec.none, .lz4, .zstd])
    func theLatestValuePerKeyStaysWithItsOffset(codec: CompressionCodec) throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(logDirectory: directory.path, topicPartition: Self.partition, config: Self.config())
            try Self.writeUpdates(log, codec: codec)
            let before = try Self.contents(log)
            #expect(before.count == 100 && log.segmentBaseOffsets.count > 5)
            let result = try #require(
                try log.clean(firstDirtyOffset: 0, highWatermark: log.logEndOffset, dedupeBufferBytes: 1 << 20)
            )
            #expect(result.recordsRemoved == 90 && result.firstDirtyOffset == 100 && result.dirtyRatioAfter == 0)
            let after = try Self.contents(log)
            #expect(after.map(\.0) == Array(90..<100), "the latest record of each key, at its offset")
            #expect(Self.latestPerKey(after) == Self.latestPerKey(before))
            #expect(log.logEndOffset == 100)
            // The rewritten batches keep the codec.
            let bytes = try #require(try log.read(from: 90, maxBytes: 1 << 20).range).readBytes()
            var splitter = RecordBatchSplitter(ByteBuffer(bytes: bytes))
            #expect(try splitter.next()?.attributes.compressionCodec == codec)
            // Nothing left to clean.
            #expect(try log.clean(firstDirtyOffset: 100, highWatermark: 100, dedupeBufferBytes: 1 << 20) == nil)
            try log.close()
            // A restart reads the cleaned segments (gaps between offsets included).
            let reopened = try PartitionLog(logDirectory: directory.path, topicPartition: Self.partition,
                                            config: Self.config(), hadCleanShutdown: false)
            #expect(try Self.contents(reopened).map(\.0) == Array(90..<100))
            try reopened.close()
        }
    }

    @Test func tombstonesGoAfterDeleteRetentionAndTheActiveSegmentIsNeverTouched() throws {
        try TemporaryDirectory.with { directory in
            let now = PartitionLog.nowMs()
            let log = try PartitionLog(
                logDirectory: directory.path,
                topicPartition: Self.partition,
                config: Self.config(deleteRetentionMs: 60_000)
            )
            _ = try log.appendAsLeader(Self.batch([("old", "1"), ("fresh", "1")], timestamp: now - 600_000), leaderEpoch: 0)
            _ = try log.appendAsLeader(Self.batch([("old", nil)], timestamp: now - 600_000), leaderEpoch: 0)
            _ = try log.appendAsLeader(Self.batch([("fresh", nil)], timestamp: now), leaderEpoch: 0)
            try log.roll()
            _ = try log.appendAsLeader(Self.batch([("active", "1"), ("active", "2")], timestamp: now), leaderEpoch: 0)
            _ = try log.clean(firstDirtyOffset: 0, highWatermark: log.logEndOffset, dedupeBufferBytes: 1 << 20, nowMs: now)
            let after = try Self.contents(log)
            // The old tombstone went with the value it deleted; the fresh one stays; the active segment is intact.
            #expect(after.map(\.1) == ["fresh", "active", "active"])
            #expect(after.first?.2 == nil)
            try log.close()
        }
    }

    @Test func aSmallKeyMapCleansInPassesToTheSameResult() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(logDirectory: directory.path, topicPartition: Self.partition, config: Self.config())
            try Self.writeUpdates(log)
            let before = try Self.contents(log)
            // Room for about 4 keys: each pass maps a few batches.
            var firstDirty: Int64 = 0
            var passes = 0
            while let result = try log.clean(firstDirtyOffset: firstDirty, highWatermark: log.logEndOffset,
                                             dedupeBufferBytes: 4 * (2 + PartitionLog.offsetMapEntryOverhead))
            {
                #expect(result.firstDirtyOffset > firstDirty)
                firstDirty = result.firstDirtyOffset
                passes += 1
            }
            #expect(passes >= 3)
            let after = try Self.contents(log)
            #expect(after.map(\.0) == Array(90..<100))
            #expect(Self.latestPerKey(after) == Self.latestPerKey(before))
            try log.close()
        }
    }

    @Test func aProducersLastBatchStaysSoItsRetryIsStillADuplicate() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(logDirectory: directory.path, topicPartition: Self.partition, config: Self.config())
            // A current timestamp: a producer whose last batch is older than producer.id.expiration.ms is forgotten.
            let now = PartitionLog.nowMs()
            let last = Self.batch([("k", "1")], timestamp: now, producer: (id: 7, sequence: 0))
            _ = try log.appendAsLeader(last, leaderEpoch: 0)
            _ = try log.appendAsLeader(Self.batch([("k", "2")], timestamp: now), leaderEpoch: 0)
            try log.roll()
            _ = try log.clean(firstDirtyOffset: 0, highWatermark: log.logEndOffset, dedupeBufferBytes: 1 << 20)
            #expect(try Self.contents(log).map(\.2) == ["2"], "the producer's record is superseded")
            try log.close()
            // Producer state rebuilt from the log alone (no snapshot), as after the snapshots are lost.
            let partitionDirectory = directory.appending(Self.partition.directoryName)
            for name in try FileIO.listDirectory(partitionDirectory) where name.hasSuffix(".snapshot") {
                try FileIO.unlink(partitionDirectory.appending(name))
            }
            let reopened = try PartitionLog(logDirectory: directory.path, topicPartition: Self.partition,
                                            config: Self.config(), hadCleanShutdown: false)
            // The emptied batch kept the producer's state: the retry answers with the original offset.
            let retry = try reopened.appendAsLeader(last, leaderEpoch: 0)
            #expect(retry.isDuplicate && retry.firstOffset == 0)
            try reopened.close()
        }
    }

    @Test(arguments: [CleanerCrashPoint.cleanedWritten, .renamedToSwap, .oldSegmentDeleted])
    func aStopAtAnyStepOfTheSwapLeavesEveryLatestValue(point: CleanerCrashPoint) throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(logDirectory: directory.path, topicPartition: Self.partition, config: Self.config())
            try Self.writeUpdates(log)
            let before = try Self.contents(log)
            #expect(throws: StorageError.self) {
                try log.clean(firstDirtyOffset: 0, highWatermark: log.logEndOffset, dedupeBufferBytes: 1 << 20,
                              crashAt: point)
            }
            // As after a kill: no clean close; the restart completes or discards the swap.
            let reopened = try PartitionLog(logDirectory: directory.path, topicPartition: Self.partition,
                                            config: Self.config(), hadCleanShutdown: false)
            let names = try FileIO.listDirectory(directory.appending(Self.partition.directoryName))
            #expect(!names.contains { $0.hasSuffix(".swap") || $0.hasSuffix(".cleaned") })
            let contents = try Self.contents(reopened)
            #expect(Self.latestPerKey(contents) == Self.latestPerKey(before), "no key lost its latest value")
            #expect(contents.map(\.0) == contents.map(\.0).sorted() && reopened.logEndOffset == 100)
            // Cleaning again finishes the job.
            _ = try reopened.clean(firstDirtyOffset: 0, highWatermark: 100, dedupeBufferBytes: 1 << 20)
            #expect(try Self.contents(reopened).map(\.0) == Array(90..<100))
            try reopened.close()
        }
    }

    @Test func theCleanerPicksDirtyCompactedLogsAndKeepsItsProgressAcrossARestart() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            var managerConfig = LogManagerTests.managerConfig(directory)
            managerConfig.cleaner.backoffMs = 1_000
            var deleting = Self.config()
            deleting.compacts = false
            let manager = try LogManager(config: managerConfig, ioPool: pool)
            let compacted = try manager.getOrCreateLog(topic: "compacted", partition: 0, config: Self.config())
            let plain = try manager.getOrCreateLog(topic: "plain", partition: 0, config: deleting)
            for log in [compacted, plain] {
                try Self.with(log) { try Self.writeUpdates($0) }
                log.highWatermark = log.logEndOffset
            }
            let now = PartitionLog.nowMs()
            manager.runPeriodicTasks(nowMs: now)
            #expect(manager.cleaner.firstDirtyOffset(compacted.topicPartition) == 100)
            #expect(try Self.with(compacted) { try Self.contents($0) }.count == 10)
            #expect(try Self.with(plain) { try Self.contents($0) }.count == 100,
                    "a topic without cleanup.policy=compact is never cleaned")
            let checkpoint = directory.appending(OffsetCheckpointFile.cleanerOffset)
            #expect(try OffsetCheckpointFile(checkpoint).read() == [compacted.topicPartition: 100])
            try manager.shutdown()

            let restarted = try LogManager(config: managerConfig, ioPool: pool)
            #expect(restarted.cleaner.firstDirtyOffset(TopicPartition("compacted", 0)) == 100)
            try restarted.shutdown()
        }
    }

    @Test func aLogBelowItsDirtyRatioWaitsUntilMaxCompactionLag() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            var config = Self.config()
            config.minCleanableDirtyRatio = 0.99
            let now = PartitionLog.nowMs()
            var managerConfig = LogManagerTests.managerConfig(directory)
            managerConfig.cleaner.backoffMs = 0
            let manager = try LogManager(config: managerConfig, ioPool: pool)
            let log = try manager.getOrCreateLog(topic: "lagging", partition: 0, config: config)
            try Self.with(log) { try Self.writeUpdates($0, timestamp: now - 60_000) }
            log.highWatermark = log.logEndOffset
            manager.runPeriodicTasks(nowMs: now)
            // Cleaned once: every byte was dirty (ratio 1). More updates make it dirty again, below 0.99.
            #expect(manager.cleaner.firstDirtyOffset(log.topicPartition) == 100)
            try Self.with(log) { try Self.writeUpdates($0, timestamp: now - 60_000) }
            log.highWatermark = log.logEndOffset
            manager.runPeriodicTasks(nowMs: now + 1)
            #expect(manager.cleaner.firstDirtyOffset(log.topicPartition) == 100, "below min.cleanable.dirty.ratio")
            config.maxCompactionLagMs = 30_000
            manager.updateConfig(topic: "lagging", config)
            manager.runPeriodicTasks(nowMs: now + 2)
            #expect(manager.cleaner.firstDirtyOffset(log.topicPartition) == 200, "overdue by max.compaction.lag.ms")
            try manager.shutdown()
        }
    }
}
