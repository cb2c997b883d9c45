import ClusterControl
import EtcdMetadataStore
import GroupCoordinator
import LogStorage
import Logging
import MetadataStore
import NIOCore
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// One LogBroker node assembled from its configuration by `process.roles` and `metadata.store`:
///
/// - the metadata store: the local file store (`metadata.store=local`, one process is the whole cluster) or an
///   `EtcdMetadataStore` over `metadata.etcd.endpoints` under `metadata.etcd.prefix` (a cluster of processes);
/// - the `Controller` over it: the image follower every node runs and, with the controller role, the active
///   controller role campaigning for the election key;
/// - with the broker role: the logs and the replica manager (`BrokerStorage`), the group coordinator over
///   `__consumer_offsets`, the handler table, and the `KafkaServer` on the client listeners;
/// - when `listeners` has controller listeners (`controller.listener.names`): a second `KafkaServer` on them with
///   the controller's own handler table (`ControllerListener`); the first one's endpoint goes into the election
///   key, which is how brokers find the active controller.
///
/// A controller-only process has no logs, no client listeners and no group coordinator. The standalone default
/// (both roles, the local store, no controller listener) is one process that registers itself in-process; over
/// etcd nothing is registered in-process. `logbroker-server` parses its configuration and runs one; tests start
/// whole nodes in-process the same way.
///
/// Use: `start` (the store reached, the logs recovered, the listeners bound, the controller started and the groups
/// loaded; errors such as an etcd that does not answer, a bad log directory or a port in use are thrown before
/// anything is served), then `run`, as a `Service` in a `ServiceGroup`. On graceful shutdown the client listeners
/// finish their in-flight requests, then the controller listeners, then the controller resigns (a standby takes
/// over at once, without waiting out the lease) and the etcd store closes, then the logs close: services stop in
/// reverse order. A failed `start` closes the etcd store and leaves the rest it opened (logs, the disk pool, bound
/// listeners) to the exit of the process, as `logbroker-server` exits at once: the next start recovers the logs as
/// after any unclean stop.
///
/// Thread-safe: every member is; `run` must be called once.
public final class Broker: Service, Sendable {
    public let configuration: BrokerConfiguration
    /// The logs, the disk pool and the replica manager; nil on a controller-only process.
    public let storage: BrokerStorage?
    /// This node's control plane: the image follower, and the controller role when the process has it.
    public let controller: Controller
    /// The group coordinator; nil on a controller-only process.
    public let groups: GroupCoordinator?
    /// The client listeners, bound; nil on a controller-only process.
    public let server: KafkaServer?
    /// The controller listeners, bound; nil when `listeners` has none.
    public let controllerServer: KafkaServer?
    /// A broker of a cluster: its registration and heartbeats with the active controller; nil on the standalone
    /// process (registered in-process) and on a controller-only process.
    public let lifecycle: BrokerLifecycle?
    /// The controller listeners, already serving since `start`.
    private let controllerServing: ServingEarly?
    /// The connection forwarded admin writes go over; nil where nothing is forwarded.
    private let forwarding: ControllerForwarding?
    /// Closed once the controller has stopped; nil with the local store.
    private let etcdStore: EtcdMetadataStore?
    private let logger: Logger

    /// The addresses the client listeners bound, in the order of `listeners` (a port 0 listener shows its port).
    public var localAddresses: [SocketAddress] { self.server?.localAddresses ?? [] }

    /// The addresses the controller listeners bound, in the order of `listeners`.
    public var controllerAddresses: [SocketAddress] { self.controllerServer?.localAddresses ?? [] }

    /// How long `start` keeps trying an etcd that does not answer before it gives up: Kafka's ZooKeeper-era broker
    /// waited `zookeeper.connection.timeout.ms` (18 s by default) for the store it cannot start without, then
    /// stopped.
    public static let defaultMetadataStoreConnectTimeout: Duration = .seconds(18)

    private init(
        configuration: BrokerConfiguration,
        storage: BrokerStorage?,
        controller: Controller,
        groups: GroupCoordinator?,
        server: KafkaServer?,
        controllerServer: KafkaServer?,
        controllerServing: ServingEarly?,
        cluster: ClusterPart?,
        etcdStore: EtcdMetadataStore?,
        logger: Logger
    ) {
        self.configuration = configuration
        self.storage = storage
        self.controller = controller
        self.groups = groups
        self.server = server
        self.controllerServer = controllerServer
        self.controllerServing = controllerServing
        self.lifecycle = cluster?.lifecycle
        self.forwarding = cluster?.forwarding
        self.etcdStore = etcdStore
        self.logger = logger
    }

    /// Builds the node of `configuration` and brings it up to the point of serving: connections are accepted once
    /// `run` is called. A node whose controller is not the active one returns once the image holds a cluster.
    /// - Parameter metadataStoreConnectTimeout: how long to keep trying an etcd that does not answer.
    /// - Throws: `LogBrokerServerError` for an etcd that did not answer within `metadataStoreConnectTimeout`
    ///   (naming `metadata.etcd.endpoints`) or a listener it cannot bind; the storage's and the controller's errors
    ///   for unusable log directories or metadata.
    public static func start(
        configuration: BrokerConfiguration,
        metadataStoreConnectTimeout: Duration = Broker.defaultMetadataStoreConnectTimeout,
        logger: Logger
    ) async throws -> Broker {
        let roles = BrokerConfiguration.ProcessRole.allCases.filter(configuration.processRoles.contains)
        logger.info(
            "Starting",
            metadata: [
                "node.id": "\(configuration.nodeID)",
                "process.roles": "\(roles.map(\.rawValue).joined(separator: ","))",
                "metadata.store": "\(configuration.metadataStore.kind.rawValue)",
            ]
        )
        // etcd first: a node whose etcd does not answer stops before it opens (and recovers) any log.
        var etcdStore: EtcdMetadataStore?
        if configuration.metadataStore.kind == .etcd {
            etcdStore = try await Self.openEtcdStore(
                configuration: configuration,
                connectTimeout: metadataStoreConnectTimeout,
                logger: logger
            )
        }
        do {
            return try await Self.assemble(configuration, etcdStore: etcdStore, logger: logger)
        } catch {
            await etcdStore?.shutdown()
            throw error
        }
    }

    /// Serves until graceful shutdown (from the enclosing `ServiceGroup`), then stops the client listeners, the
    /// controller listeners, the controller (it resigns) and the etcd store, then the logs.
    public func run() async throws {
        // Services stop in reverse order: the server finishes in-flight requests before the logs close, and the
        // controller resigns once no request can reach it any more.
        var services: [any Service] = []
        if let storage = self.storage { services.append(storage) }
        services.append(ControlPlane(controller: self.controller, etcdStore: self.etcdStore))
        if let controllerServing = self.controllerServing { services.append(controllerServing) }
        if let server = self.server { services.append(server) }
        // Stops first: the controlled shutdown is asked for while everything still serves.
        if let lifecycle = self.lifecycle {
            services.append(
                LifecycleStop(
                    lifecycle: lifecycle,
                    forwarding: self.forwarding,
                    timeout: .milliseconds(self.configuration.brokerSessionTimeoutMs)
                )
            )
        }
        let group = ServiceGroup(services: services, logger: self.logger)
        try await group.run()
    }

    /// Waits for graceful shutdown (or cancellation), then stops the controller (an active controller revokes its
    /// lease, so a standby takes over at once) and closes the etcd store.
    private struct ControlPlane: Service {
        let controller: Controller
        let etcdStore: EtcdMetadataStore?

        func run() async throws {
            try? await gracefulShutdown()
            await self.controller.stop()
            await self.etcdStore?.shutdown()
        }
    }

    /// Waits for graceful shutdown (or cancellation), then asks the controller for a controlled shutdown (at most
    /// `timeout`, after which the controller would fence this broker anyway) and stops heartbeating.
    private struct LifecycleStop: Service {
        let lifecycle: BrokerLifecycle
        let forwarding: ControllerForwarding?
        let timeout: Duration

        func run() async throws {
            try? await gracefulShutdown()
            await self.lifecycle.stop(timeout: self.timeout)
            await self.forwarding?.channel.close()
        }
    }

    /// A server started during `start` rather than `run`: the controller listeners, so a broker of this same
    /// process can register with this process's controller before `start` returns. As a service it stops the
    /// server at graceful shutdown. Thread-safe: its members are.
    final class ServingEarly: Service, Sendable {
        private let group: ServiceGroup
        private let serving: Task<Void, Never>

        init(_ server: KafkaServer, logger: Logger) {
            let group = ServiceGroup(services: [server], logger: logger)
            self.group = group
            self.serving = Task {
                do {
                    try await group.run()
                } catch {
                    logger.error("The controller listeners stopped", metadata: ["error": "\(error)"])
                }
            }
        }

        func run() async throws {
            try? await gracefulShutdown()
            await self.stop()
        }

        /// Stops accepting, lets in-flight requests finish, and returns once every connection is closed.
        func stop() async {
            await self.group.triggerGracefulShutdown()
            await self.serving.value
        }
    }

    // MARK: Assembly

    /// What a broker of a cluster adds: its lifecycle with the active controller, and the forwarding of the admin
    /// writes to it.
    struct ClusterPart {
        let forwarding: ControllerForwarding
        let lifecycle: BrokerLifecycle
    }

    /// What the broker role adds to a node.
    private struct BrokerPart {
        let storage: BrokerStorage
        let offsetsTopic: ConsumerOffsetsTopic
        let groups: GroupCoordinator
        let server: KafkaServer
    }

    private static func assemble(
        _ configuration: BrokerConfiguration,
        etcdStore: EtcdMetadataStore?,
        logger: Logger
    ) async throws -> Broker {
        // Connections and open segments share `ulimit -n`: split it once, so connections can never take the
        // descriptors a segment roll needs.
        let descriptors = FileHandleBudget.split(
            processLimit: FileHandleBudget.processDescriptorLimit(),
            maxConnections: configuration.connections.maxConnections == Int(Int32.max)
                ? nil : configuration.connections.maxConnections
        )
        logger.info("\(descriptors)")
        // The logs first (recovered if the last stop was unclean), then the controller over its store; its
        // elections open the partitions' logs.
        var storage: BrokerStorage?
        if configuration.processRoles.contains(.broker) {
            storage = try BrokerStorage(configuration: configuration, fileHandleLimit: descriptors.logs, logger: logger)
        }
        let store: any MetadataStore =
            try etcdStore ?? Self.openLocalStore(configuration: configuration, logger: logger)
        let controller = Controller(
            store: store,
            nodeID: configuration.nodeID,
            logger: logger,
            isController: configuration.processRoles.contains(.controller),
            brokerSessionTimeout: .milliseconds(configuration.brokerSessionTimeoutMs),
            uncleanLeaderElection: configuration.uncleanLeaderElectionEnable
        )
        // A broker of a cluster registers with the active controller over its listener, wherever that runs, and
        // forwards the admin writes there while its own controller (if it has one) is not the active one.
        var cluster: ClusterPart?
        if storage != nil && configuration.metadataStore.kind == .etcd {
            cluster = ClusterPart(
                forwarding: ControllerForwarding(controller: controller, nodeID: configuration.nodeID, logger: logger),
                lifecycle: BrokerLifecycle(configuration: configuration, follower: controller.follower, logger: logger)
            )
        }
        // The leaders' ISR changes go to the active controller with this broker's epoch.
        if let cluster, let isrChanges = storage?.isrChanges {
            isrChanges.connect(
                follower: controller.follower,
                lifecycle: cluster.lifecycle,
                nodeID: configuration.nodeID
            )
        }
        var brokerPart: BrokerPart?
        if let storage {
            brokerPart = try await Self.assembleBrokerPart(
                configuration,
                storage: storage,
                controller: controller,
                cluster: cluster,
                connectionLimit: descriptors.connections,
                logger: logger
            )
        }
        var controllerServer: KafkaServer?
        var controllerServing: ServingEarly?
        if !configuration.controllerListeners.isEmpty {
            let bound = try await KafkaServer.bind(
                configuration: configuration,
                listeners: configuration.controllerListeners,
                handlers: ControllerListener.handlers(controller: controller, configuration: configuration),
                logger: logger
            )
            controllerServer = bound
        }
        do {
            try await Self.startController(
                controller,
                configuration: configuration,
                server: brokerPart?.server,
                controllerServer: controllerServer
            )
            // Served from here on, before `run`: this node's own broker may register with this node's controller
            // below. Not before the controller has started, which answers only once started; connections that
            // came meanwhile wait in the listener's queue.
            controllerServing = controllerServer.map { ServingEarly($0, logger: logger) }
            if let brokerPart {
                try await brokerPart.storage.removeStrayLogs(notIn: controller)
                await brokerPart.groups.load(try await brokerPart.offsetsTopic.readAll())
                try await brokerPart.groups.follow(controller)
            }
            if let cluster, let server = brokerPart?.server {
                try await Self.waitUntilUnfenced(
                    cluster.lifecycle,
                    configuration: configuration,
                    server: server,
                    logger: logger
                )
            }
        } catch {
            await cluster?.lifecycle.stop(timeout: .zero)
            await cluster?.forwarding.channel.close()
            await controllerServing?.stop()
            // Its tasks use the store, which the caller closes next.
            await controller.stop()
            throw error
        }
        return Broker(
            configuration: configuration,
            storage: brokerPart?.storage,
            controller: controller,
            groups: brokerPart?.groups,
            server: brokerPart?.server,
            controllerServer: controllerServer,
            controllerServing: controllerServing,
            cluster: cluster,
            etcdStore: etcdStore,
            logger: logger
        )
    }

    /// Registers this broker with the active controller and waits until the controller unfences it (registered and
    /// caught up with the image), so that clients are served only by a broker the cluster counts as live.
    private static func waitUntilUnfenced(
        _ lifecycle: BrokerLifecycle,
        configuration: BrokerConfiguration,
        server: KafkaServer,
        logger: Logger
    ) async throws {
        let started = ContinuousClock.now
        await lifecycle.start(endpoints: Self.brokerEndpoints(configuration: configuration, server: server))
        logger.info(
            "Waiting until the active controller has registered and unfenced this broker",
            metadata: ["node.id": "\(configuration.nodeID)", "incarnation": "\(lifecycle.incarnationID)"]
        )
        try await lifecycle.waitUntilUnfenced()
        let brokerEpoch = await lifecycle.brokerEpoch
        logger.info(
            "Unfenced by the active controller; serving clients",
            metadata: [
                "node.id": "\(configuration.nodeID)",
                "broker.epoch": "\(brokerEpoch.map { "\($0)" } ?? "?")",
                "waited": "\(ContinuousClock.now - started)",
            ]
        )
    }

    /// The endpoints this broker registers: `advertised.listeners` with the ports `server` bound.
    static func brokerEndpoints(configuration: BrokerConfiguration, server: KafkaServer) -> [BrokerEndpoint] {
        let bound = zip(configuration.listeners, server.localAddresses).map { listener, address in
            (listener: listener.name, host: address.ipAddress ?? listener.host, port: address.port ?? listener.port)
        }
        return MetadataHandler.endpoints(configuration: configuration, bound: bound)
    }

    /// The logs following the controller's image, the handlers, the group coordinator and the client listeners,
    /// bound.
    private static func assembleBrokerPart(
        _ configuration: BrokerConfiguration,
        storage: BrokerStorage,
        controller: Controller,
        cluster: ClusterPart?,
        connectionLimit: Int,
        logger: Logger
    ) async throws -> BrokerPart {
        await storage.follow(controller)
        var handlers = HandlerTable()
        handlers.register(
            MetadataHandler(controller: controller, configuration: configuration, forwarding: cluster?.forwarding)
        )
        // The admin writes go to the active controller when it runs in another process (Kafka forwards them).
        let forwarding = cluster?.forwarding
        handlers.register(
            CreateTopicsHandler(controller: controller, configuration: configuration),
            forwardingTo: forwarding
        )
        handlers.register(DeleteTopicsHandler(controller: controller), forwardingTo: forwarding)
        handlers.register(CreatePartitionsHandler(controller: controller), forwardingTo: forwarding)
        handlers.register(DescribeConfigsHandler(controller: controller, configuration: configuration))
        handlers.register(
            AlterConfigsHandler(controller: controller, nodeID: configuration.nodeID),
            forwardingTo: forwarding
        )
        handlers.register(
            IncrementalAlterConfigsHandler(controller: controller, configuration: configuration),
            forwardingTo: forwarding
        )
        handlers.register(DescribeClusterHandler(controller: controller, nodeID: configuration.nodeID))
        handlers.register(DescribeQuorumHandler(controller: controller), forwardingTo: forwarding)
        handlers.register(
            ElectLeadersHandler(controller: controller, replicas: storage.replicas),
            forwardingTo: forwarding
        )
        if let cluster {
            handlers.register(
                InitProducerIdHandler(
                    forwarding: cluster.forwarding,
                    lifecycle: cluster.lifecycle,
                    nodeID: configuration.nodeID
                )
            )
        } else {
            handlers.register(InitProducerIdHandler(controller: controller))
        }
        let offsetsTopic = ConsumerOffsetsTopic(
            controller: controller,
            replicas: storage.replicas,
            configuration: configuration,
            forwarding: cluster?.forwarding,
            logger: logger
        )
        let groups = GroupCoordinator(configuration: configuration.groupCoordinator, store: offsetsTopic)
        offsetsTopic.whenPartitionLoadsLate { records in await groups.load(records) }
        handlers.register(FindCoordinatorHandler(groupsOn: (controller, configuration.nodeID, offsetsTopic)))
        handlers.register(JoinGroupHandler(coordinator: groups))
        handlers.register(SyncGroupHandler(coordinator: groups))
        handlers.register(HeartbeatHandler(coordinator: groups))
        handlers.register(LeaveGroupHandler(coordinator: groups))
        handlers.register(OffsetCommitHandler(coordinator: groups, replicas: storage.replicas))
        handlers.register(OffsetFetchHandler(coordinator: groups, replicas: storage.replicas))
        handlers.register(DescribeGroupsHandler(coordinator: groups))
        handlers.register(ListGroupsHandler(coordinator: groups))
        handlers.register(DeleteGroupsHandler(coordinator: groups))
        handlers.register(OffsetDeleteHandler(coordinator: groups))
        handlers.register(SaslHandshakeHandler())
        handlers.register(SaslAuthenticateHandler())
        storage.register(in: &handlers)
        let server = try await KafkaServer.bind(
            configuration: configuration,
            listeners: configuration.listeners,
            handlers: handlers,
            connectionLimit: connectionLimit,
            logger: logger
        )
        return BrokerPart(storage: storage, offsetsTopic: offsetsTopic, groups: groups, server: server)
    }

    // MARK: The metadata store

    /// The local metadata store's file: in the first log directory, as a plain file (not a `<topic>-<partition>`
    /// directory, which the log manager would load as a partition).
    public static func metadataStorePath(configuration: BrokerConfiguration) -> String {
        (configuration.logDirs.first ?? "/tmp/kafka-logs") + "/cluster-metadata.lbmeta"
    }

    /// The local store in the first log directory (created if missing).
    static func openLocalStore(configuration: BrokerConfiguration, logger: Logger) throws -> LocalMetadataStore {
        let directory = configuration.logDirs.first ?? "/tmp/kafka-logs"
        var prefix = directory.hasPrefix("/") ? "" : "."
        for component in directory.split(separator: "/") {
            prefix += "/" + component
            _ = mkdir(prefix, 0o755)  // an existing directory is fine; the store's open reports real failures
        }
        return try LocalMetadataStore(path: Self.metadataStorePath(configuration: configuration), logger: logger)
    }

    /// The etcd store of `metadata.etcd.endpoints` and `metadata.etcd.prefix`, once etcd answered, within
    /// `connectTimeout`.
    static func openEtcdStore(
        configuration: BrokerConfiguration,
        connectTimeout: Duration,
        logger: Logger
    ) async throws -> EtcdMetadataStore {
        let settings = configuration.metadataStore
        let endpoints = settings.etcdEndpoints.map(\.description)
        let store = try EtcdMetadataStore(
            configuration: EtcdMetadataStore.Configuration(endpoints: endpoints, prefix: settings.etcdPrefix),
            logger: logger
        )
        do {
            try await Self.waitUntilReachable(store, endpoints: endpoints, timeout: connectTimeout, logger: logger)
        } catch {
            await store.shutdown()
            throw error
        }
        logger.info(
            "Metadata store reached",
            metadata: [
                "metadata.etcd.endpoints": "\(endpoints.joined(separator: ","))",
                "metadata.etcd.prefix": "\(settings.etcdPrefix)",
            ]
        )
        return store
    }

    /// Reads the store's revision until etcd answers; an unreachable etcd is tried again (logged once) until
    /// `timeout` has passed, any other failure ends the start at once.
    private static func waitUntilReachable(
        _ store: EtcdMetadataStore,
        endpoints: [String],
        timeout: Duration,
        logger: Logger
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        var delay = Duration.milliseconds(100)
        var reported = false
        while true {
            do {
                _ = try await store.revision()
                return
            } catch let error where error.isUnreachable {
                if !reported {
                    reported = true
                    logger.warning(
                        "etcd does not answer; trying until the start-up gives up",
                        metadata: [
                            "metadata.etcd.endpoints": "\(endpoints.joined(separator: ","))",
                            "error": "\(error)", "for": "\(timeout)",
                        ]
                    )
                }
                guard ContinuousClock.now + delay < deadline else {
                    throw LogBrokerServerError.metadataStoreUnreachable(
                        setting: "metadata.etcd.endpoints",
                        value: endpoints.joined(separator: ","),
                        reason: "no etcd member answered within \(timeout) (\(error))"
                    )
                }
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            } catch {
                throw LogBrokerServerError.metadataStoreUnreachable(
                    setting: "metadata.etcd.endpoints",
                    value: endpoints.joined(separator: ","),
                    reason: "\(error)"
                )
            }
        }
    }

    // MARK: The controller

    /// Starts the controller: over the local store (the standalone process) it registers this broker in-process
    /// with the endpoints of the bound `server` and re-elects its partitions (leader epochs grow on every start);
    /// over etcd it registers nothing in-process, as a broker registers with the active controller over its
    /// listener, wherever that runs. The election key names the first controller listener's bound endpoint, if any.
    static func startController(
        _ controller: Controller,
        configuration: BrokerConfiguration,
        server: KafkaServer?,
        controllerServer: KafkaServer?
    ) async throws {
        let controllerEndpoint = controllerServer.flatMap {
            Self.controllerEndpoint(configuration: configuration, bound: $0.localAddresses)
        }
        var registration: BrokerRegistration?
        if configuration.metadataStore.kind == .local, let server {
            let bound = zip(configuration.listeners, server.localAddresses).map { listener, address in
                (listener: listener.name, host: address.ipAddress ?? listener.host, port: address.port ?? listener.port)
            }
            let endpoints = MetadataHandler.endpoints(configuration: configuration, bound: bound)
            registration = BrokerRegistration(
                nodeID: configuration.nodeID,
                endpoints: endpoints,
                rack: configuration.brokerRack
            )
        }
        try await controller.start(registration: registration, controllerEndpoint: controllerEndpoint)
    }

    /// The endpoint brokers reach this controller on: the listener named first in `controller.listener.names`, at
    /// its configured host (this host's name when the listener has none) and its bound port.
    static func controllerEndpoint(configuration: BrokerConfiguration, bound: [SocketAddress]) -> BrokerEndpoint? {
        guard let name = configuration.controllerListenerNames.first,
            let index = configuration.controllerListeners.firstIndex(where: { $0.name == name }),
            index < bound.count
        else { return nil }
        let listener = configuration.controllerListeners[index]
        let port = bound[index].port ?? listener.port
        let host = listener.host.isEmpty || listener.host == "0.0.0.0" ? Self.hostName() : listener.host
        return BrokerEndpoint(listener: listener.name, host: host, port: Int32(port))
    }

    private static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
