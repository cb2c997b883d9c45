import ClusterControl
import GroupCoordinator
import LogStorage
import Logging
import MetadataStore
import NIOCore
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// One LogBroker node assembled from its configuration: the logs and the replica manager (`BrokerStorage`), the
/// controller over its metadata store, the group coordinator over `__consumer_offsets`, the handler table, and the
/// `KafkaServer` on the client listeners. `logbroker-server` parses its configuration and runs one; tests start
/// whole brokers in-process the same way.
///
/// Use: `start` (the logs recovered, the listeners bound, the controller started and the groups loaded; errors such
/// as a bad log directory or a port in use are thrown before anything is served), then `run`, as a `Service` in a
/// `ServiceGroup`. On graceful shutdown the server finishes in-flight requests before the logs close (services stop
/// in reverse order). A failed `start` leaves what it opened (logs, the disk pool, bound listeners) to the exit of
/// the process, as `logbroker-server` exits at once: the next start recovers the logs as after any unclean stop.
///
/// Only the standalone process runs so far: both roles over the local metadata store. A controller listener in
/// `listeners` is not bound (the controller runs in-process and no other process talks to it yet), and
/// `metadata.store=etcd` is refused at start.
///
/// Thread-safe: every member is; `run` must be called once.
public final class Broker: Service, Sendable {
    public let configuration: BrokerConfiguration
    /// The logs, the disk pool and the replica manager.
    public let storage: BrokerStorage
    /// The in-process controller over the local metadata store.
    public let controller: Controller
    public let groups: GroupCoordinator
    /// The client listeners, bound.
    public let server: KafkaServer
    private let logger: Logger

    /// The addresses the client listeners bound, in the order of `listeners` (a port 0 listener shows its port).
    public var localAddresses: [SocketAddress] { self.server.localAddresses }

    private init(
        configuration: BrokerConfiguration,
        storage: BrokerStorage,
        controller: Controller,
        groups: GroupCoordinator,
        server: KafkaServer,
        logger: Logger
    ) {
        self.configuration = configuration
        self.storage = storage
        self.controller = controller
        self.groups = groups
        self.server = server
        self.logger = logger
    }

    /// Builds the broker of `configuration` and brings it up to the point of serving: connections are accepted
    /// once `run` is called.
    /// - Throws: `LogBrokerServerError` for a setting this build cannot run (`metadata.store=etcd`) or a listener
    ///   it cannot bind; the storage's and the controller's errors for unusable log directories or metadata.
    public static func start(configuration: BrokerConfiguration, logger: Logger) async throws -> Broker {
        guard configuration.metadataStore.kind == .local else {
            throw LogBrokerServerError.notBuiltYet(
                setting: "metadata.store",
                value: configuration.metadataStore.kind.rawValue,
                reason: "the etcd metadata store is not built into the server yet; only metadata.store=local runs "
                    + "so far (one process with both roles)"
            )
        }
        // The logs first (recovered if the last stop was unclean), then the in-process controller and its local
        // metadata store, registered once the listeners are bound; its elections open the partitions' logs.
        // Connections and open segments share `ulimit -n`: split it once, so connections can never take the
        // descriptors a segment roll needs.
        let descriptors = FileHandleBudget.split(
            processLimit: FileHandleBudget.processDescriptorLimit(),
            maxConnections: configuration.connections.maxConnections == Int(Int32.max)
                ? nil : configuration.connections.maxConnections
        )
        logger.info("\(descriptors)")
        let storage = try BrokerStorage(configuration: configuration, fileHandleLimit: descriptors.logs, logger: logger)
        let controller = try Self.makeController(configuration: configuration, logger: logger)
        await storage.follow(controller)
        var handlers = HandlerTable()
        handlers.register(MetadataHandler(controller: controller, configuration: configuration))
        handlers.register(CreateTopicsHandler(controller: controller, configuration: configuration))
        handlers.register(DeleteTopicsHandler(controller: controller))
        handlers.register(CreatePartitionsHandler(controller: controller))
        handlers.register(DescribeConfigsHandler(controller: controller, configuration: configuration))
        handlers.register(AlterConfigsHandler(controller: controller, nodeID: configuration.nodeID))
        handlers.register(IncrementalAlterConfigsHandler(controller: controller, configuration: configuration))
        handlers.register(DescribeClusterHandler(controller: controller, nodeID: configuration.nodeID))
        handlers.register(DescribeQuorumHandler(controller: controller))
        handlers.register(ElectLeadersHandler(controller: controller, replicas: storage.replicas))
        handlers.register(InitProducerIdHandler(controller: controller))
        let offsetsTopic = ConsumerOffsetsTopic(
            controller: controller,
            replicas: storage.replicas,
            configuration: configuration,
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
            handlers: handlers,
            connectionLimit: descriptors.connections,
            logger: logger
        )
        for listener in configuration.controllerListeners {
            // Honest rather than half-served: nothing would answer the KRaft RPCs there yet, and Kafka clients
            // are never served on a controller listener.
            logger.info(
                "Controller listener not bound: the controller runs in this process and takes no connections yet",
                metadata: ["listener": "\(listener)"]
            )
        }
        try await Self.startController(controller, configuration: configuration, server: server)
        try await storage.removeStrayLogs(notIn: controller)
        await groups.load(try await offsetsTopic.readAll())
        try await groups.follow(controller)
        return Broker(
            configuration: configuration,
            storage: storage,
            controller: controller,
            groups: groups,
            server: server,
            logger: logger
        )
    }

    /// Serves until graceful shutdown (from the enclosing `ServiceGroup`), then stops the server, then the logs.
    public func run() async throws {
        // Services stop in reverse order: the server finishes in-flight requests before the logs close.
        let group = ServiceGroup(services: [self.storage, self.server], logger: self.logger)
        try await group.run()
    }

    /// The local metadata store's file: in the first log directory, as a plain file (not a `<topic>-<partition>`
    /// directory, which the log manager would load as a partition).
    public static func metadataStorePath(configuration: BrokerConfiguration) -> String {
        (configuration.logDirs.first ?? "/tmp/kafka-logs") + "/cluster-metadata.lbmeta"
    }

    /// The in-process controller over the local store of `configuration` (the first log directory is created if
    /// missing). `startController` starts it once the listeners are bound.
    static func makeController(configuration: BrokerConfiguration, logger: Logger) throws -> Controller {
        let directory = configuration.logDirs.first ?? "/tmp/kafka-logs"
        var prefix = directory.hasPrefix("/") ? "" : "."
        for component in directory.split(separator: "/") {
            prefix += "/" + component
            _ = mkdir(prefix, 0o755)  // an existing directory is fine; the store's open reports real failures
        }
        let store = try LocalMetadataStore(path: Self.metadataStorePath(configuration: configuration), logger: logger)
        return Controller(store: store, nodeID: configuration.nodeID, logger: logger)
    }

    /// Registers this broker with the endpoints of the bound `server` and re-elects its partitions (leader epochs
    /// grow on every start).
    static func startController(
        _ controller: Controller,
        configuration: BrokerConfiguration,
        server: KafkaServer
    ) async throws {
        let bound = zip(configuration.listeners, server.localAddresses).map { listener, address in
            (listener: listener.name, host: address.ipAddress ?? listener.host, port: address.port ?? listener.port)
        }
        let endpoints = MetadataHandler.endpoints(configuration: configuration, bound: bound)
        try await controller.start(
            registration: BrokerRegistration(
                nodeID: configuration.nodeID,
                endpoints: endpoints,
                rack: configuration.brokerRack
            )
        )
    }
}
