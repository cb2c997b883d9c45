import Foundation
import KafkaMessages
import KafkaNIO
import LogBrokerServer
import Testing

/// Real clients and the real binary. These fail, never skip, when kcat or kafka-python is missing: the project's
/// test command installs them (`bin/setup`).
@Suite struct ExternalClientTests {
    /// Runs `arguments` through /usr/bin/env and returns the exit status and combined output. The blocking waits
    /// run on a Dispatch thread: Swift's cooperative pool has one thread per core (two here), and a test that
    /// blocks one of them stalls every other test's tasks.
    static func run(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await Self.offPool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
    }

    /// Runs blocking `work` on a Dispatch thread, off the cooperative pool.
    static func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }

    static let kafkaPythonDecoder = """
        import io, json, sys
        from kafka.protocol.metadata.api_versions import ApiVersionsResponse
        for arg in sys.argv[1:]:
            version, hex_frame = arg.split(":")
            frame = bytes.fromhex(hex_frame)
            data = io.BytesIO(frame)
            r = ApiVersionsResponse.decode(data, version=int(version), header=True, framed=True)
            print(json.dumps({"version": int(version), "correlation": r._header.correlation_id,
                "error": r.error_code, "keys": [[k.api_key, k.min_version, k.max_version] for k in r.api_keys],
                "throttle": r.throttle_time_ms, "unread": len(frame) - data.tell()}))
        """

    @Test func kafkaPythonDecodesTheServersApiVersionsResponses() async throws {
        // Frames as the server sends them: v0–4 (answered at their version), v5 and v-1 (error 35, v0 layout).
        let frames: [(version: Int16, bytes: [UInt8])] = try await withServer { port in
            try await RawConnection.withConnection(port: port) { connection in
                var frames: [(Int16, [UInt8])] = []
                for version in Int16(-1)...5 {
                    let body: [UInt8] =
                        version >= 3 ? [13] + Array("kafka-python".utf8) + [7] + Array("3.0.12".utf8) + [0] : []
                    let frame = requestFrame(
                        apiKey: 18,
                        version: version,
                        correlationID: Int32(100 + version),
                        flexibleHeader: version >= 3,
                        body: body
                    )
                    try await connection.writeFrame(frame)
                    frames.append((version, try #require(await connection.readFrame())))
                }
                return frames
            }
        }
        let arguments = frames.map { "\($0.version):" + $0.bytes.map { String(format: "%02x", $0) }.joined() }
        let result = try await Self.run(["python3", "-c", Self.kafkaPythonDecoder] + arguments)
        try #require(result.status == 0, "kafka-python failed (is kafka-python installed?):\n\(result.output)")
        let lines = result.output.split(separator: "\n")
        #expect(lines.count == frames.count)
        for (line, frame) in zip(lines, frames) {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let supported = (0...4).contains(frame.version)
            #expect(object["correlation"] as? Int == 100 + Int(frame.version), "\(line)")
            #expect(object["error"] as? Int == (supported ? 0 : 35), "\(line)")
            #expect(object["keys"] as? [[Int]] == [[18, 0, 4]], "\(line)")
            #expect(object["throttle"] as? Int == 0, "\(line)")
            #expect(object["unread"] as? Int == 0, "\(line)")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func theBinaryAnswersKcatAndStopsOnSIGTERM() async throws {
        try await BrokerProcess.withBroker(
            // A Kafka setting LogBroker does not implement: a warning, not an error.
            [("num.io.threads", "8")],
            overrides: ["num.partitions=2"],
            environment: ["LOGBROKER_LOG_LEVEL": "debug"]
        ) { broker in
            #expect(
                broker.stderr.contains(
                    "num.io.threads is an Apache Kafka broker setting that LogBroker does not implement"
                )
            )

            // librdkafka (kcat) negotiates with ApiVersions, then lists the cluster with Metadata.
            let kcat = try await Self.run(["kcat", "-b", broker.bootstrap, "-L", "-m", "3"])
            #expect(kcat.status == 0, "\(kcat.output)")
            #expect(kcat.output.contains("broker 1 at \(broker.bootstrap)"), "\(kcat.output)")
            // It used ApiVersions v3, its newest, with no fallback to v0 (which an error or a misread answer causes).
            let log = broker.stderr
            let usedV3 = log.contains(#/api=ApiVersions\(18\) client=rdkafka correlation=1 .* version=3 /#)
            let fellBack = log.contains(#/client=rdkafka .* version=0 /#)
            #expect(usedV3 && !fellBack, "\(log)")
            // The override reached the broker: an auto-created topic has two partitions.
            let topic = try await Self.run(["kcat", "-b", broker.bootstrap, "-L", "-t", "two"])
            #expect(topic.output.contains("topic \"two\" with 2 partitions:"), "\(topic.output)")

            // SIGTERM; the wait polls without blocking a thread, so a busy test process adds little to the figure.
            let clock = ContinuousClock()
            let start = clock.now
            let stop = try await broker.terminate()
            let stopped = clock.now - start
            #expect(stop.status == 0, "\(stop.stderr)")
            #expect(stopped < .seconds(3), "stopping took \(stopped)")
            #expect(stop.stderr.contains("LogBroker stopped"))
        }
    }

    @Test func theBinaryRefusesABadConfigurationWithStatus1() async throws {
        let binary = BrokerProcess.binary
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("logbroker-bad-config-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("server.properties")
        try "node.id=1\nlog.segment.byte=100\n".write(to: config, atomically: true, encoding: .utf8)
        let result = try await Self.run([binary.path, config.path])
        #expect(result.status == 1)
        #expect(
            result.output
                == "logbroker-server: \(config.path): Unknown configuration \"log.segment.byte\"; did you mean "
                + "\"log.segment.bytes\"?\n"
        )
    }
}
