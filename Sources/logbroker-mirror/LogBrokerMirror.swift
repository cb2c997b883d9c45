import ArgumentParser
import LogBrokerCLI

@main
struct LogBrokerMirror: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logbroker-mirror",
        abstract: "Copies topics from one cluster to another.",
        discussion: UnbuiltTool.discussion(plannedIn: "mirroring has its own issue, which comes later.")
    )

    func run() throws {
        throw UnbuiltTool.refuse("logbroker-mirror")
    }
}
