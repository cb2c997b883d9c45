/// Emits random but valid encodings of any message at any version, driven only by the parsed schema.
///
/// This is a second, independent implementation of the wire format: it shares no code with the generated
/// codecs or with KafkaWire, so a generated type that decodes these bytes and re-encodes them identically agrees
/// with the schema, not merely with itself. Like Kafka, it writes tagged fields only when their value differs from
/// the default, in ascending tag order; nullable fields are sometimes null; lengths and counts are random but
/// small. The same seed always gives the same bytes.
///
/// A value owned by one caller at a time.
public struct RandomMessageEncoder {
    /// How large and how varied the values are.
    public struct Options: Sendable {
        public var maxArrayCount: Int = 3
        public var maxStringLength: Int = 6
        /// Percent of nullable values written as null.
        public var nullPercent: Int = 20
        /// Percent of tagged fields given a non-default value (and therefore written).
        public var taggedPercent: Int = 60
        /// Adds a tag no schema knows to every tag section, to test that decoders skip it. Uses its own random
        /// stream, so the known fields get the same values as without this option.
        public var unknownTags: Bool = false

        public init() {}
    }

    private let schema: MessageSchema
    private let options: Options
    private var random: SplitMix64
    private var unknownRandom: SplitMix64
    private var version: Int16 = 0

    public init(schema: MessageSchema, seed: UInt64, options: Options = Options()) {
        self.schema = schema
        self.options = options
        self.random = SplitMix64(seed: seed)
        self.unknownRandom = SplitMix64(seed: ~seed)
    }

    /// One encoding of the message body at `version`.
    public mutating func encode(version: Int16) -> [UInt8] {
        self.version = version
        var output: [UInt8] = []
        self.writeStruct(self.schema.root, forceNonDefault: false, into: &output)
        return output
    }

    // MARK: Structures

    private var flexible: Bool { self.schema.flexibleVersions.contains(self.version) }

    /// Writes a structure; `forceNonDefault` makes its first regular field differ from that field's default, so
    /// that the structure as a whole is not the default (needed for tagged structure fields).
    /// Returns false if that was impossible (no regular field at this version).
    @discardableResult
    private mutating func writeStruct(_ structure: StructSchema, forceNonDefault: Bool, into output: inout [UInt8])
        -> Bool
    {
        var forcePending = forceNonDefault
        for field in structure.fields where field.regularVersions.contains(self.version) {
            self.writeField(field, forceNonDefault: forcePending, into: &output)
            forcePending = false
        }
        if self.flexible {
            self.writeTaggedFields(structure, into: &output)
        }
        return !forcePending
    }

    private mutating func writeTaggedFields(_ structure: StructSchema, into output: inout [UInt8]) {
        let tagged = structure.fields.enumerated()
            .filter { $0.element.tag != nil && $0.element.taggedPresence.contains(self.version) }
            .sorted { ($0.element.tag!, $0.offset) < ($1.element.tag!, $1.offset) }
            .map(\.element)
        var entries: [(tag: UInt32, value: [UInt8])] = []
        for field in tagged where self.percent(self.options.taggedPercent) {
            var value: [UInt8] = []
            if self.writeField(field, forceNonDefault: true, into: &value) {
                entries.append((field.tag!, value))
            }
        }
        if self.options.unknownTags {
            let highest = structure.fields.compactMap(\.tag).max() ?? 0
            let tag = highest + 1 + UInt32(self.unknownRandom.next() % 1000)
            let value = (0..<Int(self.unknownRandom.next() % 5)).map { _ in
                UInt8(truncatingIfNeeded: self.unknownRandom.next())
            }
            entries.append((tag, value))
        }
        Self.appendUnsignedVarint(UInt64(entries.count), to: &output)
        for entry in entries {
            Self.appendUnsignedVarint(UInt64(entry.tag), to: &output)
            Self.appendUnsignedVarint(UInt64(entry.value.count), to: &output)
            output += entry.value
        }
    }

    // MARK: Fields

    /// Writes one value of `field`; returns false only if a forced non-default structure was impossible.
    @discardableResult
    private mutating func writeField(_ field: FieldSchema, forceNonDefault: Bool, into output: inout [UInt8]) -> Bool {
        let compact = (field.flexibleVersions ?? self.schema.flexibleVersions).contains(self.version)
        let nullable = field.nullableVersions.contains(self.version)
        let defaultText = field.defaultValue?.trimmingSpaces
        switch field.type {
        case .bool:
            let defaultValue = defaultText == "true"
            let value = forceNonDefault ? !defaultValue : self.random.next() & 1 == 1
            output.append(value ? 1 : 0)
        case .int8, .int16, .uint16, .int32, .uint32, .int64:
            let width = Self.byteWidth(field.type)
            let defaultValue =
                defaultText.flatMap { try? SwiftEmitter.integerDefault($0, type: field.type, field: "") } ?? 0
            var value = self.randomInteger(byteWidth: width)
            let defaultPattern = UInt64(bitPattern: defaultValue) & Self.mask(width)
            if forceNonDefault && value == defaultPattern { value = (value &+ 1) & Self.mask(width) }
            Self.appendBigEndian(value, width: width, to: &output)
        case .float64:
            let defaultValue = defaultText.flatMap(Double.init) ?? 0
            var value = Double(Int64(bitPattern: self.random.next()) % 1_000_000) / 64
            if forceNonDefault && value == defaultValue { value += 1 }
            Self.appendBigEndian(value.bitPattern, width: 8, to: &output)
        case .uuid:
            var high = self.random.next() % 4 == 0 ? 0 : self.random.next()
            let low = self.random.next() % 4 == 0 ? 0 : self.random.next()
            if forceNonDefault && high == 0 && low == 0 { high = 1 }
            Self.appendBigEndian(high, width: 8, to: &output)
            Self.appendBigEndian(low, width: 8, to: &output)
        case .string:
            if nullable && !forceNonDefault && self.percent(self.options.nullPercent) {
                Self.appendLength(-1, compact: compact, wide: false, to: &output)
                return true
            }
            var value = self.randomString(minimumLength: forceNonDefault ? 1 : 0)
            if forceNonDefault && value == defaultText { value += "x" }
            let utf8 = Array(value.utf8)
            Self.appendLength(utf8.count, compact: compact, wide: false, to: &output)
            output += utf8
        case .bytes, .records:
            if nullable && !forceNonDefault && self.percent(self.options.nullPercent) {
                Self.appendLength(-1, compact: compact, wide: true, to: &output)
                return true
            }
            let count = Int(self.random.next() % 8) + (forceNonDefault ? 1 : 0)
            Self.appendLength(count, compact: compact, wide: true, to: &output)
            for _ in 0..<count { output.append(UInt8(truncatingIfNeeded: self.random.next())) }
        case .structure(let name):
            guard let structure = self.schema.structNamed(name) else { return false }
            return self.writeStruct(structure, forceNonDefault: forceNonDefault, into: &output)
        case .array(let element):
            if nullable && !forceNonDefault && self.percent(self.options.nullPercent) {
                Self.appendLength(-1, compact: compact, wide: true, to: &output)
                return true
            }
            let count = Int(self.random.next() % UInt64(self.options.maxArrayCount + 1))
            let finalCount = forceNonDefault ? max(count, 1) : count
            Self.appendLength(finalCount, compact: compact, wide: true, to: &output)
            var elementField = field
            elementField.type = element
            elementField.nullableVersions = .none
            elementField.defaultValue = nil
            for _ in 0..<finalCount {
                self.writeField(elementField, forceNonDefault: false, into: &output)
            }
        }
        return true
    }

    // MARK: Random values

    private mutating func percent(_ percent: Int) -> Bool {
        Int(self.random.next() % 100) < percent
    }

    /// Mostly edge values (0, ±1, extremes), otherwise uniformly random bits of the width.
    private mutating func randomInteger(byteWidth: Int) -> UInt64 {
        let mask = Self.mask(byteWidth)
        let signBit: UInt64 = 1 << UInt64(8 * byteWidth - 1)
        switch self.random.next() % 6 {
        case 0: return 0
        case 1: return mask  // -1, or the unsigned maximum
        case 2: return signBit  // the signed minimum
        case 3: return signBit - 1  // the signed maximum
        default: return self.random.next() & mask
        }
    }

    private static let characters: [String] = ["a", "b", "z", "0", "-", "_", ".", " ", "é", "ß", "漢", "🙂"]

    private mutating func randomString(minimumLength: Int) -> String {
        let length = max(Int(self.random.next() % UInt64(self.options.maxStringLength + 1)), minimumLength)
        var result = ""
        for _ in 0..<length {
            result += Self.characters[Int(self.random.next() % UInt64(Self.characters.count))]
        }
        return result
    }

    // MARK: Bytes

    private static func byteWidth(_ type: FieldType) -> Int {
        switch type {
        case .int8: 1
        case .int16, .uint16: 2
        case .int32, .uint32: 4
        default: 8
        }
    }

    private static func mask(_ width: Int) -> UInt64 {
        width >= 8 ? .max : (1 << UInt64(8 * width)) - 1
    }

    private static func appendBigEndian(_ value: UInt64, width: Int, to output: inout [UInt8]) {
        for index in stride(from: width - 1, through: 0, by: -1) {
            output.append(UInt8(truncatingIfNeeded: value >> UInt64(8 * index)))
        }
    }

    static func appendUnsignedVarint(_ value: UInt64, to output: inout [UInt8]) {
        var remaining = value
        while remaining >= 0x80 {
            output.append(UInt8(remaining & 0x7F) | 0x80)
            remaining >>= 7
        }
        output.append(UInt8(remaining))
    }

    /// A length or count: unsigned varint of n + 1 when compact, else int16 (strings) or int32; -1 is null.
    private static func appendLength(_ length: Int, compact: Bool, wide: Bool, to output: inout [UInt8]) {
        if compact {
            self.appendUnsignedVarint(UInt64(length + 1), to: &output)
        } else {
            self.appendBigEndian(UInt64(bitPattern: Int64(length)), width: wide ? 4 : 2, to: &output)
        }
    }
}

/// Sebastiano Vigna's SplitMix64: tiny, fast and good enough for test data; the same seed gives the same stream.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
