import Foundation

/// Turns Kafka's JSON message definitions into `MessageSchema` values.
///
/// Kafka's JSON allows `//` comment lines, which `JSONSerialization` does not; they are removed first. In the
/// definitions only whole lines are comments (text after `//` inside strings, such as URLs, stays untouched).
public enum SchemaParser {
    /// Parses one definition. `fileName` is the path relative to `Definitions/`, used in messages and headers.
    public static func parse(_ text: String, fileName: String) throws(GeneratorError) -> MessageSchema {
        do {
            return try self.parseUncaught(text, fileName: fileName)
        } catch {
            throw error.inFile(fileName)
        }
    }

    static func stripComments(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.trimmingPrefix(while: \.isWhitespace).hasPrefix("//") }
            .joined(separator: "\n")
    }

    private static func parseUncaught(_ text: String, fileName: String) throws(GeneratorError) -> MessageSchema {
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(self.stripComments(text).utf8))
        } catch {
            throw .invalidSchema("not JSON: \(error)")
        }
        guard let object = json as? [String: Any] else { throw .invalidSchema("top level is not an object") }
        guard let name = object["name"] as? String else { throw .invalidSchema("no name") }
        guard let kindText = object["type"] as? String, let kind = MessageKind(rawValue: kindText) else {
            throw .invalidSchema("unknown message type \(object["type"] ?? "nil")")
        }
        let validVersions = try VersionRange(parsing: try self.string(object, "validVersions"))
        let flexibleVersions = try VersionRange(parsing: try self.string(object, "flexibleVersions"))
        var apiKey: Int16?
        if let key = object["apiKey"] {
            guard let number = key as? NSNumber else { throw .invalidSchema("apiKey is not a number") }
            apiKey = number.int16Value
        }

        var structs: [StructSchema] = []
        var pendingReferences: [String] = []
        let fields = try self.parseFields(object["fields"], structs: &structs, references: &pendingReferences)
        if let common = object["commonStructs"] as? [[String: Any]] {
            for entry in common {
                guard let structName = entry["name"] as? String else {
                    throw .invalidSchema("common struct without name")
                }
                try self.declare(StructSchema(name: structName, fields: []), in: &structs)
                let index = structs.count - 1
                structs[index].fields = try self.parseFields(
                    entry["fields"],
                    structs: &structs,
                    references: &pendingReferences
                )
            }
        }
        for reference in pendingReferences where !structs.contains(where: { $0.name == reference }) {
            throw .invalidSchema("struct \(reference) is used but never declared")
        }
        return MessageSchema(
            name: name,
            fileName: fileName,
            kind: kind,
            apiKey: apiKey,
            validVersions: validVersions,
            flexibleVersions: flexibleVersions,
            fields: fields,
            structs: structs
        )
    }

    private static func declare(_ schema: StructSchema, in structs: inout [StructSchema]) throws(GeneratorError) {
        guard !structs.contains(where: { $0.name == schema.name }) else {
            throw .invalidSchema("struct \(schema.name) is declared twice")
        }
        structs.append(schema)
    }

    private static func parseFields(
        _ value: Any?,
        structs: inout [StructSchema],
        references: inout [String]
    ) throws(GeneratorError) -> [FieldSchema] {
        guard let value else { return [] }
        guard let entries = value as? [[String: Any]] else { throw .invalidSchema("fields is not an array of objects") }
        var fields: [FieldSchema] = []
        for entry in entries {
            fields.append(try self.parseField(entry, structs: &structs, references: &references))
        }
        return fields
    }

    private static func parseField(
        _ entry: [String: Any],
        structs: inout [StructSchema],
        references: inout [String]
    ) throws(GeneratorError) -> FieldSchema {
        let name = try self.string(entry, "name")
        let type = FieldType(parsing: try self.string(entry, "type"))
        let versions = try VersionRange(parsing: try self.string(entry, "versions"))
        let nullableVersions =
            try (entry["nullableVersions"] as? String).map { (text) throws(GeneratorError) in
                try VersionRange(parsing: text)
            } ?? .none
        let taggedVersions =
            try (entry["taggedVersions"] as? String).map { (text) throws(GeneratorError) in
                try VersionRange(parsing: text)
            } ?? .none
        let flexibleVersions = try (entry["flexibleVersions"] as? String).map { (text) throws(GeneratorError) in
            try VersionRange(parsing: text)
        }
        var tag: UInt32?
        if let rawTag = entry["tag"] {
            if let text = rawTag as? String, let number = UInt32(text) {
                tag = number
            } else if let number = rawTag as? NSNumber {
                tag = number.uint32Value
            } else {
                throw .invalidSchema("field \(name) has an invalid tag")
            }
        }
        guard (tag == nil) == taggedVersions.isEmpty else {
            throw .invalidSchema("field \(name) must have both tag and taggedVersions, or neither")
        }
        guard taggedVersions.isEmpty || taggedVersions.highest == .max else {
            throw .invalidSchema("field \(name): taggedVersions must be open-ended")
        }
        var defaultValue: String?
        if let rawDefault = entry["default"] {
            if let text = rawDefault as? String {
                defaultValue = text
            } else if let number = rawDefault as? NSNumber {
                defaultValue = number.stringValue
            } else {
                throw .invalidSchema("field \(name) has an invalid default")
            }
        }
        if !nullableVersions.isEmpty, !type.canBeNullable {
            throw .unsupported("field \(name): nullable \(type) fields")
        }

        var elementType = type
        if case .array(let inner) = type { elementType = inner }
        if case .array = elementType { throw .unsupported("field \(name): arrays of arrays") }
        if case .structure(let structName) = elementType {
            if let nested = entry["fields"] {
                // Declared before its own nested structs, so the output lists structures top-down.
                try self.declare(StructSchema(name: structName, fields: []), in: &structs)
                let index = structs.count - 1
                structs[index].fields = try self.parseFields(nested, structs: &structs, references: &references)
            } else {
                references.append(structName)
            }
        }
        return FieldSchema(
            name: name,
            type: type,
            versions: versions,
            nullableVersions: nullableVersions,
            taggedVersions: taggedVersions,
            tag: tag,
            flexibleVersions: flexibleVersions,
            defaultValue: defaultValue,
            ignorable: entry["ignorable"] as? Bool ?? false
        )
    }

    private static func string(_ object: [String: Any], _ key: String) throws(GeneratorError) -> String {
        guard let value = object[key] as? String else { throw .invalidSchema("missing \"\(key)\"") }
        return value
    }
}
