import KafkaWire
import SystemPackage
import Testing

@testable import LogStorage

@Suite struct CheckpointTests {
    @Test func offsetCheckpointInKafkasFormat() throws {
        try TemporaryDirectory.with { directory in
            let file = OffsetCheckpointFile(directory.appending(OffsetCheckpointFile.recoveryPoint))
            #expect(try file.read().isEmpty)
            let offsets = [TopicPartition("orders", 1): Int64(42), TopicPartition("a-b", 0): 7]
            try file.write(offsets)
            #expect(TestFiles.text(file.path) == "0\n2\na-b 0 7\norders 1 42\n")
            #expect(try file.read() == offsets)
            #expect(!TestFiles.exists(FilePath(file.path.string + ".tmp")))
        }
    }

    @Test func malformedCheckpointNamesTheFile() throws {
        try TemporaryDirectory.with { directory in
            let path = directory.appending(OffsetCheckpointFile.logStartOffset)
            try TestFiles.write(path, Array("0\n2\nt 0 5\n".utf8))
            do throws(StorageError) {
                _ = try OffsetCheckpointFile(path).read()
                Issue.record("a short checkpoint was accepted")
            } catch {
                #expect(error.description.contains(path.string))
                #expect(error.kafkaErrorCode == .kafkaStorageError)
            }
        }
    }

    @Test func topicPartitionDirectoryNames() {
        #expect(TopicPartition(directoryName: "my-topic-12") == TopicPartition("my-topic", 12))
        #expect(TopicPartition(directoryName: "t-0.2f1c0d-delete") == nil)
        #expect(TopicPartition(directoryName: "t-0.2f1c0d-future") == nil)
        #expect(TopicPartition(directoryName: "noPartition") == nil)
        #expect(TopicPartition("a.b", 3).directoryName == "a.b-3")
    }
}

@Suite struct LeaderEpochCacheTests {
    @Test func assignTruncateAndAnswerOffsetForLeaderEpoch() throws {
        try TemporaryDirectory.with { directory in
            let path = directory.appending(LeaderEpochCache.fileName)
            let cache = try LeaderEpochCache(path: path)
            try cache.assign(epoch: 1, startOffset: 0)
            try cache.assign(epoch: 1, startOffset: 5)  // same epoch: the first start stands
            try cache.assign(epoch: 3, startOffset: 10)
            try cache.assign(epoch: 2, startOffset: 12)  // older than the latest: ignored
            try cache.assign(epoch: 5, startOffset: 20)
            #expect(
                cache.entries == [
                    .init(epoch: 1, startOffset: 0), .init(epoch: 3, startOffset: 10), .init(epoch: 5, startOffset: 20),
                ])
            #expect(TestFiles.text(path) == "0\n3\n1 0\n3 10\n5 20\n")

            #expect(cache.endOffset(for: -1, logEndOffset: 30) == (-1, -1))
            #expect(cache.endOffset(for: 0, logEndOffset: 30) == (0, 0))  // below every epoch: where the log starts
            #expect(cache.endOffset(for: 1, logEndOffset: 30) == (1, 10))
            #expect(cache.endOffset(for: 2, logEndOffset: 30) == (1, 10))  // KIP-279: largest epoch <= 2
            #expect(cache.endOffset(for: 3, logEndOffset: 30) == (3, 20))
            #expect(cache.endOffset(for: 5, logEndOffset: 30) == (5, 30))
            #expect(cache.endOffset(for: 6, logEndOffset: 30) == (-1, -1))  // above every epoch: unknown
            #expect(cache.epoch(forOffset: 15) == 3)

            try cache.truncate(fromEnd: 20)
            #expect(cache.latest == .init(epoch: 3, startOffset: 10))
            try cache.truncate(fromStart: 12)
            #expect(cache.entries == [.init(epoch: 3, startOffset: 12)])
            #expect(try LeaderEpochCache(path: path).entries == cache.entries)

            // A new epoch at or below an existing start offset replaces the conflicting entries.
            try cache.assign(epoch: 4, startOffset: 12)
            #expect(cache.entries == [.init(epoch: 4, startOffset: 12)])
            try cache.clear()
            #expect(TestFiles.text(path) == "0\n0\n")
        }
    }
}

@Suite struct LogDirectoryTests {
    @Test func metaPropertiesWrittenOnceThenChecked() throws {
        try TemporaryDirectory.with { directory in
            let meta = MetaProperties(clusterID: "q1Sh-9_FQ2ezbA6s8hQ0xw", nodeID: 1)
            try meta.ensure(in: directory.path)
            let text = TestFiles.text(directory.appending("meta.properties"))!
            #expect(text.contains("cluster.id=q1Sh-9_FQ2ezbA6s8hQ0xw\n"))
            #expect(text.contains("node.id=1\n"))
            #expect(text.contains("version=1\n"))
            try meta.ensure(in: directory.path)
            #expect(try MetaProperties.read(in: directory.path) == meta)

            do throws(StorageError) {
                try MetaProperties(clusterID: "other", nodeID: 1).ensure(in: directory.path)
                Issue.record("another cluster id was accepted")
            } catch {
                #expect(error.description.contains(directory.appending("meta.properties").string))
                #expect(error.description.contains("cluster.id"))
            }
            #expect(throws: StorageError.self) {
                try MetaProperties(clusterID: meta.clusterID, nodeID: 2).ensure(in: directory.path)
            }
        }
    }

    @Test func lockIsExclusiveUntilReleased() throws {
        try TemporaryDirectory.with { directory in
            let lock = try LogDirectoryLock(directory: directory.path)
            do throws(StorageError) {
                _ = try LogDirectoryLock(directory: directory.path)
                Issue.record("a second lock on one directory was granted")
            } catch {
                #expect(error.description.contains(directory.path.string))
            }
            lock.unlock()
            let again = try LogDirectoryLock(directory: directory.path)
            again.unlock()
        }
    }
}

@Suite struct DiskIOPoolTests {
    @Test func runsJobsOffTheCallersThreadAndReturnsResultsAndErrors() async throws {
        let pool = DiskIOPool(threadCount: 2)
        defer { pool.shutdown() }
        let sum = try await withThrowingTaskGroup(of: Int.self) { group in
            for value in 1...100 { group.addTask { try await pool.run { value } } }
            return try await group.reduce(0, +)
        }
        #expect(sum == 5050)
        await #expect(throws: StorageError.self) {
            try await pool.run { () throws -> Int in throw StorageError.partitionOffline("t-0", "test") }
        }
    }
}
