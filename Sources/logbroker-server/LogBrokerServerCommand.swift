import ArgumentParser
import LogBrokerCLI

@main
struct LogBrokerServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logbroker-server",
        abstract: "The LogBroker daemon: a Kafka-compatible broker and controller.",
        discussion: UnbuiltTool.discussion(plannedIn: "the broker core comes with the storage and broker issues.")
    )

    func run() throws {
        throw UnbuiltTool.refuse("logbroker-server")
    }
}
