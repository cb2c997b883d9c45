import KafkaProperties
import KafkaWire
import SystemPackage
import Testing

@testable import LogStorage

/// What topic administration asks of the storage: config changes reach open and closed logs, the topic id is kept in
/// `partition.metadata` in Kafka's format, and partition sizes for DescribeLogDirs.
@Suite struct TopicAdminStorageTests {
    static let id = KafkaUUID(mostSignificantBits: 0x0123_4567_89AB_4DEF, leastSignificantBits: 0x8123_4567_89AB_CDEF)

    @Test func aShorterRetentionDeletesOldSegmentsAtTheNextCheck() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let manager = try LogManager(
                config: LogManagerTests.managerConfig(directory) { $0.retentionCheckIntervalMs = 1_000 },
                ioPool: pool
            )
            let config = LogManagerTests.smallSegments()
            let log = try manager.getOrCreateLog(topic: "t", partition: 0, config: config)
            let other = try manager.getOrCreateLog(topic: "u", partition: 0, config: config)
            let now = PartitionLog.nowMs()
            for age in [7_200_000, 7_200_000, 0, 0] as [Int64] {
                _ = try log.appendAsLeader(Batches.make(count: 3, firstTimestamp: now - age), leaderEpoch: 0)
                _ = try other.appendAsLeader(Batches.make(count: 3, firstTimestamp: now - age), leaderEpoch: 0)
            }
            log.highWatermark = log.logEndOffset
            other.highWatermark = other.logEndOffset
            manager.runPeriodicTasks(nowMs: now + 2_000)
            #expect(log.logStartOffset == 0, "a week's retention keeps two-hour-old segments")

            var shorter = config
            shorter.retentionMs = 3_600_000
            manager.updateConfig(topic: "t", shorter)
            #expect(log.config.retentionMs == 3_600_000 && other.config.retentionMs == config.retentionMs)
            manager.runPeriodicTasks(nowMs: now + 4_000)
            #expect(log.logStartOffset == 6)
            #expect(try log.withLog { $0.segmentBaseOffsets } == [6, 9])
            #expect(other.logStartOffset == 0, "only the altered topic's logs change")
            try manager.shutdown()
        }
    }

    @Test func aChangedSegmentSizeAppliesFromTheNextAppend() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let manager = try LogManager(config: LogManagerTests.managerConfig(directory), ioPool: pool)
            let log = try manager.getOrCreateLog(
                topic: "t",
                partition: 0,
                config: LogManagerTests.smallSegments(1 << 20)
            )
            for _ in 0..<4 { _ = try log.appendAsLeader(Batches.make(count: 3), leaderEpoch: 0) }
            #expect(try log.withLog { $0.segmentBaseOffsets } == [0])
            manager.updateConfig(topic: "t", LogManagerTests.smallSegments())
            for _ in 0..<3 { _ = try log.appendAsLeader(Batches.make(count: 3), leaderEpoch: 0) }
            // A 3-record batch is more than half of 200 bytes: each append after the change starts a segment.
            #expect(try log.withLog { $0.segmentBaseOffsets } == [0, 12, 15, 18])
            #expect(try log.withLog { $0.config.segmentBytes } == 200)
            try manager.shutdown()
        }
    }

    @Test func theTopicIDIsKeptInKafkasPartitionMetadataFormat() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let file = directory.appending("t-0").appending("partition.metadata")
            do {
                let manager = try LogManager(config: LogManagerTests.managerConfig(directory), ioPool: pool)
                let log = try manager.getOrCreateLog(topic: "t", partition: 0, config: LogConfig())
                try log.assignTopicID(Self.id)
                try log.assignTopicID(Self.id)
                #expect(TestFiles.text(file) == "version: 0\ntopic_id: \(Self.id)\n")
                try manager.shutdown()
            }
            let manager = try LogManager(config: LogManagerTests.managerConfig(directory), ioPool: pool)
            let log = try #require(manager.log(for: TopicPartition("t", 0)))
            #expect(log.topicID == Self.id, "the loader read the file")
            try log.assignTopicID(Self.id)
            #expect(log.topicID == Self.id)
            let other = KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 2)
            #expect {
                try log.assignTopicID(other)
            } throws: { error in
                let error = error as? StorageError
                return error?.kafkaErrorCode == .inconsistentTopicID && "\(error!)".contains(file.string)
            }
            try manager.shutdown()
        }
    }

    @Test(arguments: [
        "version: 1\ntopic_id: AAAAAAAAAAAAAAAAAAAAAA\n", "version: 0\ntopic_id: not-an-id\n", "version: 0\n",
    ])
    func aMalformedPartitionMetadataFileIsNamed(contents: String) throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let manager = try LogManager(config: LogManagerTests.managerConfig(directory), ioPool: pool)
            let log = try manager.getOrCreateLog(topic: "t", partition: 0, config: LogConfig())
            let file = directory.appending("t-0").appending("partition.metadata")
            try TestFiles.write(file, Array(contents.utf8))
            #expect {
                try log.assignTopicID(Self.id)
            } throws: { error in
                "\(error)".contains(file.string)
            }
            try manager.shutdown()
        }
    }

    @Test func aMalformedPartitionMetadataFileTakesOnlyThatPartitionOffline() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            do {
                let manager = try LogManager(config: LogManagerTests.managerConfig(directory), ioPool: pool)
                for partition in Int32(0)...1 {
                    let log = try manager.getOrCreateLog(topic: "t", partition: partition, config: LogConfig())
                    #expect(log.topicID == nil)
                    _ = try log.appendAsLeader(Batches.make(count: 3), leaderEpoch: 0)
                }
                try manager.shutdown()
            }
            let file = directory.appending("t-0").appending("partition.metadata")
            let garbage = Array("version: 0\ntopic_id: \n".utf8)
            try TestFiles.write(file, garbage)
            do {
                let manager = try LogManager(config: LogManagerTests.managerConfig(directory), ioPool: pool)
                #expect(manager.startupReport.offlinePartitions == [TopicPartition("t", 0)])
                let offline = try #require(manager.log(for: TopicPartition("t", 0)))
                #expect(offline.isOffline)
                // Its id is unknown, so the file is neither trusted nor rewritten, and reads fail as storage errors.
                try offline.assignTopicID(Self.id)
                #expect(TestFiles.read(file) == garbage)
                #expect {
                    try offline.withLog { (log) throws(StorageError) in _ = try log.read(from: 0, maxBytes: 1024) }
                } throws: { error in
                    (error as? StorageError)?.kafkaErrorCode == .kafkaStorageError
                }
                let online = try #require(manager.log(for: TopicPartition("t", 1)))
                #expect(!online.isOffline && online.logEndOffset == 3)
                try manager.shutdown()
            }
            // Nothing was deleted: with a well-formed file the partition loads again, whole.
            try TestFiles.write(file, Array("version: 0\ntopic_id: \(Self.id)\n".utf8))
            let manager = try LogManager(config: LogManagerTests.managerConfig(directory), ioPool: pool)
            let log = try #require(manager.log(for: TopicPartition("t", 0)))
            #expect(log.topicID == Self.id && log.logEndOffset == 3 && !log.isOffline)
            try manager.shutdown()
        }
    }

    @Test func logConfigHasKafkasTopicSettingsAndDefaults() throws {
        let defaults = LogConfig()
        #expect(defaults.deleteRetentionMs == 86_400_000 && defaults.minCompactionLagMs == 0)
        #expect(defaults.maxCompactionLagMs == Int64.max && defaults.minCleanableDirtyRatio == 0.5)
        #expect(defaults.minInSyncReplicas == 1 && !defaults.uncleanLeaderElection)
        #expect(defaults.timestampBeforeMaxMs == Int64.max && defaults.timestampAfterMaxMs == 3_600_000)
        #expect(defaults.deletesOldSegments && !defaults.compacts)

        let set = try LogConfig(
            Properties([
                ("delete.retention.ms", "1000"), ("min.compaction.lag.ms", "2000"), ("max.compaction.lag.ms", "3000"),
                ("min.cleanable.dirty.ratio", "0.25"), ("min.insync.replicas", "2"), ("compression.type", "producer"),
                ("unclean.leader.election.enable", "true"), ("message.timestamp.before.max.ms", "4000"),
                ("message.timestamp.after.max.ms", "5000"), ("cleanup.policy", "compact,delete"),
                ("leader.replication.throttled.replicas", "0:1,1:2"), ("follower.replication.throttled.replicas", "*"),
            ])
        )
        #expect(set.deleteRetentionMs == 1000 && set.minCompactionLagMs == 2000 && set.maxCompactionLagMs == 3000)
        #expect(set.minCleanableDirtyRatio == 0.25 && set.minInSyncReplicas == 2 && set.uncleanLeaderElection)
        #expect(set.timestampBeforeMaxMs == 4000 && set.timestampAfterMaxMs == 5000)
        #expect(set.compacts && set.deletesOldSegments)
        #expect(try LogConfig(Properties([("cleanup.policy", "compact")])).deletesOldSegments == false)

        let refused: [(String, String)] = [
            ("compression.type", "gzip"), ("min.cleanable.dirty.ratio", "1.5"), ("min.cleanable.dirty.ratio", "-0.1"),
            ("min.insync.replicas", "0"), ("max.compaction.lag.ms", "0"), ("delete.retention.ms", "-1"),
            ("min.compaction.lag.ms", "-1"), ("message.timestamp.after.max.ms", "-1"),
            ("message.timestamp.before.max.ms", "-1"), ("unclean.leader.election.enable", "maybe"),
            ("leader.replication.throttled.replicas", "*,0:1"), ("leader.replication.throttled.replicas", "0"),
            ("follower.replication.throttled.replicas", "-1:2"), ("follower.replication.throttled.replicas", "+1:2"),
            ("follower.replication.throttled.replicas", "a:b"),
        ]
        for (key, value) in refused {
            #expect(
                performing: { try LogConfig(Properties([(key, value)])) },
                throws: { error in
                    "\(error)".contains(key) && (error as? StorageError)?.kafkaErrorCode == .invalidConfig
                }
            )
        }
    }

    @Test func everyTopicSettingWithABrokerDefaultHasItsSynonyms() {
        let names = Set(LogConfig.table.definitions.map(\.name))
        for key in LogConfig.brokerSynonyms.keys { #expect(names.contains(key), "\(key) is a topic setting") }
        #expect(
            LogConfig.brokerSynonyms["retention.ms"] == [
                "log.retention.ms", "log.retention.minutes", "log.retention.hours",
            ]
        )
        #expect(LogConfig.brokerSynonyms["segment.ms"] == ["log.roll.ms", "log.roll.hours"])
        #expect(LogConfig.brokerSynonyms["min.cleanable.dirty.ratio"] == ["log.cleaner.min.cleanable.ratio"])
        #expect(LogConfig.brokerSynonyms["max.message.bytes"] == ["message.max.bytes"])
        #expect(LogConfig.brokerSynonyms["message.downconversion.enable"] == ["log.message.downconversion.enable"])
        #expect(LogConfig.brokerSynonyms.count == 23)
    }

    @Test func uuidStringsRoundTrip() {
        #expect(KafkaUUID(Self.id.description) == Self.id)
        #expect(KafkaUUID(KafkaUUID.zero.description) == .zero)
        #expect(KafkaUUID("too-short") == nil)
        #expect(KafkaUUID("AAAAAAAAAAAAAAAAAAAAA!") == nil)
    }

    @Test func partitionSizesAreTheSegmentFilesBytesOpenOrClosed() throws {
        try TemporaryDirectory.with { directory in
            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let manager = try LogManager(config: LogManagerTests.managerConfig(directory), ioPool: pool)
            let log = try manager.getOrCreateLog(topic: "t", partition: 0, config: LogManagerTests.smallSegments())
            for _ in 0..<5 { _ = try log.appendAsLeader(Batches.make(count: 3), leaderEpoch: 0) }
            let partitionDirectory = directory.appending("t-0")
            let onDisk = try LogManagerTests.segmentFiles(partitionDirectory).reduce(Int64(0)) { sum, path in
                sum + Int64(TestFiles.read(path)?.count ?? 0)
            }
            #expect(onDisk > 0 && log.sizeInBytes == onDisk)
            try log.close()
            #expect(log.sizeInBytes == onDisk)
            let space = try #require(manager.diskSpace(of: directory.path))
            #expect(space.total > 0 && space.usable > 0 && space.usable <= space.total)
            try manager.shutdown()
        }
    }
}
