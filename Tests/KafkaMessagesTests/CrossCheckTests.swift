import Foundation
import KafkaMessages
import KafkaWire
import NIOCore
import Testing

/// Cross-checks the generated codecs against kafka-python 3.0.x, an independent implementation built from
/// Kafka 4.x's JSON schemas: kafka-python encodes random messages, we decode and re-encode each one and must
/// reproduce its bytes exactly, and then kafka-python decodes our bytes and must reproduce its original
/// encoding. `Tests/CrossCheck/kafka_python_crosscheck.py` documents the one known exception (ApiVersionsResponse
/// error codes above v0).
///
/// This test fails, never skips, when python3 or kafka-python is missing: the project's test command installs
/// them (`pip install kafka-python==3.0.12`).
@Suite struct CrossCheckTests {
    static let script = packageRoot.appendingPathComponent("Tests/CrossCheck/kafka_python_crosscheck.py")

    /// Runs `python3 script arguments…` found through PATH; returns the exit status and combined output.
    static func runPython(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.script.path] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func bytes(fromHex hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var result: [UInt8] = []
        result.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let byte = UInt8(String(decoding: digits[index...index + 1], as: UTF8.self), radix: 16) else {
                return nil
            }
            result.append(byte)
            index += 2
        }
        return result
    }

    @Test func kafkaPythonAgreesWithGeneratedCodecs() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("logbroker-crosscheck-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let original = directory.appendingPathComponent("kafka-python.jsonl")
        let ours = directory.appendingPathComponent("logbroker.jsonl")

        let generated = try Self.runPython(["generate", original.path])
        try #require(
            generated.status == 0,
            "kafka-python generate failed (is kafka-python installed?):\n\(generated.output)"
        )

        var lines: [String] = []
        var checked = 0
        var names = Set<String>()
        let text = try String(contentsOf: original, encoding: .utf8)
        for line in text.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
            let record = try #require(object as? [String: Any])
            let id = try #require(record["id"] as? Int)
            let name = try #require(record["name"] as? String)
            let versionNumber = try #require(record["version"] as? Int)
            let version = Int16(versionNumber)
            let hexText = try #require(record["hex"] as? String)
            let bytes = try #require(Self.bytes(fromHex: hexText))
            let type = try #require(KafkaMessageRegistry.messageTypes[name], "\(name) is not generated")
            do {
                let again = try reencode(type, bytes, version: version)
                if again != bytes {
                    Issue.record("\(name) v\(version): kafka-python \(hex(bytes)), LogBroker \(hex(again))")
                }
                let out: [String: Any] = ["id": id, "name": name, "version": Int(version), "hex": hex(again)]
                lines.append(String(decoding: try JSONSerialization.data(withJSONObject: out), as: UTF8.self))
            } catch {
                Issue.record("\(name) v\(version): cannot decode kafka-python's \(hex(bytes)): \(error)")
            }
            checked += 1
            names.insert(name)
        }
        #expect(checked > 1000, "too few encodings from kafka-python: \(checked)")
        #expect(names.count >= 60, "kafka-python covered only \(names.count) messages")

        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: ours)
        let verified = try Self.runPython(["verify", ours.path, original.path])
        if verified.status != 0 {
            let mismatches = verified.output.split(separator: "\n").filter { $0.hasPrefix("MISMATCH") }
            for mismatch in mismatches { Issue.record(Comment(rawValue: String(mismatch))) }
            Issue.record("kafka-python verify failed:\n\(verified.output.suffix(2000))")
        }
    }
}
