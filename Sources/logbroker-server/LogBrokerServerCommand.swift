import ArgumentParser

@main
struct LogBrokerServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logbroker-server",
        abstract: "The LogBroker daemon: a Kafka-compatible broker and controller.",
        discussion: "NOT BUILT YET: the network edge is being built. Running it exits with status 69."
    )

    @Argument(help: "The broker's properties file, as for kafka-server-start.")
    var configFile = "config/server.properties"

    @Option(name: .customLong("override"), help: "A property that overrides the file's: key=value.")
    var overrides: [String] = []

    func run() throws {
        print("logbroker-server: not built yet; see `logbroker-server --help`.")
        throw ExitCode(69)
    }
}
