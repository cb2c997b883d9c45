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
    /// Where the leaders' ISR changes go (AlterPartition to the active controller); nil on the standalone broker,
    /// whose partitions have one replica and never change their ISR.
    let isrChanges: AlterPartitionSender?
    /// The followers' fetchers: they copy the partitions this broker follows from their leaders. The standalone
    /// broker leads every partition it has and never gives them any.
    private let fetchers: ReplicaFetcherManager
    /// The listener followers fetch from leaders on (`inter.broker.listener.name`).
    private let interBrokerListener: String
    /// `replica.lag.time.max.ms`: the leaders' ISR check runs every half of it.
    private let replicaLagTimeMaxMs: Int64
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
        self.isrChanges = configuration.metadataStore.kind == .etcd ? AlterPartitionSender(logger: logger) : nil
        self.interBrokerListener = configuration.interBrokerListenerName
        self.replicaLagTimeMaxMs = configuration.replicaLagTimeMaxMs
        self.fetchers = ReplicaFetcherManager(
            configuration: configuration.replicaFetchers,
            ioPool: ioPool,
            logger: logger
        )
        self.replicas = ReplicaManager(
            logManager: self.logManager,
            ioPool: ioPool,
            configuration: ReplicaManagerConfiguration(
                brokerID: configuration.nodeID,
                replicaLagTimeMaxMs: configuration.replicaLagTimeMaxMs
            ),
            fetching: self.fetchers,
            isrChanges: self.isrChanges,
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
            self.replicas.applyImage(
                topics: followed.image.topics,
                brokers: followed.image.brokers,
                revision: followed.revision
            )
        }
        return followed.revision
    }

    /// Applies one commit's changes: the others in order, then the leaderships together (`ReplicaManager`'s batch
    /// become-leader: thousands of partitions at a start share one sync of the log directories), then the
    /// followings together (the fetchers get each leader's partitions at once). Deletions, broker and topic configs
    /// all come before the roles they concern in `MetadataChange`'s order, so holding the roles to the end keeps
    /// that order.
    private func apply(_ changes: [MetadataChange], controller: Controller) async {
        var leaderships: [PartitionLeadership] = []
        var followings: [PartitionFollowing] = []
        for change in changes {
            switch change {
            case .leadership(let leadership): leaderships.append(leadership)
            case .following(let following): followings.append(following)
            default: await self.apply(change, controller: controller)
            }
        }
        if !leaderships.isEmpty {
            let results = await self.replicas.becomeLeader(leaderships.map(Self.leadership))
            // A partition the batch could not host takes the one-by-one path, which retries transient failures.
            for (leadership, error) in zip(leaderships, results) where error != nil {
                await self.becomeLeader(leadership, controller: controller)
            }
        }
        if !followings.isEmpty {
            await self.becomeFollower(followings, controller: controller)
        }
    }

    private static func leadership(_ leadership: PartitionLeadership) -> ReplicaManager.Leadership {
        ReplicaManager.Leadership(
            topic: leadership.topic,
            partition: leadership.partition,
            topicID: leadership.topicID,
            leaderEpoch: leadership.leaderEpoch,
            partitionEpoch: leadership.partitionEpoch,
            replicas: leadership.replicas,
            isr: leadership.isr
        )
    }

    /// Makes this broker a follower of `followings`, fetching each from its leader's endpoint on the inter-broker
    /// listener, as the image's broker registrations give it (a leader without one is not fetched from until it
    /// registers).
    ///
    /// A log that cannot be opened for a transient reason (no descriptor, a full disk) is tried again every second,
    /// in a task of its own, while the image still gives this broker that following, as for a leadership.
    private func becomeFollower(
        _ followings: [PartitionFollowing],
        controller: Controller,
        retrying: Bool = false
    ) async {
        let endpoints = Self.leaderEndpoints(
            of: Set(followings.compactMap(\.leader)),
            brokers: await controller.follower.followed.image.brokers,
            listener: self.interBrokerListener
        )
        let results = await self.replicas.becomeFollower(
            followings.map {
                Following(
                    topic: $0.topic,
                    partition: $0.partition,
                    topicID: $0.topicID,
                    leaderID: $0.leader,
                    leaderEpoch: $0.leaderEpoch,
                    partitionEpoch: $0.partitionEpoch
                )
            },
            endpoints: endpoints
        )
        for (following, error) in zip(followings, results) {
            guard let error else { continue }
            let name = "\(following.topic)-\(following.partition)"
            guard let storageError = error as? StorageError, storageError.isTransient else {
                self.logger.error(
                    "Cannot open the log of a partition this broker follows",
                    metadata: ["partition": "\(name)", "error": "\(error)"]
                )
                continue
            }
            if !retrying {
                self.logger.warning(
                    "Cannot open the log of a partition this broker follows yet; retrying every second",
                    metadata: ["partition": "\(name)", "error": "\(error)"]
                )
            }
            Task {
                try? await Task.sleep(for: .seconds(1))
                // Stop when the image moved on: the topic deleted or re-created, or a newer role (applied itself).
                guard !Task.isCancelled, let image = try? await controller.image(),
                    let topic = image.topics[following.topic], topic.id == following.topicID,
                    Int(following.partition) < topic.partitions.count,
                    topic.partitions[Int(following.partition)].leaderEpoch == following.leaderEpoch
                else { return }
                await self.becomeFollower([following], controller: controller, retrying: true)
            }
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
        case .following(let following):
            await self.becomeFollower([following], controller: controller)
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
                    leaderEpoch: leadership.leaderEpoch,
                    partitionEpoch: leadership.partitionEpoch,
                    replicas: leadership.replicas,
                    isr: leadership.isr
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

    /// Where followers reach each of `leaders`: its registration's endpoint on `listener` (the inter-broker
    /// listener), or its first endpoint when it has none of that name (registrations carry the advertised client
    /// listeners only, never a controller listener); a leader without a registration is left out.
    static func leaderEndpoints(
        of leaders: Set<Int32>,
        brokers: [Int32: BrokerRegistration],
        listener: String
    ) -> [Int32: LeaderEndpoint] {
        var endpoints: [Int32: LeaderEndpoint] = [:]
        for leader in leaders {
            guard let registration = brokers[leader],
                let endpoint = registration.endpoints.first(where: { $0.listener == listener })
                    ?? registration.endpoints.first
            else { continue }
            endpoints[leader] = LeaderEndpoint(nodeID: leader, host: endpoint.host, port: Int(endpoint.port))
        }
        return endpoints
    }

    /// Kafka's ISR expiration: every half of `replica.lag.time.max.ms` the leaders propose to drop followers that
    /// have not caught up for that long, until cancelled.
    private func checkISRs() async {
        let interval = Duration.milliseconds(max(1, self.replicaLagTimeMaxMs / 2))
        while (try? await Task.sleep(for: interval)) != nil {
            self.replicas.shrinkISRs()
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
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.logManager.run() }
                if self.isrChanges != nil {
                    group.addTask { await self.checkISRs() }
                }
                await group.waitForAll()
            }
        }
        await self.isrChanges?.close()
        // No fetcher appends or truncates once the logs close.
        await self.fetchers.shutdown()
        self.replicas.delayedProduces.expireAll()
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
