import ArgumentParser
import Foundation
import KafkaMessageGen

/// Regenerates `Sources/KafkaMessages/Generated/` from the vendored Kafka definitions and the allowlist.
@main
struct KafkaMessageGenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka-message-gen",
        abstract: "Generate Swift codecs for Kafka messages from Sources/KafkaMessages/Definitions."
    )

    @Option(help: "The package root (the folder holding Package.swift).")
    var packageRoot: String = FileManager.default.currentDirectoryPath

    @Flag(help: "Change nothing; list the files that would change and exit 1 if there are any.")
    var check = false

    func run() throws {
        let generator = MessageGenerator(packageRoot: URL(fileURLWithPath: self.packageRoot, isDirectory: true))
        if self.check {
            let stale = try generator.staleFiles()
            for name in stale {
                print("would change: Sources/KafkaMessages/Generated/\(name)")
            }
            if !stale.isEmpty { throw ExitCode.failure }
            return
        }
        let written = try generator.write()
        print("kafka-message-gen: \(written.count) file(s) updated in Sources/KafkaMessages/Generated")
    }
}
