import Foundation

/// Generates `Sources/KafkaMessages/Generated/` from the vendored definitions and the allowlist.
///
/// Reads only files inside the package (`Sources/KafkaMessages/allowlist.txt` and `Definitions/`), so a clean
/// clone regenerates byte-identically. A value; each call reads the files afresh.
public struct MessageGenerator: Sendable {
    public let packageRoot: URL

    public init(packageRoot: URL) {
        self.packageRoot = packageRoot
    }

    public var messagesDirectory: URL {
        self.packageRoot.appendingPathComponent("Sources/KafkaMessages", isDirectory: true)
    }

    public var definitionsDirectory: URL {
        self.messagesDirectory.appendingPathComponent("Definitions", isDirectory: true)
    }

    public var generatedDirectory: URL {
        self.messagesDirectory.appendingPathComponent("Generated", isDirectory: true)
    }

    /// The allowlisted names, in file order, without comments and blank lines.
    public func allowlist() throws(GeneratorError) -> [String] {
        let url = self.messagesDirectory.appendingPathComponent("allowlist.txt")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { throw .missingFile("allowlist.txt") }
        return text.split(separator: "\n").compactMap { line in
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let name = String(content).trimmingSpaces
            return name.isEmpty ? nil : name
        }
    }

    /// Every allowlisted definition, parsed, in allowlist order.
    public func loadSchemas() throws(GeneratorError) -> [MessageSchema] {
        var schemas: [MessageSchema] = []
        for name in try self.allowlist() {
            var found = false
            for relative in ["\(name).json", "internal/\(name).json"] {
                let url = self.definitionsDirectory.appendingPathComponent(relative)
                guard let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
                let schema = try SchemaParser.parse(text, fileName: relative)
                guard schema.name == name else {
                    throw .invalidSchema("\(relative) defines \(schema.name), not \(name)")
                }
                schemas.append(schema)
                found = true
                break
            }
            if !found { throw .missingFile("Definitions/\(name).json") }
        }
        return schemas
    }

    /// Every generated file's name (inside `Generated/`) and contents.
    public func generate() throws(GeneratorError) -> [String: String] {
        try Self.generate(schemas: try self.loadSchemas())
    }

    public static func generate(schemas: [MessageSchema]) throws(GeneratorError) -> [String: String] {
        var files: [String: String] = [:]
        for schema in schemas {
            var emitter = SwiftEmitter(schema: schema)
            do {
                files["\(schema.name).swift"] = try emitter.emitFile()
            } catch {
                throw error.inFile(schema.fileName)
            }
        }
        files["KafkaMessageRegistry.swift"] = try RegistryEmitter.emit(schemas)
        return files
    }

    /// Names of files in `Generated/` that generation would add, change or remove, sorted.
    public func staleFiles() throws(GeneratorError) -> [String] {
        let expected = try self.generate()
        let existing = self.existingGeneratedFiles()
        var stale: [String] = []
        for name in Set(expected.keys).union(existing).sorted() {
            let url = self.generatedDirectory.appendingPathComponent(name)
            let current = try? Data(contentsOf: url)
            if current != expected[name].map({ Data($0.utf8) }) { stale.append(name) }
        }
        return stale
    }

    /// Writes every generated file that differs and removes `.swift` files no longer generated; returns the
    /// names it touched.
    @discardableResult
    public func write() throws(GeneratorError) -> [String] {
        let expected = try self.generate()
        let stale = try self.staleFiles()
        let manager = FileManager.default
        do {
            try manager.createDirectory(at: self.generatedDirectory, withIntermediateDirectories: true)
            for name in stale {
                let url = self.generatedDirectory.appendingPathComponent(name)
                if let contents = expected[name] {
                    try Data(contents.utf8).write(to: url, options: .atomic)
                } else {
                    try manager.removeItem(at: url)
                }
            }
        } catch {
            throw .missingFile("cannot write \(self.generatedDirectory.path): \(error)")
        }
        return stale
    }

    private func existingGeneratedFiles() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.generatedDirectory.path)) ?? []
        return names.filter { $0.hasSuffix(".swift") }
    }
}

/// Writes `Generated/KafkaMessageRegistry.swift`: every type by name and the table of APIs.
enum RegistryEmitter {
    static func emit(_ schemas: [MessageSchema]) throws(GeneratorError) -> String {
        var lines: [String] = [
            "// Generated by kafka-message-gen from allowlist.txt. Do not edit.",
            "",
            "import KafkaWire",
            "",
            "public enum KafkaMessageRegistry {",
            "    /// Every generated message type, by its JSON name.",
            "    public static let messageTypes: [String: any KafkaMessage.Type] = [",
        ]
        for schema in schemas.sorted(by: { $0.name < $1.name }) {
            lines.append("        \"\(schema.name)\": \(schema.name).self,")
        }
        lines += [
            "    ]",
            "",
            "    /// Every API whose request and response are generated, in API key order.",
            "    public static let apis: [KafkaAPI] = [",
        ]
        let requests = schemas.filter { $0.kind == .request }
        var entries: [(Int16, [String])] = []
        for request in requests {
            let base = String(request.name.dropLast("Request".count))
            guard let response = schemas.first(where: { $0.name == base + "Response" }) else {
                throw .invalidSchema("\(request.name) is allowlisted without \(base)Response")
            }
            guard let apiKey = request.apiKey, response.apiKey == apiKey else {
                throw .invalidSchema("\(request.name) and \(response.name) disagree on apiKey")
            }
            guard request.validVersions == response.validVersions,
                request.flexibleVersions == response.flexibleVersions
            else {
                throw .invalidSchema("\(request.name) and \(response.name) disagree on versions")
            }
            let valid = request.validVersions
            let flexible = request.flexibleVersions.isEmpty ? "nil" : "\(request.flexibleVersions.lowest)"
            // KIP-511: ApiVersions responses always use response header v0, so that a client can parse the
            // error of a version it sent but the broker does not know.
            let alwaysV0 = apiKey == 18
            entries.append(
                (
                    apiKey,
                    [
                        "        KafkaAPI(",
                        "            apiKey: .\(SwiftEmitter.apiKeyName(request)),",
                        "            requestType: \(request.name).self,",
                        "            responseType: \(response.name).self,",
                        "            validVersions: \(valid.lowest)...\(valid.highest),",
                        "            firstFlexibleVersion: \(flexible),",
                        "            responseHeaderIsAlwaysV0: \(alwaysV0)",
                        "        ),",
                    ]
                )
            )
        }
        for (_, entry) in entries.sorted(by: { $0.0 < $1.0 }) {
            lines += entry
        }
        lines += ["    ]", "}"]
        return lines.joined(separator: "\n") + "\n"
    }
}
