/// Writes the Swift source of one generated message file.
///
/// The output depends only on the schema, in declaration order, so generating twice gives identical bytes.
/// No prose from the JSON (`about` texts) is copied into the code. A value used by one call at a time.
struct SwiftEmitter {
    private let schema: MessageSchema
    private var lines: [String] = []
    private var depth = 0

    /// The versions in which the structure being emitted can occur: the message's valid versions for the root,
    /// the versions of the fields that hold it for a nested structure. Conditions are written relative to it.
    private var scope: VersionRange
    private let scopes: [String: VersionRange]

    /// The expression that says whether `version` is flexible in `scope`: `true`, `false` or `flexible`.
    private var flexibleExpression: String {
        switch Self.condition(self.schema.flexibleVersions, within: self.scope) {
        case nil: "true"
        case "false": "false"
        default: "flexible"
        }
    }

    static let maximumLineLength = 120

    init(schema: MessageSchema) {
        self.schema = schema
        self.scope = schema.validVersions
        self.scopes = Self.structScopes(schema)
    }

    /// For each nested structure, the hull of the versions in which some field holding it is present.
    static func structScopes(_ schema: MessageSchema) -> [String: VersionRange] {
        var scopes: [String: VersionRange] = [:]
        func visit(_ structure: StructSchema, scope: VersionRange) {
            for field in structure.fields {
                var element = field.type
                if case .array(let inner) = element { element = inner }
                guard case .structure(let name) = element, let nested = schema.structNamed(name) else { continue }
                let presence = field.versions.intersection(scope)
                guard !presence.isEmpty else { continue }
                let previous = scopes[name]
                let hull =
                    previous.map {
                        VersionRange(
                            lowest: min($0.lowest, presence.lowest),
                            highest: max($0.highest, presence.highest)
                        )
                    } ?? presence
                if hull != previous {
                    scopes[name] = hull
                    visit(nested, scope: hull)
                }
            }
        }
        visit(schema.root, scope: schema.validVersions)
        return scopes
    }

    // MARK: Output

    private mutating func line(_ text: String = "") {
        self.lines.append(text.isEmpty ? "" : String(repeating: " ", count: 4 * self.depth) + text)
    }

    private mutating func open(_ opening: String) {
        self.line(opening + " {")
        self.depth += 1
    }

    private mutating func close() {
        self.depth -= 1
        self.line("}")
    }

    /// A call, on one line if it fits, else with one argument per line.
    private mutating func call(_ head: String, _ arguments: [String], tail: String = "") {
        let single = "\(head)(\(arguments.joined(separator: ", ")))\(tail)"
        if 4 * self.depth + single.count <= Self.maximumLineLength || arguments.isEmpty {
            self.line(single)
            return
        }
        self.line("\(head)(")
        self.depth += 1
        for (index, argument) in arguments.enumerated() {
            self.line(argument + (index == arguments.count - 1 ? "" : ","))
        }
        self.depth -= 1
        self.line(")\(tail)")
    }

    // MARK: Versions

    /// A Swift condition that is true exactly for the versions of `range` inside `within`; nil when it is true
    /// for all of them, `"false"` when for none.
    static func condition(_ range: VersionRange, within: VersionRange) -> String? {
        let inside = range.intersection(within)
        if inside.isEmpty { return "false" }
        let low = inside.lowest > within.lowest ? inside.lowest : nil
        let high = inside.highest < within.highest ? inside.highest : nil
        switch (low, high) {
        case (nil, nil): return nil
        case (let low?, nil): return "version >= \(low)"
        case (nil, let high?): return "version <= \(high)"
        case (let low?, let high?): return low == high ? "version == \(low)" : "version >= \(low) && version <= \(high)"
        }
    }

    /// The flexible versions that decide a field's compact encoding.
    private func flexibleVersions(of field: FieldSchema) -> VersionRange {
        field.flexibleVersions ?? self.schema.flexibleVersions
    }

    private func compactExpression(_ field: FieldSchema, within presence: VersionRange) -> String {
        if field.flexibleVersions == nil { return self.flexibleExpression }
        return Self.condition(self.flexibleVersions(of: field), within: presence) ?? "true"
    }

    // MARK: Types and defaults

    func isOptional(_ field: FieldSchema) -> Bool {
        field.type == .records || !field.nullableVersions.isEmpty
    }

    static func baseType(_ type: FieldType) -> String {
        switch type {
        case .bool: "Bool"
        case .int8: "Int8"
        case .int16: "Int16"
        case .uint16: "UInt16"
        case .int32: "Int32"
        case .uint32: "UInt32"
        case .int64: "Int64"
        case .float64: "Double"
        case .string: "String"
        case .bytes, .records: "ByteBuffer"
        case .uuid: "KafkaUUID"
        case .structure(let name): name
        case .array(let element): "[\(Self.baseType(element))]"
        }
    }

    func swiftType(_ field: FieldSchema) -> String {
        Self.baseType(field.type) + (self.isOptional(field) ? "?" : "")
    }

    func defaultExpression(_ field: FieldSchema) throws(GeneratorError) -> String {
        let text = field.defaultValue?.trimmingSpaces
        if text == "null" {
            guard self.isOptional(field) else {
                throw .invalidSchema("field \(field.name): null default but not nullable")
            }
            return "nil"
        }
        switch field.type {
        case .bool:
            guard let text, !text.isEmpty else { return "false" }
            guard text == "true" || text == "false" else {
                throw .invalidSchema("field \(field.name): bad bool default")
            }
            return text
        case .int8, .int16, .uint16, .int32, .uint32, .int64:
            guard let text, !text.isEmpty else { return "0" }
            return String(try Self.integerDefault(text, type: field.type, field: field.name))
        case .float64:
            guard let text, !text.isEmpty else { return "0.0" }
            guard let value = Double(text), value.isFinite else {
                throw .invalidSchema("field \(field.name): bad float64 default")
            }
            return "\(value)"
        case .string:
            guard let text else { return "\"\"" }
            return "\"" + Self.escapedStringLiteral(text) + "\""
        case .bytes:
            guard text == nil || text == "" else { throw .unsupported("field \(field.name): bytes default") }
            return "ByteBuffer()"
        case .records:
            return "nil"
        case .uuid:
            guard text == nil || text == "" else { throw .unsupported("field \(field.name): uuid default") }
            return "KafkaUUID.zero"
        case .structure(let name):
            guard text == nil else { throw .unsupported("field \(field.name): struct default") }
            return "\(name)()"
        case .array:
            guard text == nil || text == "" else { throw .unsupported("field \(field.name): array default") }
            return "[]"
        }
    }

    static func integerDefault(_ text: String, type: FieldType, field: String) throws(GeneratorError) -> Int64 {
        var body = Substring(text)
        let negative = body.hasPrefix("-")
        if negative { body = body.dropFirst() }
        let magnitude: UInt64?
        if body.hasPrefix("0x") || body.hasPrefix("0X") {
            magnitude = UInt64(body.dropFirst(2), radix: 16)
        } else if body.count > 1, body.hasPrefix("0") {
            magnitude = UInt64(body.dropFirst(), radix: 8)
        } else {
            magnitude = UInt64(body)
        }
        guard let magnitude, magnitude <= UInt64(Int64.max) + (negative ? 1 : 0) else {
            throw .invalidSchema("field \(field): bad integer default \(text)")
        }
        let value = negative ? Int64(bitPattern: 0 &- magnitude) : Int64(magnitude)
        let range: ClosedRange<Int64> =
            switch type {
            case .int8: Int64(Int8.min)...Int64(Int8.max)
            case .int16: Int64(Int16.min)...Int64(Int16.max)
            case .uint16: 0...Int64(UInt16.max)
            case .int32: Int64(Int32.min)...Int64(Int32.max)
            case .uint32: 0...Int64(UInt32.max)
            default: Int64.min...Int64.max
            }
        guard range.contains(value) else { throw .invalidSchema("field \(field): default \(text) out of range") }
        return value
    }

    static func escapedStringLiteral(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            default:
                if scalar.value < 0x20 {
                    result += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result
    }

    // MARK: Sizes

    /// The fewest bytes one value can take at `version`, so a declared array count can be checked against the
    /// bytes left before anything is reserved.
    func minimumSize(of type: FieldType, version: Int16, compact: Bool) -> Int {
        switch type {
        case .bool, .int8: 1
        case .int16, .uint16: 2
        case .int32, .uint32: 4
        case .int64, .float64: 8
        case .uuid: 16
        case .string: compact ? 1 : 2
        case .bytes, .records, .array: compact ? 1 : 4
        case .structure(let name): self.schema.structNamed(name).map { self.minimumSize(of: $0, version: version) } ?? 0
        }
    }

    func minimumSize(of structure: StructSchema, version: Int16) -> Int {
        var size = self.schema.flexibleVersions.contains(version) ? 1 : 0
        for field in structure.fields where field.regularVersions.contains(version) {
            let compact = self.flexibleVersions(of: field).contains(version)
            size += self.minimumSize(of: field.type, version: version, compact: compact)
        }
        return size
    }

    /// The smallest element of an array field over every version in which the field is present.
    func minimumElementSize(_ field: FieldSchema, element: FieldType) -> Int {
        let presence = field.versions.intersection(self.scope)
        let sizes = presence.versions.map { version in
            self.minimumSize(of: element, version: version, compact: self.flexibleVersions(of: field).contains(version))
        }
        return sizes.min() ?? 0
    }

    // MARK: Reading and writing expressions

    private func readCall(
        _ field: FieldSchema,
        nullable: Bool,
        compact: String,
        reader: String
    ) -> (head: String, arguments: [String], closure: String?) {
        switch field.type {
        case .array(let element):
            let minimum = "minimumElementSize: \(self.minimumElementSize(field, element: element))"
            let method = nullable ? "readNullableArray" : "readArray"
            if case .structure(let name) = element {
                return (
                    "try \(reader).\(method)",
                    ["of: \(name).self", "version: version", "compact: \(compact)", minimum], nil
                )
            }
            let elementRead = Self.primitiveRead(element, nullable: false, compact: compact, reader: "reader")
            return (
                "try \(reader).\(method)", ["compact: \(compact)", minimum],
                "(reader: inout WireReader) throws(WireError) in \(elementRead)"
            )
        case .structure(let name):
            return ("try \(name)", ["from: &\(reader)", "version: version"], nil)
        default:
            let expression = Self.primitiveRead(field.type, nullable: nullable, compact: compact, reader: reader)
            return (expression, [], nil)
        }
    }

    static func primitiveRead(_ type: FieldType, nullable: Bool, compact: String, reader: String) -> String {
        switch type {
        case .bool: "try \(reader).readBool()"
        case .int8: "try \(reader).readInt8()"
        case .int16: "try \(reader).readInt16()"
        case .uint16: "try \(reader).readUInt16()"
        case .int32: "try \(reader).readInt32()"
        case .uint32: "try \(reader).readUInt32()"
        case .int64: "try \(reader).readInt64()"
        case .float64: "try \(reader).readFloat64()"
        case .uuid: "try \(reader).readUUID()"
        case .string: "try \(reader).read\(nullable ? "Nullable" : "")String(compact: \(compact))"
        case .bytes: "try \(reader).read\(nullable ? "Nullable" : "")Bytes(compact: \(compact))"
        case .records: "try \(reader).readRecords(compact: \(compact))"
        case .structure, .array: preconditionFailure("not a primitive")
        }
    }

    static func primitiveWrite(_ type: FieldType, value: String, nullable: Bool, compact: String, writer: String)
        -> String
    {
        switch type {
        case .bool: "\(writer).writeBool(\(value))"
        case .int8: "\(writer).writeInt8(\(value))"
        case .int16: "\(writer).writeInt16(\(value))"
        case .uint16: "\(writer).writeUInt16(\(value))"
        case .int32: "\(writer).writeInt32(\(value))"
        case .uint32: "\(writer).writeUInt32(\(value))"
        case .int64: "\(writer).writeInt64(\(value))"
        case .float64: "\(writer).writeFloat64(\(value))"
        case .uuid: "\(writer).writeUUID(\(value))"
        case .string: "\(writer).write\(nullable ? "Nullable" : "")String(\(value), compact: \(compact))"
        case .bytes: "\(writer).write\(nullable ? "Nullable" : "")Bytes(\(value), compact: \(compact))"
        case .records: "\(writer).writeRecords(\(value), compact: \(compact))"
        case .structure, .array: preconditionFailure("not a primitive")
        }
    }

    /// Emits the statements that read `field` into `self.<name>` at versions in `presence`.
    /// Emits `emitOne(nullable:)` for a field that is nullable at every version (`nil`), at none (`"false"`), or only
    /// where `condition` holds (both forms, behind an `if`).
    private mutating func emitNullable(_ condition: String?, _ emitOne: (inout Self, Bool) -> Void) {
        switch condition {
        case nil: emitOne(&self, true)
        case "false": emitOne(&self, false)
        case let condition?:
            self.line("if \(condition) {")
            self.depth += 1
            emitOne(&self, true)
            self.depth -= 1
            self.line("} else {")
            self.depth += 1
            emitOne(&self, false)
            self.depth -= 1
            self.line("}")
        }
    }

    /// Emits `body` for the versions of `valid` that carry `field`, inside `if <condition> {` unless that is all of
    /// them; nothing if none does.
    private mutating func emitPresent(
        _ field: FieldSchema,
        within valid: VersionRange,
        _ body: (inout Self, VersionRange) -> Void
    ) {
        let presence = field.regularVersions.intersection(valid)
        guard !presence.isEmpty else { return }
        guard let condition = Self.condition(presence, within: valid) else { return body(&self, presence) }
        self.line("if \(condition) {")
        self.depth += 1
        body(&self, presence)
        self.depth -= 1
        self.line("}")
    }

    private mutating func emitRead(_ field: FieldSchema, presence: VersionRange, reader: String) {
        let target = "self." + Naming.escaped(Naming.fieldName(field.name))
        let compact = self.compactExpression(field, within: presence)
        let nullableCondition = Self.condition(field.nullableVersions, within: presence)
        let emitOne = { (emitter: inout SwiftEmitter, nullable: Bool) in
            let (head, arguments, closure) = emitter.readCall(
                field,
                nullable: nullable,
                compact: compact,
                reader: reader
            )
            if arguments.isEmpty && closure == nil {
                emitter.line("\(target) = \(head)")
            } else if let closure {
                emitter.call("\(target) = \(head)", arguments, tail: " {")
                emitter.depth += 1
                emitter.line(closure)
                emitter.depth -= 1
                emitter.line("}")
            } else {
                emitter.call("\(target) = \(head)", arguments)
            }
        }
        self.emitNullable(nullableCondition, emitOne)
    }

    /// Emits the statements that write `self.<name>` at versions in `presence`.
    private mutating func emitWrite(_ field: FieldSchema, presence: VersionRange, writer: String) {
        let value = "self." + Naming.escaped(Naming.fieldName(field.name))
        let compact = self.compactExpression(field, within: presence)
        let nullableCondition = Self.condition(field.nullableVersions, within: presence)
        let optional = self.isOptional(field)
        let emitOne = { (emitter: inout SwiftEmitter, nullable: Bool) in
            switch field.type {
            case .structure:
                emitter.line("\(value).encode(into: &\(writer), version: version)")
            case .array(let element):
                let method = nullable ? "writeNullableArray" : "writeArray"
                let array = optional && !nullable ? "\(value) ?? []" : value
                if case .structure = element {
                    emitter.call("\(writer).\(method)", [array, "version: version", "compact: \(compact)"])
                } else {
                    let write = Self.primitiveWrite(
                        element,
                        value: "$1",
                        nullable: false,
                        compact: compact,
                        writer: "$0"
                    )
                    emitter.call("\(writer).\(method)", [array, "compact: \(compact)"], tail: " { \(write) }")
                }
            case .records:
                emitter.line(
                    Self.primitiveWrite(field.type, value: value, nullable: true, compact: compact, writer: writer)
                )
            default:
                var argument = value
                if optional && !nullable {
                    argument = "\(value) ?? " + (field.type == .string ? "\"\"" : "ByteBuffer()")
                }
                emitter.line(
                    Self.primitiveWrite(
                        field.type,
                        value: argument,
                        nullable: nullable,
                        compact: compact,
                        writer: writer
                    )
                )
            }
        }
        self.emitNullable(nullableCondition, emitOne)
    }

    // MARK: Structures

    private func taggedFields(of structure: StructSchema) -> [FieldSchema] {
        let tagged = structure.fields.filter {
            $0.tag != nil && !$0.taggedPresence.intersection(self.scope).isEmpty
        }
        return tagged.enumerated().sorted { ($0.element.tag!, $0.offset) < ($1.element.tag!, $1.offset) }.map(\.element)
    }

    private mutating func emitStructBody(_ structure: StructSchema, isRoot: Bool) throws(GeneratorError) {
        self.scope = isRoot ? self.schema.validVersions : (self.scopes[structure.name] ?? .none)
        let valid = self.scope
        let fields = structure.fields
        // Stored properties, each with its JSON default.
        for field in fields {
            let name = Naming.escaped(Naming.fieldName(field.name))
            self.line("public var \(name): \(self.swiftType(field)) = \(try self.defaultExpression(field))")
        }
        if !fields.isEmpty { self.line() }

        // Memberwise initializer with the same defaults.
        if fields.isEmpty {
            self.line("public init() {}")
        } else {
            var parameters: [String] = []
            for field in fields {
                let name = Naming.escaped(Naming.fieldName(field.name))
                parameters.append("\(name): \(self.swiftType(field)) = \(try self.defaultExpression(field))")
            }
            self.call("public init", parameters, tail: " {")
            self.depth += 1
            for field in fields {
                let name = Naming.escaped(Naming.fieldName(field.name))
                self.line("self.\(name) = \(name)")
            }
            self.depth -= 1
            self.line("}")
        }
        self.line()

        let usesFlexible = self.flexibleExpression == "flexible"
        let tagged = self.taggedFields(of: structure)

        // Decoding.
        self.open("public init(from reader: inout WireReader, version: Int16) throws(WireError)")
        do {
            var emitter = self
            defer { self = emitter }
            if isRoot {
                emitter.line("guard Self.validVersions.contains(version) else {")
                emitter.line("    throw .unsupportedVersion(\"\(emitter.schema.name)\", version: version)")
                emitter.line("}")
            }
            if usesFlexible {
                emitter.line("let flexible = \(Self.condition(emitter.schema.flexibleVersions, within: valid)!)")
            }
            for field in fields {
                emitter.emitPresent(field, within: valid) { $0.emitRead(field, presence: $1, reader: "reader") }
            }
            emitter.emitTaggedRead(tagged)
        }
        self.close()
        self.line()

        // Encoding.
        self.line("public func encode(into writer: inout WireWriter, version: Int16) {")
        self.depth += 1
        if isRoot {
            self.line(
                "assert(Self.validVersions.contains(version), \"\(self.schema.name) has no version \\(version)\")"
            )
        }
        if usesFlexible {
            self.line("let flexible = \(Self.condition(self.schema.flexibleVersions, within: valid)!)")
        }
        for field in fields {
            self.emitPresent(field, within: valid) { $0.emitWrite(field, presence: $1, writer: "writer") }
        }
        try self.emitTaggedWrite(tagged)
        self.depth -= 1
        self.line("}")
    }

    /// Opens `if flexible {` unless flexibility is constant; returns false if no tag section exists at all.
    private mutating func openFlexible() -> Bool {
        switch self.flexibleExpression {
        case "false": return false
        case "true": return true
        default:
            self.line("if flexible {")
            self.depth += 1
            return true
        }
    }

    private mutating func closeFlexible() {
        if self.flexibleExpression == "flexible" {
            self.depth -= 1
            self.line("}")
        }
    }

    private mutating func emitTaggedRead(_ tagged: [FieldSchema]) {
        guard self.openFlexible() else { return }
        if tagged.isEmpty {
            self.line("try reader.skipTaggedFields()")
        } else {
            self.line("for _ in 0..<(try reader.readTaggedFieldCount()) {")
            self.depth += 1
            self.line("var taggedField = try reader.readTaggedField()")
            self.line("switch taggedField.tag {")
            for field in tagged {
                let presence = field.taggedPresence.intersection(self.scope)
                let condition = Self.condition(presence, within: self.scope).map { " where \($0)" } ?? ""
                self.line("case \(field.tag!)\(condition):")
                self.depth += 1
                self.emitRead(field, presence: presence, reader: "taggedField.value")
                self.line("try taggedField.value.expectEnd()")
                self.depth -= 1
            }
            self.line("default:")
            self.line("    break")
            self.line("}")
            self.depth -= 1
            self.line("}")
        }
        self.closeFlexible()
    }

    private mutating func emitTaggedWrite(_ tagged: [FieldSchema]) throws(GeneratorError) {
        guard self.openFlexible() else { return }
        if tagged.isEmpty {
            self.line("writer.writeEmptyTaggedFields()")
        } else {
            // Kafka writes a tagged field only when it differs from its default; clients such as librdkafka
            // 2.0.2 mis-skip default-valued tags, so writing them would break them.
            self.line("var taggedFieldCount: UInt32 = 0")
            var flags: [String] = []
            for field in tagged {
                let name = Naming.fieldName(field.name)
                let flag = "writes" + name.prefix(1).uppercased() + name.dropFirst()
                flags.append(flag)
                let presence = field.taggedPresence.intersection(self.scope)
                let differs = "self.\(Naming.escaped(name)) != \(try self.defaultExpression(field))"
                let condition = Self.condition(presence, within: self.scope).map { "\($0) && " } ?? ""
                self.line("let \(flag) = \(condition)\(differs)")
                self.line("if \(flag) { taggedFieldCount += 1 }")
            }
            self.line("writer.writeUnsignedVarint(taggedFieldCount)")
            for (field, flag) in zip(tagged, flags) {
                let presence = field.taggedPresence.intersection(self.scope)
                self.line("if \(flag) {")
                self.depth += 1
                self.line("writer.writeTaggedField(tag: \(field.tag!)) { writer in")
                self.depth += 1
                self.emitWrite(field, presence: presence, writer: "writer")
                self.depth -= 1
                self.line("}")
                self.depth -= 1
                self.line("}")
            }
        }
        self.closeFlexible()
    }

    // MARK: Files

    mutating func emitFile() throws(GeneratorError) -> String {
        let schema = self.schema
        self.line("// Generated by kafka-message-gen from \(schema.fileName). Do not edit.")
        self.line()
        self.line("import KafkaWire")
        self.line("import NIOCore")
        self.line()
        let conformance: String
        switch schema.kind {
        case .request: conformance = "KafkaRequest"
        case .response: conformance = "KafkaResponse"
        case .header, .data: conformance = "KafkaMessage"
        }
        self.open("public struct \(schema.name): \(conformance), Hashable, Sendable")
        do {
            var emitter = self
            defer { self = emitter }
            if schema.kind == .request {
                let responseName = String(schema.name.dropLast("Request".count)) + "Response"
                emitter.line("public typealias Response = \(responseName)")
            }
            if schema.kind == .request || schema.kind == .response {
                guard let apiKey = schema.apiKey else { throw .invalidSchema("\(schema.name) has no apiKey") }
                emitter.line("public static let apiKey = APIKey.\(Self.apiKeyName(schema))")
                _ = apiKey
            }
            let valid = schema.validVersions
            emitter.line("public static let validVersions: ClosedRange<Int16> = \(valid.lowest)...\(valid.highest)")
            let flexible = schema.flexibleVersions.isEmpty ? "nil" : "\(schema.flexibleVersions.lowest)..."
            emitter.line("public static let flexibleVersions: PartialRangeFrom<Int16>? = \(flexible)")
            emitter.line()
            try emitter.emitStructBody(schema.root, isRoot: true)
            for structure in schema.structs {
                emitter.line()
                emitter.open("public struct \(structure.name): WireCodable, Hashable, Sendable")
                try emitter.emitStructBody(structure, isRoot: false)
                emitter.close()
            }
        }
        self.close()
        return self.lines.joined(separator: "\n") + "\n"
    }

    /// The `APIKey` static for a request or response: `InitProducerIdRequest` → `initProducerID`.
    static func apiKeyName(_ schema: MessageSchema) -> String {
        let suffix = schema.kind == .request ? "Request" : "Response"
        return Naming.fieldName(String(schema.name.dropLast(suffix.count)))
    }
}
