import ArgumentParser
import LogBrokerCLI

@main
struct LogBrokerPerf: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logbroker-perf",
        abstract: "Producer, consumer and end-to-end latency load tests with percentiles.",
        discussion: UnbuiltTool.discussion(plannedIn: "logbroker-perf comes with the benchmark suite issue.")
    )

    func run() throws {
        throw UnbuiltTool.refuse("logbroker-perf")
    }
}
