import KafkaRecords
import KafkaWire
import NIOCore
import SystemPackage
import Testing

@testable import LogStorage

#if canImport(Glibc)
    import Glibc
#endif

/// Transient faults (no descriptor, a full disk) fail one operation and leave the partition online; a full disk can
/// be drained by DeleteRecords and retention; an index left at its preallocated size by a crash is loaded by its
/// entries.
@Suite struct TransientFaultTests {
    /// A batch of 8 records of 1,000 random bytes (about 8 KB that do not compress), stamped `timestamp`.
    static func randomBatch(_ generator: inout SplitMix64, timestamp: Int64 = 5_000) throws -> ByteBuffer {
        var builder = RecordBatchBuilder()
        for _ in 0..<8 { builder.append(timestamp: timestamp, key: nil, value: randomBytes(1_000, using: &generator)) }
        return try builder.build().buffer
    }

    /// A segment roll whose new files cannot be opened (EMFILE, injected at `open` for this partition's directory:
    /// exhausting the test process's descriptors would break the tests running beside it) fails that append with a
    /// retriable KAFKA_STORAGE_ERROR; the partition stays online, its data readable, and once descriptors are back
    /// the same append rolls and succeeds with offsets continuing. A leader-epoch-checkpoint write meeting the same
    /// fault changes the cache in memory and is written by the next retry.
    @Test func aRollWithoutDescriptorsFailsOneAppendAndThePartitionStaysOnline() throws {
        try TemporaryDirectory.with { directory in
            let config = smallConfig(segmentBytes: 1_000, indexInterval: 100)
            let log = try PartitionLog(logDirectory: directory.path, topicPartition: partition, config: config)
            for _ in 0..<2 { _ = try log.appendAsLeader(Batches.make(count: 3, valueSize: 100), leaderEpoch: 1) }
            let end = log.logEndOffset
            let sizeBefore = log.size
            let next = Batches.make(count: 3, valueSize: 100)
            #expect(sizeBefore + Int64(next.readableBytes) > 1_000, "the next append must roll")

            let partitionDirectory = directory.appending(partition.directoryName)
            FileIO.injectOpenFault(under: partitionDirectory, .tooManyOpenFiles)
            defer { FileIO.injectOpenFault(under: partitionDirectory, nil) }
            do throws(StorageError) {
                _ = try log.appendAsLeader(next, leaderEpoch: 1)
                Issue.record("an append whose roll could not open its files succeeded")
            } catch {
                #expect(error.kafkaErrorCode == .kafkaStorageError)
                #expect(error.isTransient)
                #expect(error.errno == .tooManyOpenFiles)
            }
            #expect(!log.isOffline)
            #expect(log.logEndOffset == end)
            #expect(log.size == sizeBefore)
            #expect(log.segmentBaseOffsets == [0])
            #expect(try log.read(from: 0, maxBytes: 1 << 20).range?.length == Int(sizeBefore))
            // A new leader epoch while descriptors are out: known in memory, its checkpoint write retried later.
            try log.assignLeaderEpoch(2)
            #expect(log.epochEntries.last == EpochEntry(epoch: 2, startOffset: end))
            let checkpoint = partitionDirectory.appending(LeaderEpochCache.fileName)
            #expect(try LeaderEpochCache(path: checkpoint).entries == [EpochEntry(epoch: 1, startOffset: 0)])

            FileIO.injectOpenFault(under: partitionDirectory, nil)
            let info = try log.appendAsLeader(next, leaderEpoch: 2)
            #expect(info.firstOffset == end)
            #expect(log.segmentBaseOffsets == [0, end])
            log.retryDeferredWrites()
            #expect(
                try LeaderEpochCache(path: checkpoint).entries
                    == [EpochEntry(epoch: 1, startOffset: 0), EpochEntry(epoch: 2, startOffset: end)]
            )
            try log.close()
            let reopened = try PartitionLog(logDirectory: directory.path, topicPartition: partition, config: config)
            #expect(reopened.logEndOffset == end + 3)
            try reopened.close()
        }
    }

    /// A fetch of a closed (cold) segment when no descriptor can be had fails that read only; the partition stays
    /// online, the active segment is still served, and the cold one again once descriptors are back.
    @Test func aReadOfAClosedSegmentWithoutDescriptorsFailsOnlyThatRead() throws {
        try TemporaryDirectory.with { directory in
            let config = smallConfig(segmentBytes: 1 << 20, indexInterval: 100)
            let log = try PartitionLog(logDirectory: directory.path, topicPartition: partition, config: config)
            for _ in 0..<2 { _ = try log.appendAsLeader(Batches.make(count: 5), leaderEpoch: 1) }
            try log.roll()
            _ = try log.appendAsLeader(Batches.make(count: 5), leaderEpoch: 1)
            try log.close()
            // Reopened, only the active segment's files are open.
            let reopened = try PartitionLog(logDirectory: directory.path, topicPartition: partition, config: config)
            #expect(reopened.segmentBaseOffsets == [0, 10])

            let partitionDirectory = directory.appending(partition.directoryName)
            FileIO.injectOpenFault(under: partitionDirectory, .tooManyOpenFilesInSystem)
            defer { FileIO.injectOpenFault(under: partitionDirectory, nil) }
            do throws(StorageError) {
                _ = try reopened.read(from: 0, maxBytes: 1 << 20)
                Issue.record("a read of a closed segment succeeded without descriptors")
            } catch {
                #expect(error.kafkaErrorCode == .kafkaStorageError)
                #expect(error.isTransient)
            }
            #expect(!reopened.isOffline)
            #expect(try reopened.read(from: 10, maxBytes: 1 << 20).range != nil)

            FileIO.injectOpenFault(under: partitionDirectory, nil)
            let bytes = try reopened.read(from: 0, maxBytes: 1 << 20).range!.readBytes()
            #expect(Batches.headers(ByteBuffer(bytes: bytes)).map(\.base) == [0, 5])
            try reopened.close()
        }
    }

    /// A partition of ~1 MB in 64 KiB segments under epochs 1 and 2, on a 2 MiB tmpfs then filled to the last byte.
    static func fullDiskLog(_ mountPoint: TemporaryDirectory, timestamp: Int64 = 5_000) throws
        -> (PartitionLog, SystemPackage.FileDescriptor, SplitMix64)
    {
        var config = smallConfig(segmentBytes: 64 << 10, indexInterval: 4_096)
        config.segmentIndexBytes = 8_192
        var generator = SplitMix64(state: 11)
        let log = try PartitionLog(logDirectory: mountPoint.path, topicPartition: partition, config: config)
        for number in 0..<120 {
            _ = try log.appendAsLeader(
                try Self.randomBatch(&generator, timestamp: timestamp),
                leaderEpoch: number < 60 ? 1 : 2
            )
        }
        #expect(log.segmentBaseOffsets.count > 10)
        let (filler, _) = try fillFileSystem(mountPoint.appending("filler"))
        // Full: the next append fails and the partition stays online.
        #expect(
            storageErrorCode { _ = try log.appendAsLeader(try Self.randomBatch(&generator), leaderEpoch: 2) }
                == .kafkaStorageError
        )
        #expect(!log.isOffline)
        return (log, filler, generator)
    }

    /// DeleteRecords on a full disk (its leader-epoch-checkpoint cannot be written) moves the log start and keeps
    /// the partition online; retention then deletes the segments below it, which frees the space, and appends
    /// succeed again without reopening anything. The deferred checkpoint is written once there is room.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func deleteRecordsOnAFullDiskFreesSpaceAndAppendsResume() throws {
        try withSmallTmpfs { mountPoint in
            var (log, filler, generator) = try Self.fullDiskLog(mountPoint)
            defer { try? filler.close() }
            let bases = log.segmentBaseOffsets
            let end = log.logEndOffset
            let target = bases[8] + 1
            let epochThere = log.epochEntries.last { $0.startOffset <= target }!.epoch
            #expect(log.epochEntries.count == 2)
            #expect(try log.deleteRecords(before: target, highWatermark: end) == target)
            #expect(!log.isOffline)
            #expect(log.logStartOffset == target)
            #expect(log.epochEntries.first == EpochEntry(epoch: epochThere, startOffset: target))

            let result = try log.deleteOldSegments(highWatermark: end, timeAndSize: false)
            #expect(result.deletedSegments == Array(bases[..<8]))
            log.deleteExpiredFiles(nowMs: Int64.max)
            #expect(try log.appendAsLeader(try Self.randomBatch(&generator), leaderEpoch: 2).firstOffset == end)
            #expect(try log.read(from: target, maxBytes: 1).range != nil)

            log.retryDeferredWrites()
            let checkpoint = mountPoint.appending(partition.directoryName).appending(LeaderEpochCache.fileName)
            #expect(
                try LeaderEpochCache(path: checkpoint).entries.first
                    == EpochEntry(epoch: epochThere, startOffset: target)
            )
            try log.close()
        }
    }

    /// Retention on a full disk: every segment is past `retention.ms`, the active one too, so the pass rolls (or,
    /// if the roll cannot be written, keeps the active segment) and deletes the rest; the checkpoint it cannot write
    /// waits. The partition stays online and appends succeed once the deleted files are unlinked.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func retentionOnAFullDiskFreesSegments() throws {
        try withSmallTmpfs { mountPoint in
            var (log, filler, generator) = try Self.fullDiskLog(mountPoint, timestamp: 1_000)
            defer { try? filler.close() }
            let bases = log.segmentBaseOffsets
            let end = log.logEndOffset
            var config = log.config
            config.retentionMs = 60_000
            log.updateConfig(config)
            let result = try log.deleteOldSegments(highWatermark: end)
            #expect(!log.isOffline)
            #expect(result.deletedSegments.count >= bases.count - 1)
            #expect(result.deletedSegments.first == 0)
            log.deleteExpiredFiles(nowMs: Int64.max)
            #expect(try log.appendAsLeader(try Self.randomBatch(&generator), leaderEpoch: 2).firstOffset == end)
            #expect(log.logEndOffset > end)
            try log.close()
        }
    }

    /// After an unclean stop the active segment's indexes still have their preallocated length, zeros past the
    /// entries (and on a full tmpfs, pages never allocated, where reading through the mapping raises SIGBUS). They
    /// are loaded by their entries, read with pread from the file's data only, and cut to them on load.
    @Test func anIndexLeftPreallocatedByACrashIsLoadedByItsEntries() throws {
        try TemporaryDirectory.with { directory in
            var config = smallConfig(segmentBytes: 1 << 20, indexInterval: 0)
            config.segmentIndexBytes = 1 << 20
            do {
                let log = try PartitionLog(logDirectory: directory.path, topicPartition: partition, config: config)
                for number in 0..<10 {
                    _ = try log.appendAsLeader(
                        Batches.make(count: 2, firstTimestamp: 1_000 * Int64(number + 1)),
                        leaderEpoch: 1
                    )
                }
                // Dropped without `close`, as a killed process leaves it: indexes untrimmed.
            }
            let segmentDirectory = directory.appending(partition.directoryName)
            let indexPath = segmentDirectory.appending(Segment.fileName(0, ".index"))
            let timeIndexPath = segmentDirectory.appending(Segment.fileName(0, ".timeindex"))
            #expect(TestFiles.size(indexPath) == 1 << 20)
            #expect(TestFiles.size(timeIndexPath) == (1 << 20) / 12 * 12)

            let offsets = try OffsetIndex(path: indexPath, baseOffset: 0, maxIndexSize: 0)
            #expect(offsets.entryCount == 9)
            #expect(offsets.lastOffset == 19)
            let times = try TimeIndex(path: timeIndexPath, baseOffset: 0, maxIndexSize: 0)
            #expect(times.entryCount == 9)
            #expect(times.lastEntry?.timestamp == 10_001)
            try offsets.file.close(trim: false)
            try times.file.close(trim: false)
            #expect(TestFiles.size(indexPath) == 9 * OffsetIndex.entrySize)
            #expect(TestFiles.size(timeIndexPath) == 9 * TimeIndex.entrySize)

            let reopened = try PartitionLog(
                logDirectory: directory.path,
                topicPartition: partition,
                config: config,
                recoveryPoint: 0,
                hadCleanShutdown: false
            )
            #expect(reopened.logEndOffset == 20)
            #expect(try reopened.offset(for: .timestamp(7_000))?.offset == 12)
            try reopened.close()
        }
    }
}
