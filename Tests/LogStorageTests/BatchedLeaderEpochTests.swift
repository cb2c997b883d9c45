import KafkaWire
import NIOCore
import SystemPackage
import Testing

@testable import LogStorage

/// The leader epochs of a batch of elections: written without fsync, made durable by one sync of the log directory's
/// file system, synced before a recovery point passes them, written into a closed log's checkpoint without opening
/// it, and kept at the log end across a clean stop.
@Suite struct BatchedLeaderEpochTests {
    static let partition = TopicPartition("orders", 0)

    static func checkpointEntries(_ directory: FilePath) throws -> [EpochEntry] {
        try LeaderEpochCache(path: directory.appending(LeaderEpochCache.fileName)).entries
    }

    @Test func anUnsyncedEpochIsSyncedBeforeTheRecoveryPointPassesItsBatches() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(logDirectory: directory.path, topicPartition: Self.partition)
            _ = try log.appendAsLeader(Batches.make(count: 3), leaderEpoch: 1)
            try log.flush()
            let token = try #require(try log.assignLeaderEpochAwaitingSync(2))
            #expect(log.leaderEpochCheckpointAwaitingSync)
            // The file holds the entry already (only its fsync waits), so a clean reopen sees it.
            #expect(
                try Self.checkpointEntries(log.directory) == [
                    .init(epoch: 1, startOffset: 0), .init(epoch: 2, startOffset: 3),
                ]
            )
            _ = try log.appendAsLeader(Batches.make(count: 2), leaderEpoch: 2)
            try log.flush()
            #expect(!log.leaderEpochCheckpointAwaitingSync)
            #expect(log.recoveryPoint == 5)
            log.confirmLeaderEpochSynced(token)
            #expect(!log.leaderEpochCheckpointAwaitingSync)
            try log.close()
        }
    }

    @Test func aConfirmedSyncCoversOnlyTheWritesBeforeIt() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(logDirectory: directory.path, topicPartition: Self.partition)
            let first = try #require(try log.assignLeaderEpochAwaitingSync(1))
            let second = try #require(try log.assignLeaderEpochAwaitingSync(2))
            log.confirmLeaderEpochSynced(first)
            #expect(log.leaderEpochCheckpointAwaitingSync)
            log.confirmLeaderEpochSynced(second)
            #expect(!log.leaderEpochCheckpointAwaitingSync)
            // An epoch not above the latest writes nothing and has nothing to confirm.
            #expect(try log.assignLeaderEpochAwaitingSync(2) == nil)
            try log.close()
        }
    }

    @Test func aLogTheBudgetClosedTakesItsEpochWithoutReopeningAndKeepsItAcrossACleanStop() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            // Room for one open segment: every log but the last one used is closed.
            let config = LogManagerConfig(logDirectories: [directory.path], fileHandleLimit: 3)
            let manager = try LogManager(config: config, ioPool: pool)
            var logs: [ManagedLog] = []
            for number in 0..<4 {
                let log = try manager.getOrCreateLog(topic: "orders", partition: Int32(number), config: LogConfig())
                _ = try log.appendAsLeader(Batches.make(count: number + 1), leaderEpoch: 1)
                logs.append(log)
            }
            let closed = logs.filter { !$0.isOpen }
            #expect(closed.count >= 2)
            var tokens: [(ManagedLog, UInt64)] = []
            for log in logs {
                tokens.append((log, try #require(try log.assignLeaderEpochAwaitingSync(2))))
            }
            #expect(closed.allSatisfy { !$0.isOpen }, "assigning an epoch reopened a closed log")
            for log in logs {
                let end = log.logEndOffset
                #expect(
                    try Self.checkpointEntries(log.directory) == [
                        .init(epoch: 1, startOffset: 0), .init(epoch: 2, startOffset: end),
                    ]
                )
            }
            try manager.syncLogDirectories()
            for (log, token) in tokens { log.confirmLeaderEpochSynced(token) }
            try manager.shutdown()

            let restarted = try LogManager(config: config, ioPool: pool)
            #expect(restarted.startupReport.cleanShutdownDirectories == [directory.path])
            for (number, _) in logs.enumerated() {
                let log = try #require(restarted.log(for: TopicPartition("orders", Int32(number))))
                #expect(log.logEndOffset == Int64(number + 1))
                // The epoch elected with nothing appended yet still starts at the log end after the clean stop.
                #expect(
                    try log.withLog { $0.epochEntries }
                        == [.init(epoch: 1, startOffset: 0), .init(epoch: 2, startOffset: Int64(number + 1))]
                )
            }
            try restarted.shutdown()
        }
    }

    @Test func theCleanStopMovesEveryRecoveryPointToItsLogEndWithOneSync() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let config = LogManagerConfig(logDirectories: [directory.path], fileHandleLimit: 3)
            let manager = try LogManager(config: config, ioPool: pool)
            for number in 0..<5 {
                let log = try manager.getOrCreateLog(topic: "orders", partition: Int32(number), config: LogConfig())
                _ = try log.appendAsLeader(Batches.make(count: 2), leaderEpoch: 0)
            }
            try manager.shutdown()
            let points = try OffsetCheckpointFile(directory.appending(OffsetCheckpointFile.recoveryPoint)).read()
            #expect(points.count == 5)
            #expect(points.values.allSatisfy { $0 == 2 })
            #expect(TestFiles.exists(directory.appending(LogManager.cleanShutdownFileName)))
        }
    }
}
