import ClusterControl
import KafkaProperties
import LogStorage
import Logging
import Replication
import ServiceLifecycle
import SystemPackage

/// The broker's data path assembled from its configuration: the log directories (`LogManager`), the disk I/O pool,
/// and the `ReplicaManager` whose Produce, Fetch and ListOffsets handlers it registers.
///
/// As a `Service` it runs the log manager's periodic work (flush policy, retention, checkpoints) and, on graceful
/// shutdown, parks no more fetches and stops the logs cleanly (flush, checkpoints, `.kafka_cleanshutdown`). Run it
/// in the same `ServiceGroup` after the `KafkaServer`, so in-flight requests finish before the logs close.
/// Thread-safe: every member is.
public final class BrokerStorage: Service, Sendable {
    public let ioPool: DiskIOPool
    public let logManager: LogManager
    public let replicas: ReplicaManager
    /// Incremental fetch sessions, capped at `max.incremental.fetch.session.cache.slots`.
    public let fetchSessions: FetchSessionCache
    private let logger: Logger

    /// Opens (and after an unclean stop recovers) every partition in `log.dirs`.
    /// - Throws: `LogDirectoryError` naming an unusable directory.
    public init(configuration: BrokerConfiguration, logger: Logger) throws {
        let topicDefaults = Self.logConfig(configuration.log, messageMaxBytes: configuration.messageMaxBytes)
        let ioPool = DiskIOPool(threadCount: 2)
        let managerConfig = LogManagerConfig(
            logDirectories: configuration.logDirs.map { FilePath($0) },
            topicConfig: { _ in topicDefaults },
            flushIntervalMessages: configuration.log.flushIntervalMessages,
            flushIntervalMs: configuration.log.flushIntervalMs,
            retentionCheckIntervalMs: configuration.log.retentionCheckIntervalMs
        )
        do {
            self.logManager = try LogManager(config: managerConfig, ioPool: ioPool, logger: logger)
        } catch {
            ioPool.shutdown()
            throw error
        }
        self.ioPool = ioPool
        self.replicas = ReplicaManager(
            logManager: self.logManager,
            ioPool: ioPool,
            configuration: ReplicaManagerConfiguration(
                brokerID: configuration.nodeID,
                timestampBeforeMaxMs: configuration.log.messageTimestampBeforeMaxMs,
                timestampAfterMaxMs: configuration.log.messageTimestampAfterMaxMs,
                compactedTopics: configuration.log.cleanupPolicy.contains("compact")
            ),
            logger: logger
        )
        self.fetchSessions = FetchSessionCache(capacity: Int(configuration.maxIncrementalFetchSessionCacheSlots))
        self.logger = logger
    }

    /// The broker-wide `log.*` defaults as the per-topic `LogConfig` (topic overrides come with topic configs).
    static func logConfig(_ defaults: BrokerConfiguration.LogDefaults, messageMaxBytes: Int32) -> LogConfig {
        var config = LogConfig()
        config.segmentBytes = Int(defaults.segmentBytes)
        config.segmentMs = defaults.rollMs
        config.segmentIndexBytes = Int(defaults.indexSizeMaxBytes)
        config.indexIntervalBytes = Int(defaults.indexIntervalBytes)
        config.retentionMs = defaults.retentionMs
        config.retentionBytes = defaults.retentionBytes
        config.logAppendTime = defaults.messageTimestampType == "LogAppendTime"
        config.fileDeleteDelayMs = defaults.segmentDeleteDelayMs
        config.maxMessageBytes = Int(messageMaxBytes)
        config.deletesOldSegments = defaults.cleanupPolicy.contains("delete")
        return config
    }

    /// Adds the data-path APIs to `handlers`.
    public func register(in handlers: inout HandlerTable) {
        handlers.register(ProduceHandler(replicas: self.replicas))
        handlers.register(FetchHandler(replicas: self.replicas, sessions: self.fetchSessions))
        handlers.register(ListOffsetsHandler(replicas: self.replicas))
        handlers.register(OffsetForLeaderEpochHandler(replicas: self.replicas))
    }

    /// Follows the controller's elections: every partition this broker is elected to lead gets its log and its new
    /// leader epoch, before the controller reports the election (and Metadata names this broker the leader).
    public func follow(_ controller: Controller) async {
        await controller.addLeadershipListener { [replicas, logger] leadership in
            await Self.becomeLeader(leadership, replicas: replicas, logger: logger)
        }
    }

    private static func becomeLeader(_ leadership: PartitionLeadership, replicas: ReplicaManager, logger: Logger) async
    {
        do {
            try await replicas.becomeLeader(
                topic: leadership.topic,
                partition: leadership.partition,
                topicID: leadership.topicID,
                leaderEpoch: leadership.leaderEpoch
            )
        } catch {
            logger.error(
                "Cannot open the log of a partition this broker leads",
                metadata: ["partition": "\(leadership.topic)-\(leadership.partition)", "error": "\(error)"]
            )
        }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.logManager.run()
        }
        self.replicas.delayedFetches.expireAll()
        do {
            try await self.ioPool.run { [logManager] in try logManager.shutdown() }
        } catch {
            self.logger.error("Clean stop of the logs failed; the next start recovers", metadata: ["error": "\(error)"])
        }
        self.ioPool.shutdown()
    }
}
