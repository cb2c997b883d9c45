import Foundation
import KafkaWire
import NIOCore
import SystemPackage
import Testing

@testable import LogStorage

/// Crash behaviour with a real process and a real SIGKILL (LogManagerTests has the in-process variant, which drops a
/// manager without stopping it). The child is `logbroker-storagebench crash`, built next to the test bundle.
@Suite struct ProcessKillTests {
    static let helper = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("logbroker-storagebench")

    /// Runs the helper's `crash` phase; returns the process and a pipe on its stdout.
    static func start(_ directory: TemporaryDirectory, _ mode: String) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = Self.helper
        process.arguments = ["crash", directory.path.string, mode]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        return (process, output)
    }

    /// Reads the child's stdout until a line starting with `key`, and returns that line.
    static func readLine(startingWith key: String, from pipe: Pipe) -> String? {
        var text = ""
        while true {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            text += String(decoding: chunk, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }) { return String(line) }
        }
    }

    /// A clean stop, a start (which removes the clean-shutdown marker before anything is appended), an append, a
    /// torn tail, then SIGKILL: the next start finds no marker, so it recovers and cuts the torn batch.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: Self.helper.path), "needs the built helper"))
    func cleanStopStartTornTailThenSigkillStillRecovers() throws {
        try TemporaryDirectory.with { directory in
            let (stopping, stopOutput) = try Self.start(directory, "stop")
            #expect(Self.readLine(startingWith: "stopped", from: stopOutput) == "stopped 6")
            stopping.waitUntilExit()
            #expect(stopping.terminationStatus == 0)
            let marker = directory.appending(LogManager.cleanShutdownFileName)
            #expect(TestFiles.exists(marker))

            let (holding, holdOutput) = try Self.start(directory, "hold")
            defer { if holding.isRunning { kill(holding.processIdentifier, SIGKILL) } }
            #expect(Self.readLine(startingWith: "appended", from: holdOutput) == "appended 8")
            #expect(!TestFiles.exists(marker), "the start removed the marker")
            let logFile = try #require(try LogManagerTests.segmentFiles(directory.appending("t-0")).last)
            let size = try #require(TestFiles.size(logFile))
            try TestFiles.truncate(logFile, to: size - 7)  // tears the batch the running process just appended
            kill(holding.processIdentifier, SIGKILL)
            holding.waitUntilExit()
            #expect(holding.terminationReason == .uncaughtSignal)
            #expect(holding.terminationStatus == SIGKILL)

            let pool = DiskIOPool(threadCount: 1)
            defer { pool.shutdown() }
            let config = LogManagerConfig(
                logDirectories: [directory.path],
                metaProperties: MetaProperties(clusterID: "storagebench", nodeID: 1)
            )
            let recovered = try LogManager(config: config, ioPool: pool)
            #expect(recovered.startupReport.cleanShutdownDirectories.isEmpty)
            let log = try #require(recovered.log(for: TopicPartition("t", 0)))
            #expect(log.logEndOffset == 6)
            #expect(TestFiles.size(logFile) == size / 4 * 3, "four equal batches; the torn fourth is cut")
            let bytes = try log.withLog { (log) throws(StorageError) in
                try log.read(from: 0, maxBytes: 1 << 20).range!.readBytes()
            }
            #expect(Batches.headers(ByteBuffer(bytes: bytes)).map(\.last) == [1, 3, 5])
            #expect(try log.appendAsLeader(Batches.make(count: 1), leaderEpoch: 1).firstOffset == 6)
            try recovered.shutdown()
        }
    }
}
