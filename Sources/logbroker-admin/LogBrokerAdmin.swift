import ArgumentParser
import LogBrokerCLI

@main
struct LogBrokerAdmin: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logbroker-admin",
        abstract: "Topics, configs, consumer groups and cluster status.",
        discussion: UnbuiltTool.discussion(plannedIn: "logbroker-admin comes with the client library issue.")
    )

    func run() throws {
        throw UnbuiltTool.refuse("logbroker-admin")
    }
}
