import ClusterControl
import DelayedOperations
import KafkaProperties
import KafkaWire
import LogStorage
import Logging
import Replication
import ServiceLifecycle
import Synchronization
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
    /// Each topic's effective config, from the broker's layers and the topic's dynamic configs.
    private let configs: TopicConfigs
    /// Hands every image the follower applies to the replica manager (`follow`); cancelled when the logs stop.
    private let imageTask = Mutex<Task<Void, Never>?>(nil)
    private let logger: Logger

    /// Opens (and after an unclean stop recovers) every partition in `log.dirs`.
    /// - Throws: `LogDirectoryError` naming an unusable directory; `StorageError.invalidConfig` when the `log.*`
    ///   settings make a topic config Kafka would refuse.
    /// - Parameter fileHandleLimit: the descriptors open segments may hold (`FileHandleBudget.split`'s `logs`).
    public init(
        configuration: BrokerConfiguration,
        fileHandleLimit: Int = FileHandleBudget.defaultLimit(),
        logger: Logger
    ) throws {
        let configs = try TopicConfigs(layers: ConfigLayers(configuration: configuration))
        let ioPool = DiskIOPool(threadCount: 2)
        var managerConfig = LogManagerConfig(
            logDirectories: configuration.logDirs.map { FilePath($0) },
            topicConfig: { topic in configs.config(of: topic) },
            flushIntervalMessages: configuration.log.flushIntervalMessages,
            flushIntervalMs: configuration.log.flushIntervalMs,
            checkpointIntervalMs: configuration.log.offsetCheckpointIntervalMs,
            logStartOffsetCheckpointIntervalMs: configuration.log.startOffsetCheckpointIntervalMs,
            retentionCheckIntervalMs: configuration.log.retentionCheckIntervalMs,
            fileHandleLimit: fileHandleLimit
        )
        managerConfig.cleaner = configuration.log.cleaner
        do {
            self.logManager = try LogManager(config: managerConfig, ioPool: ioPool, logger: logger)
        } catch {
            ioPool.shutdown()
            throw error
        }
        self.ioPool = ioPool
        self.configs = configs
        self.replicas = ReplicaManager(
            logManager: self.logManager,
            ioPool: ioPool,
            configuration: ReplicaManagerConfiguration(brokerID: configuration.nodeID),
            logger: logger
        )
        self.fetchSessions = FetchSessionCache(capacity: Int(configuration.maxIncrementalFetchSessionCacheSlots))
        self.logger = logger
    }

    /// Adds the data-path APIs to `handlers`.
    public func register(in handlers: inout HandlerTable) {
        handlers.register(ProduceHandler(replicas: self.replicas))
        handlers.register(FetchHandler(replicas: self.replicas, sessions: self.fetchSessions))
        handlers.register(ListOffsetsHandler(replicas: self.replicas))
        handlers.register(OffsetForLeaderEpochHandler(replicas: self.replicas))
        handlers.register(DeleteRecordsHandler(replicas: self.replicas))
        handlers.register(DescribeLogDirsHandler(logManager: self.logManager))
        handlers.register(DescribeProducersHandler(replicas: self.replicas))
    }

    /// Follows the controller's image: configs reach the logs (live), every partition this broker is elected to
    /// lead gets its log and its new leader epoch before the controller reports the election (and Metadata names
    /// this broker the leader), and a deleted topic's partitions stop being served and their logs go. The replica
    /// manager takes every image applied (`ReplicaManager.applyImage`), so a partition another broker leads answers
    /// NOT_LEADER_OR_FOLLOWER here.
    public func follow(_ controller: Controller) async {
        await controller.addListener(batches: { changes in
            await self.takeImage(from: controller.follower)
            await self.apply(changes, controller: controller)
        })
        // A transaction with nothing for this broker reaches no listener, yet may give one of its partitions
        // another leader: the replica manager takes every image the follower applies, not only those.
        let follower = controller.follower
        let task = Task {
            var revision: Int64 = 0
            while await follower.waitUntilApplied(revision + 1) {
                revision = await self.takeImage(from: follower)
            }
        }
        self.imageTask.withLock { $0 = task }
    }

    /// Gives the replica manager the follower's image. - Returns: its revision.
    @discardableResult
    private func takeImage(from follower: ImageFollower) async -> Int64 {
        let followed = await follower.followed
        if followed.hasCluster {
            self.replicas.applyImage(topics: followed.image.topics, revision: followed.revision)
        }
        return followed.revision
    }

    /// Applies one commit's changes: the others in order, then the leaderships together (`ReplicaManager`'s batch
    /// become-leader: thousands of partitions at a start share one sync of the log directories). Deletions, broker
    /// and topic configs all come before the leaderships they concern in `MetadataChange`'s order, so holding the
    /// leaderships to the end keeps that order.
    private func apply(_ changes: [MetadataChange], controller: Controller) async {
        var leaderships: [PartitionLeadership] = []
        for change in changes {
            if case .leadership(let leadership) = change {
                leaderships.append(leadership)
            } else {
                await self.apply(change, controller: controller)
            }
        }
        guard !leaderships.isEmpty else { return }
        let results = await self.replicas.becomeLeader(
            leaderships.map {
                ReplicaManager.Leadership(
                    topic: $0.topic,
                    partition: $0.partition,
                    topicID: $0.topicID,
                    leaderEpoch: $0.leaderEpoch
                )
            }
        )
        // A partition the batch could not host takes the one-by-one path, which retries transient failures.
        for (leadership, error) in zip(leaderships, results) where error != nil {
            await self.becomeLeader(leadership, controller: controller)
        }
    }

    private func apply(_ change: MetadataChange, controller: Controller) async {
        switch change {
        case .brokerConfigs(let resource, let configs):
            guard self.configs.setBroker(resource, configs) else { return }
            let topics = Set(self.logManager.allLogs.map(\.topicPartition.topic))
            for topic in topics { self.logManager.updateConfig(topic: topic, self.configs.config(of: topic)) }
        case .topicConfigs(let topic, let configs):
            self.logManager.updateConfig(topic: topic, self.configs.setTopic(topic, configs))
        case .leadership(let leadership):
            await self.becomeLeader(leadership, controller: controller)
        case .topicDeleted(let topic):
            self.configs.setTopic(topic.name, nil)
            for index in topic.partitions.indices {
                await self.deleteLog(TopicPartition(topic.name, Int32(index)))
            }
        }
    }

    /// Opens the log of a partition this broker was elected to lead. A transient failure (no descriptor, a full
    /// disk: creating the directory or writing `partition.metadata`) is retried every second, in a task of its own
    /// (the image's later changes are not held up), while the image still gives this broker that leadership, so the
    /// partition is served once the condition clears, without a restart.
    private func becomeLeader(_ leadership: PartitionLeadership, controller: Controller, retrying: Bool = false) async {
        let name = "\(leadership.topic)-\(leadership.partition)"
        while true {
            if retrying {
                try? await Task.sleep(for: .seconds(1))
                // Stop when the image moved on: the topic deleted or re-created, or a newer election (retried
                // itself).
                guard !Task.isCancelled, let image = try? await controller.image(),
                    let topic = image.topics[leadership.topic], topic.id == leadership.topicID,
                    Int(leadership.partition) < topic.partitions.count,
                    topic.partitions[Int(leadership.partition)].leaderEpoch == leadership.leaderEpoch
                else { return }
            }
            do {
                try await self.replicas.becomeLeader(
                    topic: leadership.topic,
                    partition: leadership.partition,
                    topicID: leadership.topicID,
                    leaderEpoch: leadership.leaderEpoch
                )
                if retrying {
                    self.logger.info("Opened the log of a partition after a retry", metadata: ["partition": "\(name)"])
                }
                return
            } catch let error as StorageError where error.isTransient {
                guard retrying else {
                    self.logger.warning(
                        "Cannot open the log of a partition this broker leads yet; retrying every second",
                        metadata: ["partition": "\(name)", "error": "\(error)"]
                    )
                    Task { await self.becomeLeader(leadership, controller: controller, retrying: true) }
                    return
                }
            } catch {
                self.logger.error(
                    "Cannot open the log of a partition this broker leads",
                    metadata: ["partition": "\(name)", "error": "\(error)"]
                )
                return
            }
        }
    }

    /// Deletes the logs of partitions that are not in the controller's image: topics deleted while this broker was
    /// down (after the controller committed the deletion, before the logs went). Call once the controller started.
    public func removeStrayLogs(notIn controller: Controller) async throws {
        let image = try await controller.image()
        for log in self.logManager.allLogs {
            let partition = log.topicPartition
            let topic = image.topics[partition.topic]
            guard topic == nil || Int(partition.partition) >= topic?.partitions.count ?? 0 else { continue }
            self.logger.info(
                "Deleting the log of a partition the cluster no longer has",
                metadata: ["partition": "\(partition)"]
            )
            await self.deleteLog(partition)
        }
    }

    private func deleteLog(_ partition: TopicPartition) async {
        self.replicas.removePartition(partition)
        do {
            try await self.ioPool.run { [logManager] in _ = try logManager.deleteLog(partition) }
        } catch {
            self.logger.error(
                "Cannot delete a partition's log",
                metadata: ["partition": "\(partition)", "error": "\(error)"]
            )
        }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.logManager.run()
        }
        self.replicas.delayedFetches.expireAll()
        self.imageTask.withLock { $0?.cancel() }
        do {
            try await self.ioPool.run { [logManager] in try logManager.shutdown() }
        } catch {
            self.logger.error("Clean stop of the logs failed; the next start recovers", metadata: ["error": "\(error)"])
        }
        self.ioPool.shutdown()
    }
}

/// The effective `LogConfig` of every topic: the broker's config layers with each topic's dynamic configs on top,
/// as the controller's image last said. Thread-safe: a lock around the layers.
final class TopicConfigs: Sendable {
    private struct State {
        var layers: ConfigLayers
        var overrides: [String: [String: String]] = [:]
        /// The broker-wide defaults, computed once per change of the broker layers.
        var defaults: LogConfig
    }

    private let state: Mutex<State>

    /// - Throws: `StorageError.invalidConfig` when the broker layers alone make a refused topic config.
    init(layers: ConfigLayers) throws(StorageError) {
        self.state = Mutex(State(layers: layers, defaults: try layers.logConfig(overrides: [:])))
    }

    func config(of topic: String) -> LogConfig {
        self.state.withLock { state in
            guard let overrides = state.overrides[topic], !overrides.isEmpty else { return state.defaults }
            // Overrides were validated alone; a combination the layers refuse falls back to the defaults.
            return (try? state.layers.logConfig(overrides: overrides)) ?? state.defaults
        }
    }

    /// Sets (or with nil forgets) a topic's dynamic configs and returns its effective config.
    @discardableResult
    func setTopic(_ topic: String, _ overrides: [String: String]?) -> LogConfig {
        self.state.withLock { $0.overrides[topic] = overrides }
        return self.config(of: topic)
    }

    /// Sets the dynamic configs of BROKER resource `resource`; false when it is another broker's (nothing changed).
    func setBroker(_ resource: String, _ configs: [String: String]) -> Bool {
        self.state.withLock { state in
            var layers = state.layers
            if resource.isEmpty {
                layers.clusterDefaults = configs
            } else if resource == String(layers.nodeID) {
                layers.nodeConfigs = configs
            } else {
                return false
            }
            // Each value was validated alone; a combination the topic table refuses keeps the previous layers.
            guard let defaults = try? layers.logConfig(overrides: [:]) else { return false }
            state.layers = layers
            state.defaults = defaults
            return true
        }
    }
}
