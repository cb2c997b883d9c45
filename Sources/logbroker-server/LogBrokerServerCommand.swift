import ArgumentParser
import LogBrokerCLI

@main
struct LogBrokerServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logbroker-server",
        abstract: "The LogBroker daemon: a Kafka-compatible broker and controller.",
        discussion: UnbuiltTool.discussion(plannedIn: "the broker core comes with the storage and broker issues.")
    )

    @Argument(help: "The broker's properties file, as for kafka-server-start.")
    var configFile = "config/server.properties"

    @Option(name: .customLong("override"), help: "A property that overrides the file's: key=value.")
    var overrides: [String] = []

    func run() throws {
        throw UnbuiltTool.refuse("logbroker-server")
    }
}
