import ArgumentParser
import Foundation
import KafkaProperties
import GroupCoordinator
import LogBrokerServer
import LogStorage
import Logging
import ServiceLifecycle
import UnixSignals

/// `logbroker-server [CONFIG_FILE] [--override key=value]...`, as kafka-server-start: loads and validates the
/// configuration, binds the listeners, and serves until SIGTERM or SIGINT, then shuts down gracefully and exits 0.
/// A configuration error is printed on stderr and exits 1, as Kafka does, before anything is bound.
@main
struct LogBrokerServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logbroker-server",
        abstract: "The LogBroker daemon: a Kafka-compatible broker and controller in one process.",
        discussion: """
            Reads a Kafka server.properties file (Kafka's property names and defaults), applies each --override \
            on top, and serves Kafka clients on the configured listeners until SIGTERM or SIGINT, which stop it \
            gracefully (exit status 0). A bad value or an unknown key stops start-up with a message (exit \
            status 1); an Apache Kafka setting that LogBroker does not implement is logged as a warning and \
            ignored.

            The cluster metadata (topics, their ids and configs, dynamic broker configs) is kept in log.dirs' first \
            directory. The APIs served are those ApiVersions lists; README.md says what is not built yet.

            Logs go to stderr; LOGBROKER_LOG_LEVEL (trace, debug, info, notice, warning, error) sets the level \
            (default info).
            """
    )

    @Argument(help: "The broker's properties file, as for kafka-server-start.")
    var configFile = "config/server.properties"

    @Option(name: .customLong("override"), help: "A property that overrides the file's: key=value (repeatable).")
    var overrides: [String] = []

    func run() async throws {
        let level = ProcessInfo.processInfo.environment["LOGBROKER_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:))
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level ?? .info
            return handler
        }
        let logger = Logger(label: "logbroker")

        let configuration: BrokerConfiguration
        do {
            let text: String
            do {
                text = try String(contentsOfFile: self.configFile, encoding: .utf8)
            } catch {
                throw ConfigurationFileError(message: "\(self.configFile): cannot read the configuration file")
            }
            let fileProperties: Properties
            do {
                fileProperties = try Properties(parsing: text)
            } catch {
                throw ConfigurationFileError(message: "\(error.from(self.configFile))")
            }
            let (properties, source) = try BrokerConfiguration.merge(
                file: fileProperties,
                fileName: self.configFile,
                overrides: self.overrides
            )
            let (resolved, warnings) = try BrokerConfiguration.resolve(properties, source: source)
            for warning in warnings { logger.warning("\(warning)") }
            configuration = resolved
        } catch {
            Self.fail("\(error)")
        }

        let server: KafkaServer
        let storage: BrokerStorage
        do {
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
            storage = try BrokerStorage(configuration: configuration, fileHandleLimit: descriptors.logs, logger: logger)
            let controller = try MetadataHandler.makeController(configuration: configuration, logger: logger)
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
            handlers.register(ElectLeadersHandler(controller: controller, replicas: storage.replicas))
            handlers.register(InitProducerIdHandler(controller: controller))
            let offsetsTopic = ConsumerOffsetsTopic(controller: controller, replicas: storage.replicas,
                                                    configuration: configuration, logger: logger)
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
            server = try await KafkaServer.bind(
                configuration: configuration,
                handlers: handlers,
                connectionLimit: descriptors.connections,
                logger: logger
            )
            try await MetadataHandler.startController(controller, configuration: configuration, server: server)
            try await storage.removeStrayLogs(notIn: controller)
            await groups.load(try await offsetsTopic.readAll())
            try await groups.follow(controller)
        } catch {
            Self.fail("\(error)")
        }
        logger.info("LogBroker started", metadata: ["node.id": "\(configuration.nodeID)"])
        // Services stop in reverse order: the server finishes in-flight requests before the logs close.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: storage), .init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        logger.info("LogBroker stopped")
    }

    /// Prints `message` on stderr and exits with status 1, as kafka-server-start does for a bad configuration.
    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("logbroker-server: \(message)\n".utf8))
        Foundation.exit(1)
    }
}

/// A configuration file that cannot be read or parsed.
struct ConfigurationFileError: Error, CustomStringConvertible {
    let message: String
    var description: String { self.message }
}
