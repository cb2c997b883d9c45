import ArgumentParser
import Foundation
import KafkaProperties
import LogBrokerServer
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
            directory, or with metadata.store=etcd in etcd, shared by the processes of a cluster (an etcd that does \
            not answer within 18 s at start stops start-up with status 1). The APIs served are those ApiVersions \
            lists; README.md says what is not built yet.

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

        let broker: Broker
        do {
            broker = try await Broker.start(configuration: configuration, logger: logger)
        } catch {
            Self.fail("\(error)")
        }
        logger.info("LogBroker started", metadata: ["node.id": "\(configuration.nodeID)"])
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: broker)],
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
