import ArgumentParser
import LogBrokerCLI

@main
struct Logcat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logcat",
        abstract: "Produce stdin lines to a topic and consume a topic to stdout, with kcat's habits.",
        discussion: UnbuiltTool.discussion(plannedIn: "logcat comes with the client library issue.")
    )

    func run() throws {
        throw UnbuiltTool.refuse("logcat")
    }
}
