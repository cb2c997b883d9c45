/// The parsed form of one Kafka JSON message definition. Plain values: freely shareable across threads.

/// A field's wire type.
public indirect enum FieldType: Hashable, Sendable {
    case bool, int8, int16, uint16, int32, uint32, int64, float64
    case string, bytes, records, uuid
    case structure(String)
    case array(FieldType)

    /// Parses `"int32"`, `"[]string"`, `"[]SomeStruct"` or `"SomeStruct"`.
    init(parsing text: String) {
        if text.hasPrefix("[]") {
            self = .array(FieldType(parsing: String(text.dropFirst(2))))
            return
        }
        switch text {
        case "bool": self = .bool
        case "int8": self = .int8
        case "int16": self = .int16
        case "uint16": self = .uint16
        case "int32": self = .int32
        case "uint32": self = .uint32
        case "int64": self = .int64
        case "float64": self = .float64
        case "string": self = .string
        case "bytes": self = .bytes
        case "records": self = .records
        case "uuid": self = .uuid
        default: self = .structure(text)
        }
    }

    /// Whether a value of this type can be null on the wire, if its field says so.
    var canBeNullable: Bool {
        switch self {
        case .string, .bytes, .records, .array: true
        default: false
        }
    }

    var isPrimitive: Bool {
        switch self {
        case .structure, .array: false
        default: true
        }
    }
}

/// One field of a message or structure.
public struct FieldSchema: Hashable, Sendable {
    public var name: String
    public var type: FieldType
    public var versions: VersionRange
    public var nullableVersions: VersionRange
    public var taggedVersions: VersionRange
    public var tag: UInt32?
    /// A field-level override of the message's flexible versions (RequestHeader's ClientId uses `"none"`).
    public var flexibleVersions: VersionRange?
    /// The JSON `default`, as written (numbers are turned into their decimal text).
    public var defaultValue: String?
    public var ignorable: Bool

    /// Versions in which the field is part of the fixed sequence of fields.
    public var regularVersions: VersionRange { self.versions.subtractingOpenEnded(self.taggedVersions) }

    /// Versions in which the field travels as a tagged field.
    public var taggedPresence: VersionRange { self.versions.intersection(self.taggedVersions) }
}

/// A structure: the message itself, a nested struct declared inline, or a common struct.
public struct StructSchema: Hashable, Sendable {
    public var name: String
    public var fields: [FieldSchema]
}

/// What a definition file describes.
public enum MessageKind: String, Hashable, Sendable {
    case request, response, header, data
}

/// One definition file.
public struct MessageSchema: Hashable, Sendable {
    public var name: String
    /// The definition's path relative to `Definitions/`, e.g. `internal/OffsetCommitKey.json`.
    public var fileName: String
    public var kind: MessageKind
    public var apiKey: Int16?
    public var validVersions: VersionRange
    public var flexibleVersions: VersionRange
    public var fields: [FieldSchema]
    /// Every named structure, inline ones in depth-first declaration order, then common structs.
    public var structs: [StructSchema]

    public var root: StructSchema { StructSchema(name: self.name, fields: self.fields) }

    public func structNamed(_ name: String) -> StructSchema? {
        self.structs.first { $0.name == name }
    }
}
