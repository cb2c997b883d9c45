import NIOCore

/// Writes Kafka primitives into a `ByteBuffer`. The counterpart of `WireReader`; every `write…` appends.
///
/// A value owned by one encoder at a time; not meant to be shared while encoding.
public struct WireWriter: Sendable {
    public var buffer: ByteBuffer

    public init(buffer: ByteBuffer = ByteBuffer()) {
        self.buffer = buffer
    }

    // MARK: Fixed-size values

    @inlinable
    public mutating func writeInt8(_ value: Int8) { self.buffer.writeInteger(value) }
    @inlinable
    public mutating func writeInt16(_ value: Int16) { self.buffer.writeInteger(value) }
    @inlinable
    public mutating func writeInt32(_ value: Int32) { self.buffer.writeInteger(value) }
    @inlinable
    public mutating func writeInt64(_ value: Int64) { self.buffer.writeInteger(value) }
    @inlinable
    public mutating func writeUInt16(_ value: UInt16) { self.buffer.writeInteger(value) }
    @inlinable
    public mutating func writeUInt32(_ value: UInt32) { self.buffer.writeInteger(value) }
    @inlinable
    public mutating func writeBool(_ value: Bool) { self.buffer.writeInteger(value ? 1 : 0 as UInt8) }
    @inlinable
    public mutating func writeFloat64(_ value: Double) { self.buffer.writeInteger(value.bitPattern) }

    @inlinable
    public mutating func writeUUID(_ value: KafkaUUID) {
        self.buffer.writeInteger(value.mostSignificantBits)
        self.buffer.writeInteger(value.leastSignificantBits)
    }

    // MARK: Varints

    public mutating func writeUnsignedVarint(_ value: UInt32) {
        self.writeVarintBits(UInt64(value))
    }

    public mutating func writeVarint(_ value: Int32) {
        self.writeVarintBits(UInt64(UInt32(bitPattern: (value << 1) ^ (value >> 31))))
    }

    public mutating func writeVarlong(_ value: Int64) {
        self.writeVarintBits(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    private mutating func writeVarintBits(_ value: UInt64) {
        var remaining = value
        while remaining >= 0x80 {
            self.buffer.writeInteger(UInt8(truncatingIfNeeded: remaining) | 0x80)
            remaining >>= 7
        }
        self.buffer.writeInteger(UInt8(remaining))
    }

    /// A length or count in its classic (int16/int32) or compact (unsigned varint of n + 1) form; -1 is null.
    @usableFromInline
    mutating func writeLength(_ length: Int, compact: Bool, wide: Bool) {
        if compact {
            self.writeUnsignedVarint(UInt32(truncatingIfNeeded: length + 1))
        } else if wide {
            self.writeInt32(Int32(truncatingIfNeeded: length))
        } else {
            self.writeInt16(Int16(truncatingIfNeeded: length))
        }
    }

    // MARK: Strings, bytes, records

    public mutating func writeString(_ value: String, compact: Bool) {
        self.writeLength(value.utf8.count, compact: compact, wide: false)
        self.buffer.writeString(value)
    }

    public mutating func writeNullableString(_ value: String?, compact: Bool) {
        guard let value else { return self.writeLength(-1, compact: compact, wide: false) }
        self.writeString(value, compact: compact)
    }

    public mutating func writeBytes(_ value: ByteBuffer, compact: Bool) {
        self.writeLength(value.readableBytes, compact: compact, wide: true)
        self.buffer.writeImmutableBuffer(value)
    }

    public mutating func writeNullableBytes(_ value: ByteBuffer?, compact: Bool) {
        guard let value else { return self.writeLength(-1, compact: compact, wide: true) }
        self.writeBytes(value, compact: compact)
    }

    public mutating func writeRecords(_ value: ByteBuffer?, compact: Bool) {
        self.writeNullableBytes(value, compact: compact)
    }

    // MARK: Arrays

    /// A nullable array whose elements `writeElement` encodes.
    @inlinable
    public mutating func writeNullableArray<Element>(
        _ elements: [Element]?,
        compact: Bool,
        _ writeElement: (inout WireWriter, Element) -> Void
    ) {
        guard let elements else { return self.writeLength(-1, compact: compact, wide: true) }
        self.writeLength(elements.count, compact: compact, wide: true)
        for element in elements {
            writeElement(&self, element)
        }
    }

    /// A non-nullable array.
    @inlinable
    public mutating func writeArray<Element>(
        _ elements: [Element],
        compact: Bool,
        _ writeElement: (inout WireWriter, Element) -> Void
    ) {
        self.writeNullableArray(elements, compact: compact, writeElement)
    }

    /// A nullable array of structures.
    @inlinable
    public mutating func writeNullableArray<Element: WireCodable>(_ elements: [Element]?, version: Int16, compact: Bool)
    {
        self.writeNullableArray(elements, compact: compact) { writer, element in
            element.encode(into: &writer, version: version)
        }
    }

    /// A non-nullable array of structures.
    @inlinable
    public mutating func writeArray<Element: WireCodable>(_ elements: [Element], version: Int16, compact: Bool) {
        self.writeNullableArray(elements, version: version, compact: compact)
    }

    // MARK: Tagged fields

    /// One tagged field: its tag, the size of its value, then the value that `writeValue` encodes. The value is
    /// encoded into a scratch buffer first because its size precedes it as a varint.
    public mutating func writeTaggedField(tag: UInt32, _ writeValue: (inout WireWriter) -> Void) {
        var scratch = WireWriter(buffer: ByteBuffer())
        writeValue(&scratch)
        self.writeUnsignedVarint(tag)
        self.writeUnsignedVarint(UInt32(scratch.buffer.readableBytes))
        self.buffer.writeImmutableBuffer(scratch.buffer)
    }

    /// An empty tagged-field section: the single byte 0.
    @inlinable
    public mutating func writeEmptyTaggedFields() {
        self.buffer.writeInteger(0 as UInt8)
    }
}
