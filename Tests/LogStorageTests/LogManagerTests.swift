import Foundation
import KafkaProperties
import KafkaWire
import NIOCore
import SystemPackage
import Testing

@testable import LogStorage

/// LogManager over real directories: start-up and clean stop, the clean-shutdown marker, recovery only past the
/// recovery point, checkpoints in Kafka's text format, the `.lock`, deletion, the flush policy, and many
/// partitions under a small descriptor budget.
@Suite struct LogManagerTests {
    static func smallSegments(_ bytes: Int = 200) -> LogConfig {
        var config = LogConfig()
        config.segmentBytes = bytes
        config.segmentIndexBytes = 4096
        return config
    }

    static func managerConfig(_ directory: TemporaryDirectory, _ change: (inout LogManagerConfig) -> Void = { _ in })
        -> LogManagerConfig
    {
        var config = LogManagerConfig(
            logDirectories: [directory.path],
            metaProperties: MetaProperties(clusterID: "test-cluster", nodeID: 1)
        )
        change(&config)
        return config
    }

    /// Flips the last byte of `path` (inside the last record of its last batch, so that batch's CRC fails).
    static func flipLastByte(_ path: FilePath) throws {
        var bytes = try #require(TestFiles.read(path))
        bytes[bytes.count - 1] ^= 0xFF
        try TestFiles.write(path, bytes)
    }

    static func segmentFiles(_ directory: FilePath) throws -> [FilePath] {
        try FileIO.listDirectory(directory).filter { $0.hasSuffix(".log") }.sorted().map { directory.appending($0) }
    }

    @Test func cleanStopWritesCheckpointsAndMarkerAndRestartSkipsRecovery() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let config = Self.managerConfig(directory)
            let manager = try LogManager(config: config, ioPool: pool)
            #expect(manager.startupReport.cleanShutdownDirectories.isEmpty)
            let first = try manager.getOrCreateLog(topic: "orders", partition: 0, config: LogConfig())
            let second = try manager.getOrCreateLog(topic: "orders", partition: 1, config: LogConfig())
            #expect(try manager.getOrCreateLog(topic: "orders", partition: 0, config: LogConfig()) === first)
            for _ in 0..<3 { _ = try first.appendAsLeader(Batches.make(count: 2), leaderEpoch: 0) }
            _ = try second.appendAsLeader(Batches.make(count: 5), leaderEpoch: 0)
            first.highWatermark = 4
            second.highWatermark = 5
            try manager.shutdown()

            let marker = directory.appending(LogManager.cleanShutdownFileName)
            #expect(TestFiles.exists(marker))
            #expect(
                TestFiles.text(directory.appending("recovery-point-offset-checkpoint"))
                    == "0\n2\norders 0 6\norders 1 5\n"
            )
            #expect(
                TestFiles.text(directory.appending("log-start-offset-checkpoint")) == "0\n2\norders 0 0\norders 1 0\n"
            )
            #expect(
                TestFiles.text(directory.appending("replication-offset-checkpoint")) == "0\n2\norders 0 4\norders 1 5\n"
            )

            // A corrupt last batch is not noticed by a clean start: nothing below the log end is scanned.
            let logFile = try #require(try Self.segmentFiles(directory.appending("orders-0")).last)
            try Self.flipLastByte(logFile)
            let restarted = try LogManager(config: config, ioPool: pool)
            #expect(restarted.startupReport.cleanShutdownDirectories == [directory.path])
            #expect(restarted.startupReport.loadedPartitions == 2)
            #expect(!TestFiles.exists(marker))
            let reopened = try #require(restarted.log(for: TopicPartition("orders", 0)))
            #expect(reopened.logEndOffset == 6)
            #expect(reopened.recoveryPoint == 6)
            #expect(reopened.highWatermark == 4)
            #expect(restarted.log(for: TopicPartition("orders", 1))?.logEndOffset == 5)
            try restarted.shutdown()
        }
    }

    /// A clean stop, a start (which removes the marker), a torn tail, then a kill: the next start recovers.
    @Test func killAfterACleanStartStillRecovers() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let config = Self.managerConfig(directory)
            let manager = try LogManager(config: config, ioPool: pool)
            let log = try manager.getOrCreateLog(topic: "t", partition: 0, config: LogConfig())
            for _ in 0..<3 { _ = try log.appendAsLeader(Batches.make(count: 2), leaderEpoch: 0) }
            try manager.shutdown()

            var started: LogManager? = try LogManager(config: config, ioPool: pool)
            #expect(started?.startupReport.cleanShutdownDirectories == [directory.path])
            _ = try started?.log(for: TopicPartition("t", 0))?.appendAsLeader(Batches.make(count: 2), leaderEpoch: 0)
            let logFile = try #require(try Self.segmentFiles(directory.appending("t-0")).last)
            let size = try #require(TestFiles.size(logFile))
            try TestFiles.truncate(logFile, to: size - 7)  // tears the batch just appended
            started = nil  // killed: no flush, no checkpoint, no marker

            let recovered = try LogManager(config: config, ioPool: pool)
            #expect(recovered.startupReport.cleanShutdownDirectories.isEmpty)
            let reopened = try #require(recovered.log(for: TopicPartition("t", 0)))
            #expect(reopened.logEndOffset == 6)
            let headers = try reopened.withLog { (log) throws(StorageError) in
                try log.read(from: 0, maxBytes: 1 << 20).range!.readBytes()
            }
            #expect(Batches.headers(ByteBuffer(bytes: headers)).map(\.last) == [1, 3, 5])
            try recovered.shutdown()
        }
    }

    /// After an unclean stop only segments from the recovery point on are scanned: a corrupt batch in a flushed
    /// segment stays untouched (and the partition online), the corrupt tail past it is cut.
    @Test func uncleanStartRecoversOnlyPastTheRecoveryPoint() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let segmentConfig = Self.smallSegments(150)
            let config = Self.managerConfig(directory) { $0.topicConfig = { _ in segmentConfig } }
            var manager: LogManager? = try LogManager(config: config, ioPool: pool)
            let log = try #require(try manager?.getOrCreateLog(topic: "t", partition: 0, config: segmentConfig))
            for _ in 0..<3 { _ = try log.appendAsLeader(Batches.make(count: 2, valueSize: 30), leaderEpoch: 0) }
            try log.flush()
            let flushedEnd = log.logEndOffset
            try manager?.checkpoint()
            for _ in 0..<2 { _ = try log.appendAsLeader(Batches.make(count: 2, valueSize: 30), leaderEpoch: 0) }
            Self.drain(pool)
            manager = nil  // killed after the checkpoint

            #expect(
                TestFiles.text(directory.appending("recovery-point-offset-checkpoint")) == "0\n1\nt 0 \(flushedEnd)\n"
            )
            let files = try Self.segmentFiles(directory.appending("t-0"))
            #expect(files.count == 5)
            let firstBefore = try #require(TestFiles.read(files[0]))
            try Self.flipLastByte(files[0])  // below the recovery point: never scanned at start-up
            try Self.flipLastByte(files[4])  // past it: cut

            let recovered = try LogManager(config: config, ioPool: pool)
            let reopened = try #require(recovered.log(for: TopicPartition("t", 0)))
            #expect(reopened.logEndOffset == 8)
            #expect(try reopened.withLog { (log) throws(StorageError) in log.isOffline } == false)
            var flipped = firstBefore
            flipped[flipped.count - 1] ^= 0xFF
            #expect(TestFiles.read(files[0]) == flipped)
            #expect(TestFiles.size(files[4]) == 0)
            try recovered.shutdown()
        }
    }

    /// Waits until the pool has run what was queued before (a one-thread pool runs jobs in order).
    static func drain(_ pool: DiskIOPool) {
        let done = DispatchSemaphore(value: 0)
        pool.execute { done.signal() }
        done.wait()
    }

    @Test func lockRefusesASecondManagerAndAnotherProcess() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let config = Self.managerConfig(directory)
            let manager = try LogManager(config: config, ioPool: pool)
            #expect {
                _ = try LogManager(config: config, ioPool: pool)
            } throws: { error in
                guard let error = error as? LogDirectoryError else { return false }
                return error.directory == directory.path && error.underlying.description.contains(directory.path.string)
            }
            #expect(try Self.flockExitStatus(directory.appending(".lock")) == 1)
            try manager.shutdown()
            #expect(try Self.flockExitStatus(directory.appending(".lock")) == 0)
            // Dropping a manager without a clean stop releases the lock too, as a killed process would.
            var dropped: LogManager? = try LogManager(config: config, ioPool: pool)
            #expect(dropped != nil)
            dropped = nil
            #expect(try Self.flockExitStatus(directory.appending(".lock")) == 0)
        }
    }

    /// `flock -n FILE true` in another process: 1 while the lock is held elsewhere, 0 once it is free.
    static func flockExitStatus(_ path: FilePath) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        process.arguments = ["-n", "-E", "1", path.string, "true"]
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    @Test func unusableDirectoriesStopStartUpNamingThem() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let notADirectory = directory.appending("file")
            try TestFiles.write(notADirectory, [1])
            let good = directory.appending("good")
            var config = LogManagerConfig(logDirectories: [good, notADirectory])
            #expect {
                _ = try LogManager(config: config, ioPool: pool)
            } throws: { error in
                (error as? LogDirectoryError)?.directory == notADirectory
                    && "\(error)".contains(notADirectory.string)
            }
            // The lock taken on the good directory was released.
            #expect(try Self.flockExitStatus(good.appending(".lock")) == 0)

            config = LogManagerConfig(logDirectories: [good], metaProperties: MetaProperties(clusterID: "a", nodeID: 1))
            try LogManager(config: config, ioPool: pool).shutdown()
            config.metaProperties = MetaProperties(clusterID: "b", nodeID: 1)
            #expect {
                _ = try LogManager(config: config, ioPool: pool)
            } throws: { error in
                (error as? LogDirectoryError)?.directory == good && "\(error)".contains("cluster.id")
            }
        }
    }

    @Test func deleteRenamesThenRemovesInTheBackground() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let config = Self.managerConfig(directory)
            let manager = try LogManager(config: config, ioPool: pool)
            var immediate = LogConfig()
            immediate.fileDeleteDelayMs = 0
            let log = try manager.getOrCreateLog(topic: "gone", partition: 3, config: immediate)
            _ = try log.appendAsLeader(Batches.make(count: 4), leaderEpoch: 0)
            let renamed = try #require(try manager.deleteLog(TopicPartition("gone", 3)))
            #expect(renamed.lastComponent!.string.hasPrefix("gone-3."))
            #expect(renamed.lastComponent!.string.hasSuffix("-delete"))
            #expect(!TestFiles.exists(directory.appending("gone-3")))
            #expect(throws: StorageError.self) { _ = try log.appendAsLeader(Batches.make(count: 1), leaderEpoch: 0) }
            // The name can be used again at once.
            var delayed = LogConfig()
            delayed.fileDeleteDelayMs = 300
            let again = try manager.getOrCreateLog(topic: "gone", partition: 3, config: delayed)
            #expect(again.logEndOffset == 0)
            Self.drain(pool)
            #expect(!TestFiles.exists(renamed))
            // With file.delete.delay.ms the renamed directory stays that long, so reads in flight finish.
            let kept = try #require(try manager.deleteLog(TopicPartition("gone", 3)))
            Self.drain(pool)
            #expect(TestFiles.exists(kept))
            let deadline = ContinuousClock.now + .seconds(10)
            while TestFiles.exists(kept) && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
            #expect(!TestFiles.exists(kept))
            try manager.shutdown()
            let restarted = try LogManager(config: config, ioPool: pool)
            #expect(restarted.allLogs.isEmpty)
            try restarted.shutdown()
        }
    }

    @Test func flushMessagesAndFlushMsMoveTheRecoveryPoint() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let config = Self.managerConfig(directory) {
                $0.flushIntervalMessages = 5
                $0.flushIntervalMs = 1_000
            }
            let manager = try LogManager(config: config, ioPool: pool)
            let log = try manager.getOrCreateLog(topic: "t", partition: 0, config: LogConfig())
            _ = try log.appendAsLeader(Batches.make(count: 3), leaderEpoch: 0)
            #expect(log.recoveryPoint == 0)
            _ = try log.appendAsLeader(Batches.make(count: 3), leaderEpoch: 0)
            #expect(log.recoveryPoint == 6)
            _ = try log.appendAsLeader(Batches.make(count: 1), leaderEpoch: 0)
            #expect(log.recoveryPoint == 6)
            let now = PartitionLog.nowMs()
            manager.runPeriodicTasks(nowMs: now - 10_000)
            #expect(log.recoveryPoint == 6)
            manager.runPeriodicTasks(nowMs: now + 120_000)
            #expect(log.recoveryPoint == 7)
            // The same periodic round wrote the checkpoints (their 60 s interval had passed).
            #expect(TestFiles.text(directory.appending("recovery-point-offset-checkpoint")) == "0\n1\nt 0 7\n")
            try manager.shutdown()
        }
    }

    @Test func malformedCheckpointsAreRepairedFromTheLogs() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let config = Self.managerConfig(directory)
            do {
                let manager = try LogManager(config: config, ioPool: pool)
                let log = try manager.getOrCreateLog(topic: "t", partition: 0, config: LogConfig())
                _ = try log.appendAsLeader(Batches.make(count: 3), leaderEpoch: 2)
                try log.withLog { (log) throws(StorageError) in try log.assignLeaderEpoch(4) }
                _ = try log.appendAsLeader(Batches.make(count: 2), leaderEpoch: 4)
                log.highWatermark = 5
                try manager.shutdown()
            }
            let garbage = Array("\u{0}garbage\n".utf8)
            let files = [
                OffsetCheckpointFile.recoveryPoint, OffsetCheckpointFile.logStartOffset,
                OffsetCheckpointFile.replicationOffset,
            ].map { directory.appending($0) }
            for file in files { try TestFiles.write(file, garbage) }
            let epochs = directory.appending("t-0").appending(LeaderEpochCache.fileName)
            try TestFiles.write(epochs, garbage)

            var manager: LogManager? = try LogManager(config: config, ioPool: pool)
            #expect(Set(manager!.startupReport.repairedFiles) == Set(files))
            // The clean stop flushed everything: each recovery point is the log end.
            #expect(manager!.startupReport.cleanShutdownDirectories == [directory.path])
            let log = try #require(manager!.log(for: TopicPartition("t", 0)))
            #expect(log.logStartOffset == 0 && log.logEndOffset == 5 && log.highWatermark == 5)
            #expect(
                try log.withLog { $0.epochEntries } == [
                    .init(epoch: 2, startOffset: 0), .init(epoch: 4, startOffset: 3),
                ]
            )
            #expect(TestFiles.text(epochs) == "0\n2\n2 0\n4 3\n")
            // The repaired files were written at once.
            #expect(TestFiles.text(files[0]) == "0\n1\nt 0 5\n")
            #expect(TestFiles.text(files[1]) == "0\n1\nt 0 0\n")
            #expect(TestFiles.text(files[2]) == "0\n1\nt 0 5\n")

            // After a crash nothing says what was flushed: the log is recovered from its start.
            manager = nil  // killed: no marker
            try TestFiles.write(files[0], garbage)
            let restarted = try LogManager(config: config, ioPool: pool)
            #expect(restarted.startupReport.cleanShutdownDirectories.isEmpty)
            #expect(restarted.startupReport.repairedFiles == [files[0]])
            #expect(try #require(restarted.log(for: TopicPartition("t", 0))).logEndOffset == 5)
            #expect(TestFiles.text(files[0]) == "0\n1\nt 0 0\n")
            try restarted.shutdown()
        }
    }

    @Test func eachCheckpointFollowsItsOwnInterval() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let config = Self.managerConfig(directory) {
                $0.checkpointIntervalMs = 1_000
                $0.logStartOffsetCheckpointIntervalMs = 10_000
            }
            let manager = try LogManager(config: config, ioPool: pool)
            let log = try manager.getOrCreateLog(topic: "t", partition: 0, config: LogConfig())
            _ = try log.appendAsLeader(Batches.make(count: 3), leaderEpoch: 0)
            try log.flush()
            let (recoveryPoints, logStarts) = (
                directory.appending(OffsetCheckpointFile.recoveryPoint),
                directory.appending(OffsetCheckpointFile.logStartOffset)
            )
            let now = PartitionLog.nowMs()
            manager.runPeriodicTasks(nowMs: now + 500)
            #expect(!TestFiles.exists(recoveryPoints) && !TestFiles.exists(logStarts))
            manager.runPeriodicTasks(nowMs: now + 2_000)
            #expect(TestFiles.text(recoveryPoints) == "0\n1\nt 0 3\n")
            #expect(!TestFiles.exists(logStarts))
            manager.runPeriodicTasks(nowMs: now + 11_000)
            #expect(TestFiles.text(logStarts) == "0\n1\nt 0 0\n")
            try manager.shutdown()
        }
    }

    @Test func periodicRetentionDeletesExpiredSegmentsOnlyBelowTheHighWatermark() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let manager = try LogManager(
                config: Self.managerConfig(directory) { $0.retentionCheckIntervalMs = 1_000 },
                ioPool: pool
            )
            var config = Self.smallSegments()
            config.retentionMs = 3_600_000
            let log = try manager.getOrCreateLog(topic: "t", partition: 0, config: config)
            let now = PartitionLog.nowMs()
            // Each batch fills a segment: two two-hour-old segments, then two fresh ones (the last is active).
            for age in [7_200_000, 7_200_000, 0, 0] as [Int64] {
                _ = try log.appendAsLeader(Batches.make(count: 3, firstTimestamp: now - age), leaderEpoch: 0)
            }
            #expect(try log.withLog { $0.segmentBaseOffsets } == [0, 3, 6, 9])

            log.highWatermark = 0
            manager.runPeriodicTasks(nowMs: now + 2_000)
            #expect(log.logStartOffset == 0, "nothing at or above the high watermark may go")

            log.highWatermark = log.logEndOffset
            manager.runPeriodicTasks(nowMs: now + 2_500)
            #expect(log.logStartOffset == 0, "the check runs once per log.retention.check.interval.ms")
            manager.runPeriodicTasks(nowMs: now + 4_000)
            #expect(log.logStartOffset == 6)
            #expect(try log.withLog { $0.segmentBaseOffsets } == [6, 9])
            try manager.shutdown()
        }
    }

    @Test func defaultPolicyFlushesOnlyRolledSegmentsInTheBackground() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let manager = try LogManager(config: Self.managerConfig(directory), ioPool: pool)
            let log = try manager.getOrCreateLog(topic: "t", partition: 0, config: Self.smallSegments(150))
            _ = try log.appendAsLeader(Batches.make(count: 2, valueSize: 30), leaderEpoch: 0)
            Self.drain(pool)
            #expect(log.recoveryPoint == 0)  // no roll, no fsync: the OS flushes
            _ = try log.appendAsLeader(Batches.make(count: 2, valueSize: 30), leaderEpoch: 0)
            let bases = try log.withLog { (log) throws(StorageError) in log.segmentBaseOffsets }
            #expect(bases == [0, 2])
            Self.drain(pool)
            #expect(log.recoveryPoint >= 2)  // the rolled segment was fsynced and the recovery point moved past it
            try manager.shutdown()
        }
    }

    static func openDescriptorCount() -> Int {
        (try? FileIO.listDirectory(FilePath("/proc/self/fd")).count) ?? 0
    }

    /// 2,000 partitions of three segments each under a budget of 300 descriptors: creating, restarting and
    /// reading every partition never holds more than the budget (plus what other tests running in parallel hold).
    @Test func manyPartitionsStayWithinTheDescriptorBudget() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let segmentConfig = Self.smallSegments(150)
            let config = Self.managerConfig(directory) {
                $0.fileHandleLimit = 300
                $0.topicConfig = { _ in segmentConfig }
                $0.recoveryThreadsPerDirectory = 2
            }
            let count = 2_000
            let manager = try LogManager(config: config, ioPool: pool)
            for partition in 0..<count {
                let log = try manager.getOrCreateLog(topic: "many", partition: Int32(partition), config: segmentConfig)
                for _ in 0..<3 { _ = try log.appendAsLeader(Batches.make(count: 2, valueSize: 30), leaderEpoch: 0) }
                #expect(manager.budget.charged <= 300)
            }
            Self.drain(pool)
            #expect(manager.budget.evictions > 0)
            #expect(manager.budget.openLogs < count)
            try manager.shutdown()

            let restarted = try LogManager(config: config, ioPool: pool)
            #expect(restarted.startupReport.loadedPartitions == count)
            #expect(restarted.budget.charged <= 300)
            for partition in 0..<count {
                let log = try #require(restarted.log(for: TopicPartition("many", Int32(partition))))
                let segments = try log.withLog { (log) throws(StorageError) in log.segmentBaseOffsets.count }
                #expect(segments == 3)
                #expect(log.logEndOffset == 6)
                #expect(restarted.budget.charged <= 300)
            }
            try restarted.shutdown()
        }
    }
}
