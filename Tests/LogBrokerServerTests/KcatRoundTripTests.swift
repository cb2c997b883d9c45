import Foundation
import Testing

/// Debian's kcat (librdkafka 2.0.2) against the real `logbroker-server` binary: what a user does first. Lines
/// produced with each codec come back byte-identical, keys and headers round-trip, and everything acknowledged
/// survives a SIGKILL and restart.
@Suite(.serialized) struct KcatRoundTripTests {
    /// A `logbroker-server` child process on an ephemeral port, logging to a file in its directory.
    final class Broker {
        let directory: URL
        let process = Process()
        private(set) var port = 0

        init(directory: URL) throws {
            self.directory = directory
            let config = directory.appendingPathComponent("server.properties")
            try """
            node.id=1
            process.roles=broker,controller
            listeners=PLAINTEXT://127.0.0.1:0
            log.dirs=\(directory.path)/logs
            """.write(to: config, atomically: true, encoding: .utf8)
            let log = directory.appendingPathComponent("server-\(UUID().uuidString).log")
            FileManager.default.createFile(atPath: log.path, contents: nil)
            self.process.executableURL = buildDirectory.appendingPathComponent("logbroker-server")
            self.process.arguments = [config.path]
            self.process.standardOutput = FileHandle.nullDevice
            self.process.standardError = try FileHandle(forWritingTo: log)
            try self.process.run()
            for _ in 0..<200 {
                let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                if let match = text.firstMatch(of: /listener=PLAINTEXT port=(\d+)/), text.contains("LogBroker started")
                {
                    self.port = Int(match.1)!
                    return
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
            self.process.terminate()
            throw BrokerDidNotStart(log: (try? String(contentsOf: log, encoding: .utf8)) ?? "")
        }

        var bootstrap: String { "127.0.0.1:\(self.port)" }

        func stop(signal: Int32) async throws {
            let process = self.process
            try await ExternalClientTests.offPool {
                kill(process.processIdentifier, signal)
                process.waitUntilExit()
            }
        }
    }

    struct BrokerDidNotStart: Error, CustomStringConvertible {
        let log: String
        var description: String { "logbroker-server did not start:\n\(self.log)" }
    }

    /// Runs a shell pipeline (for kcat's stdin and stdout) and returns its status and stdout.
    static func shell(_ command: String) async throws -> (status: Int32, output: String) {
        try await ExternalClientTests.run(["sh", "-c", command])
    }

    static func withDirectory(_ body: (URL) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("logbroker-kcat-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await body(directory)
    }

    /// The codec id (attributes & 7) of every whole batch in a `.log` file.
    static func codecIDs(ofBatchesIn log: Data) -> [Int] {
        let bytes = [UInt8](log)
        var ids: [Int] = []
        var position = 0
        while position + 61 <= bytes.count {
            let length = bytes[(position + 8)..<(position + 12)].reduce(0) { $0 << 8 | Int($1) }
            ids.append(Int(bytes[position + 22] & 0x07))
            position += 12 + length
        }
        return ids
    }

    @Test(.timeLimit(.minutes(3)))
    func linesRoundTripWithEveryCodecAndSurviveSIGKILL() async throws {
        try await Self.withDirectory { directory in
            let input = directory.appendingPathComponent("lines.txt")
            // 20,000 distinct lines with some repetition, so every codec has work to do.
            let lines = (0..<20_000).map { "line \($0) " + String(repeating: "payload-\($0 % 97) ", count: 3) }
            try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
            let expected = lines.joined(separator: "\n") + "\n"

            var broker = try Broker(directory: directory)
            let codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
            for codec in codecs {
                let produce = try await Self.shell(
                    "kcat -b \(broker.bootstrap) -P -t rt-\(codec) -z \(codec) -X linger.ms=5 < \(input.path)"
                )
                #expect(produce.status == 0, "kcat -P -z \(codec): \(produce.output)")
                let consume = try await Self.shell("kcat -b \(broker.bootstrap) -C -t rt-\(codec) -e -q")
                #expect(consume.status == 0)
                #expect(consume.output == expected, "-z \(codec): \(consume.output.count) bytes back")
                // kcat drops a codec silently when the broker's versions disable it, so look at the stored batches.
                // librdkafka also sends a batch uncompressed when compressing does not shrink it (a tiny first
                // batch), so the codec must appear, not be on every batch.
                let segment = directory.appendingPathComponent("logs/rt-\(codec)-0/00000000000000000000.log")
                let stored = Self.codecIDs(ofBatchesIn: try Data(contentsOf: segment))
                #expect(stored.contains(codecs.firstIndex(of: codec)!), "-z \(codec): codec ids \(Set(stored))")
            }

            let keyed = try await Self.shell(
                "printf 'k1:v1\\nk2:v2\\n' | kcat -b \(broker.bootstrap) -P -t keyed -K: -H source=test -H n=1"
            )
            #expect(keyed.status == 0, "\(keyed.output)")
            let keys = try await Self.shell("kcat -b \(broker.bootstrap) -C -t keyed -e -q -f '%k=%s %h\\n'")
            #expect(keys.output == "k1=v1 source=test,n=1\nk2=v2 source=test,n=1\n")

            // Everything acknowledged is there after a SIGKILL (no clean shutdown) and a restart.
            try await broker.stop(signal: SIGKILL)
            broker = try Broker(directory: directory)
            for codec in codecs {
                let consume = try await Self.shell("kcat -b \(broker.bootstrap) -C -t rt-\(codec) -e -q")
                #expect(consume.output == expected, "-z \(codec) after SIGKILL: \(consume.output.count) bytes back")
            }
            try await broker.stop(signal: SIGTERM)
            #expect(broker.process.terminationStatus == 0)
        }
    }
}
