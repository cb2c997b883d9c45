import Foundation
import KafkaMessages
import KafkaNIO
import Testing

/// The real `logbroker-server` binary as a child process, for tests that need what only a process shows: the command
/// line, signals, stderr, and data that outlives the process. One directory holds the configuration file, the log
/// dir (`logs/`) and one stderr file per run, so a restart finds the same data and each run's log stays readable.
///
/// Use `BrokerProcess.withBroker`, which kills the process (SIGKILL) and removes the directory when the test ends,
/// whether it passed or threw; `deinit` kills a process still running as a last resort.
/// Not thread-safe: used by one test task.
final class BrokerProcess {
    /// Holds `server.properties`, `logs/` and `stderr-<run>.log`.
    let directory: URL
    /// The properties written to `server.properties`, in order.
    let properties: [(String, String)]
    /// `--override key=value` arguments, passed on every start.
    let overrides: [String]
    /// Extra environment variables (e.g. `LOGBROKER_LOG_LEVEL`), added to the test process's environment.
    let environment: [String: String]
    private var process: Process?
    /// Starts so far; names each run's stderr file.
    private(set) var runs = 0
    /// The port the current run's listener bound (it binds port 0, so it changes on every start).
    private(set) var port = 0

    /// The built `logbroker-server`, next to the test bundle.
    static var binary: URL { buildDirectory.appendingPathComponent("logbroker-server") }

    /// The broker's `log.dirs` (one directory).
    var logDirectory: URL { self.directory.appendingPathComponent("logs") }
    var configFile: URL { self.directory.appendingPathComponent("server.properties") }
    var bootstrap: String { "127.0.0.1:\(self.port)" }
    var processIdentifier: Int32? { self.process?.processIdentifier }
    var isRunning: Bool { self.process?.isRunning ?? false }

    /// The current (or last) run's stderr so far.
    var stderr: String { Self.read(self.stderrFile(run: self.runs)) }

    /// The defaults every test broker uses: node 1 in both roles, an ephemeral port on 127.0.0.1, `logs/`. A key in
    /// `properties` replaces the default with the same key; other keys are appended in order.
    private init(directory: URL, properties: [(String, String)], overrides: [String], environment: [String: String]) {
        self.directory = directory
        var merged: [(String, String)] = [
            ("node.id", "1"),
            ("process.roles", "broker,controller"),
            ("listeners", "PLAINTEXT://127.0.0.1:0"),
            ("log.dirs", directory.appendingPathComponent("logs").path),
        ]
        for (key, value) in properties {
            if let index = merged.firstIndex(where: { $0.0 == key }) {
                merged[index].1 = value
            } else {
                merged.append((key, value))
            }
        }
        self.properties = merged
        self.overrides = overrides
        self.environment = environment
    }

    deinit {
        if let process = self.process, process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Starts a broker in a fresh temporary directory, runs `body`, then kills the broker if it still runs and
    /// removes the directory.
    static func withBroker<Result>(
        _ properties: [(String, String)] = [],
        overrides: [String] = [],
        environment: [String: String] = [:],
        isolation: isolated (any Actor)? = #isolation,
        _ body: (BrokerProcess) async throws -> sending Result
    ) async throws -> sending Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("logbroker-process-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let broker = BrokerProcess(
            directory: directory,
            properties: properties,
            overrides: overrides,
            environment: environment
        )
        let config = broker.properties.map { "\($0.0)=\($0.1)" }.joined(separator: "\n") + "\n"
        try config.write(to: broker.configFile, atomically: true, encoding: .utf8)
        do {
            try await broker.start()
            let result = try await body(broker)
            try await broker.killIfRunning()
            return result
        } catch {
            try? await broker.killIfRunning()
            throw error
        }
    }

    /// Starts the binary on this directory's configuration and returns once it logged "LogBroker started" and its
    /// port answers ApiVersions. Also how a test restarts a stopped broker on the same dirs.
    func start(timeout: Duration = .seconds(20)) async throws {
        precondition(!self.isRunning, "start: the broker is already running")
        self.runs += 1
        let stderrFile = self.stderrFile(run: self.runs)
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = [self.configFile.path] + self.overrides.flatMap { ["--override", $0] }
        process.environment = ProcessInfo.processInfo.environment.merging(self.environment) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        // A file, not a pipe: the broker never blocks on a full pipe, and the text outlives the run.
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        try process.run()
        self.process = process

        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let text = self.stderr
            if !process.isRunning {
                process.waitUntilExit()
                throw BrokerProcessError(
                    "logbroker-server exited with status \(process.terminationStatus) during start-up",
                    stderr: text
                )
            }
            if text.contains("LogBroker started"), let match = text.firstMatch(of: /listener=PLAINTEXT port=(\d+)/) {
                self.port = Int(match.1)!
                if await self.answersApiVersions() { return }
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        try? await self.killIfRunning()
        throw BrokerProcessError("logbroker-server did not start within \(timeout)", stderr: self.stderr)
    }

    /// SIGTERM, then waits for the exit (a clean stop flushes, checkpoints and writes the clean-shutdown marker).
    /// - Returns: the exit status (nil if the process died of a signal) and the run's stderr.
    /// - Throws: if it does not exit within `timeout` (it is then killed).
    @discardableResult
    func terminate(timeout: Duration = .seconds(20)) async throws -> (status: Int32?, stderr: String) {
        try await self.signal(SIGTERM, timeout: timeout)
    }

    /// SIGKILL, then waits for the exit: nothing flushed, no marker, as a crash.
    @discardableResult
    func kill(timeout: Duration = .seconds(20)) async throws -> (status: Int32?, stderr: String) {
        try await self.signal(SIGKILL, timeout: timeout)
    }

    /// Sends `signal` and waits until the process has exited.
    func signal(_ signal: Int32, timeout: Duration) async throws -> (status: Int32?, stderr: String) {
        let process = try requireNonNilValue(self.process)
        precondition(process.isRunning, "the broker is not running")
        Glibc.kill(process.processIdentifier, signal)
        let deadline = ContinuousClock.now + timeout
        // Polled rather than waitUntilExit, so no thread is blocked and a hung stop fails the test instead.
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                Glibc.kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                throw BrokerProcessError(
                    "logbroker-server did not exit within \(timeout) of signal \(signal)",
                    stderr: self.stderr
                )
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        process.waitUntilExit()
        let status = process.terminationReason == .exit ? process.terminationStatus : nil
        return (status, self.stderr)
    }

    /// SIGKILL if the process still runs (the end of every test).
    func killIfRunning() async throws {
        if self.isRunning { try await self.kill() }
    }

    /// True once a Kafka connection to the port gets an ApiVersions answer.
    private func answersApiVersions() async -> Bool {
        do {
            return try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: self.port) { connection in
                let response = try await connection.send(ApiVersionsRequest(), version: 0)
                return response.errorCode == 0
            }
        } catch {
            return false
        }
    }

    private func stderrFile(run: Int) -> URL { self.directory.appendingPathComponent("stderr-\(run).log") }

    private static func read(_ file: URL) -> String {
        (try? String(contentsOf: file, encoding: .utf8)) ?? ""
    }
}

@available(*, unavailable)
extension BrokerProcess: Sendable {}

/// A broker process that did not start or stop as expected, with its stderr.
struct BrokerProcessError: Error, CustomStringConvertible {
    let message: String
    let stderr: String

    init(_ message: String, stderr: String) {
        self.message = message
        self.stderr = stderr
    }

    var description: String { "\(self.message); its stderr:\n\(self.stderr)" }
}
