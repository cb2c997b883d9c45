import NIOCore

/// Reads Kafka primitives from one complete frame.
///
/// Every `read…` method moves past what it read and throws `WireError` instead of returning nil: inside a frame,
/// too few bytes means the frame is malformed, never "wait for more". Every length and count is checked against
/// the bytes remaining and against `limits` *before* anything is reserved, so a 40-byte frame that claims a
/// 2^31-element array fails at once without allocating. `bytes` and `records` values are slices of the frame
/// (zero-copy).
///
/// A value owned by one decoder at a time; it is `Sendable` because `ByteBuffer` is, but is never meant to be
/// shared while decoding.
public struct WireReader: Sendable {
    public private(set) var buffer: ByteBuffer
    public let limits: WireLimits

    public init(buffer: ByteBuffer, limits: WireLimits = .default) {
        self.buffer = buffer
        self.limits = limits
    }

    /// Bytes not yet read.
    public var remainingBytes: Int { self.buffer.readableBytes }

    /// Throws unless every byte has been read; decoders call it after the last field of a frame.
    public func expectEnd() throws(WireError) {
        guard self.buffer.readableBytes == 0 else { throw .trailingBytes(self.buffer.readableBytes) }
    }

    // MARK: Fixed-size integers

    mutating func readFixed<T: FixedWidthInteger>(_ type: T.Type) throws(WireError) -> T {
        guard let value = self.buffer.readInteger(as: T.self) else {
            throw .truncated(needed: MemoryLayout<T>.size, remaining: self.buffer.readableBytes)
        }
        return value
    }

    public mutating func readInt8() throws(WireError) -> Int8 { try self.readFixed(Int8.self) }
    public mutating func readInt16() throws(WireError) -> Int16 { try self.readFixed(Int16.self) }
    public mutating func readInt32() throws(WireError) -> Int32 { try self.readFixed(Int32.self) }
    public mutating func readInt64() throws(WireError) -> Int64 { try self.readFixed(Int64.self) }
    public mutating func readUInt16() throws(WireError) -> UInt16 { try self.readFixed(UInt16.self) }
    public mutating func readUInt32() throws(WireError) -> UInt32 { try self.readFixed(UInt32.self) }

    /// Kafka's BOOLEAN: one byte, any non-zero value is true (as Kafka's own readers treat it).
    public mutating func readBool() throws(WireError) -> Bool { try self.readFixed(UInt8.self) != 0 }

    /// Kafka's FLOAT64: an IEEE 754 double, big-endian.
    public mutating func readFloat64() throws(WireError) -> Double {
        Double(bitPattern: try self.readFixed(UInt64.self))
    }

    /// Kafka's UUID: 16 bytes.
    public mutating func readUUID() throws(WireError) -> KafkaUUID {
        let high = try self.readFixed(UInt64.self)
        let low = try self.readFixed(UInt64.self)
        return KafkaUUID(mostSignificantBits: high, leastSignificantBits: low)
    }

    // MARK: Varints

    /// Kafka's UNSIGNED_VARINT: at most 5 bytes, and the 5th may carry only the top 4 bits of a UInt32.
    public mutating func readUnsignedVarint() throws(WireError) -> UInt32 {
        UInt32(truncatingIfNeeded: try self.readVarintBits(maxBytes: 5, valueBits: 32))
    }

    /// Kafka's VARINT: a zig-zag encoded Int32 in at most 5 bytes.
    public mutating func readVarint() throws(WireError) -> Int32 {
        let raw = UInt32(truncatingIfNeeded: try self.readVarintBits(maxBytes: 5, valueBits: 32))
        return Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// Kafka's VARLONG: a zig-zag encoded Int64 in at most 10 bytes.
    public mutating func readVarlong() throws(WireError) -> Int64 {
        let raw = try self.readVarintBits(maxBytes: 10, valueBits: 64)
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// An unsigned LEB128 value; refuses more than `maxBytes` bytes or set bits beyond `valueBits`.
    private mutating func readVarintBits(maxBytes: Int, valueBits: Int) throws(WireError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        for index in 0..<maxBytes {
            guard let byte = self.buffer.readInteger(as: UInt8.self) else {
                throw .truncated(needed: 1, remaining: 0)
            }
            let payload = UInt64(byte & 0x7F)
            if index == maxBytes - 1 {
                // The last permitted byte may neither continue nor carry bits the type cannot hold.
                let spareBits = valueBits - Int(shift)
                guard byte & 0x80 == 0, spareBits >= 7 || payload >> UInt64(spareBits) == 0 else {
                    throw .varintTooLong(maxBytes: maxBytes)
                }
            }
            result |= payload << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        throw .varintTooLong(maxBytes: maxBytes)
    }

    // MARK: Lengths

    /// A STRING/BYTES length (int16 or int32) or its COMPACT form (unsigned varint of length + 1); -1 is null.
    mutating func readLength(compact: Bool, wide: Bool) throws(WireError) -> Int {
        if compact { return Int(try self.readUnsignedVarint()) - 1 }
        return wide ? Int(try self.readInt32()) : Int(try self.readInt16())
    }

    /// Checks a length against the frame and the limit, then returns the slice; nil for -1.
    mutating func readLengthPrefixedSlice(length: Int, limit: Int) throws(WireError) -> ByteBuffer? {
        if length == -1 { return nil }
        guard length >= 0 else { throw .negativeLength(length) }
        guard length <= limit else { throw .lengthExceedsLimit(length: length, limit: limit) }
        guard let slice = self.buffer.readSlice(length: length) else {
            throw .truncated(needed: length, remaining: self.buffer.readableBytes)
        }
        return slice
    }

    /// `length` raw bytes as a slice of the frame.
    public mutating func readSlice(length: Int) throws(WireError) -> ByteBuffer {
        guard length >= 0 else { throw .negativeLength(length) }
        guard let slice = self.buffer.readSlice(length: length) else {
            throw .truncated(needed: length, remaining: self.buffer.readableBytes)
        }
        return slice
    }

    // MARK: Strings

    /// NULLABLE_STRING or COMPACT_NULLABLE_STRING; the bytes must be valid UTF-8.
    public mutating func readNullableString(compact: Bool) throws(WireError) -> String? {
        let length = try self.readLength(compact: compact, wide: false)
        guard let slice = try self.readLengthPrefixedSlice(length: length, limit: self.limits.maxStringBytes) else {
            return nil
        }
        guard let string = String(validating: slice.readableBytesView, as: UTF8.self) else {
            throw .invalidUTF8(length: length)
        }
        return string
    }

    /// STRING or COMPACT_STRING: like `readNullableString` but null is an error.
    public mutating func readString(compact: Bool) throws(WireError) -> String {
        guard let string = try self.readNullableString(compact: compact) else { throw .unexpectedNull("string") }
        return string
    }

    // MARK: Bytes and records

    /// NULLABLE_BYTES or COMPACT_NULLABLE_BYTES (int32 length), as a zero-copy slice.
    public mutating func readNullableBytes(compact: Bool) throws(WireError) -> ByteBuffer? {
        let length = try self.readLength(compact: compact, wide: true)
        return try self.readLengthPrefixedSlice(length: length, limit: self.limits.maxBytesLength)
    }

    /// BYTES or COMPACT_BYTES: like `readNullableBytes` but null is an error.
    public mutating func readBytes(compact: Bool) throws(WireError) -> ByteBuffer {
        guard let bytes = try self.readNullableBytes(compact: compact) else { throw .unexpectedNull("bytes") }
        return bytes
    }

    /// RECORDS or COMPACT_RECORDS: a nullable length-prefixed record set, kept as an undecoded slice.
    public mutating func readRecords(compact: Bool) throws(WireError) -> ByteBuffer? {
        try self.readNullableBytes(compact: compact)
    }

    // MARK: Arrays

    /// ARRAY or COMPACT_ARRAY length, nil for null.
    ///
    /// `minimumElementSize` is the fewest bytes one element can take; a count the rest of the frame cannot hold
    /// is refused before the caller reserves anything.
    public mutating func readArrayCount(compact: Bool, minimumElementSize: Int) throws(WireError) -> Int? {
        let count = compact ? Int(try self.readUnsignedVarint()) - 1 : Int(try self.readInt32())
        if count == -1 { return nil }
        guard count >= 0 else { throw .negativeLength(count) }
        guard count <= self.limits.maxArrayCount else {
            throw .countExceedsLimit(count: count, limit: self.limits.maxArrayCount)
        }
        let minimumBytes = max(minimumElementSize, 0)
        guard count * minimumBytes <= self.buffer.readableBytes else {
            throw .countExceedsFrame(count: count, minimumBytes: minimumBytes, remaining: self.buffer.readableBytes)
        }
        return count
    }

    /// A nullable array whose elements `readElement` decodes.
    @inlinable
    public mutating func readNullableArray<Element>(
        compact: Bool,
        minimumElementSize: Int,
        _ readElement: (inout WireReader) throws(WireError) -> Element
    ) throws(WireError) -> [Element]? {
        guard let count = try self.readArrayCount(compact: compact, minimumElementSize: minimumElementSize) else {
            return nil
        }
        var elements = [Element]()
        elements.reserveCapacity(count)
        for _ in 0..<count {
            elements.append(try readElement(&self))
        }
        return elements
    }

    /// A non-nullable array: like `readNullableArray`, but null is an error.
    @inlinable
    public mutating func readArray<Element>(
        compact: Bool,
        minimumElementSize: Int,
        _ readElement: (inout WireReader) throws(WireError) -> Element
    ) throws(WireError) -> [Element] {
        guard
            let elements = try self.readNullableArray(
                compact: compact,
                minimumElementSize: minimumElementSize,
                readElement
            )
        else { throw .unexpectedNull("array") }
        return elements
    }

    /// A nullable array of structures.
    @inlinable
    public mutating func readNullableArray<Element: WireCodable>(
        of type: Element.Type,
        version: Int16,
        compact: Bool,
        minimumElementSize: Int
    ) throws(WireError) -> [Element]? {
        try self.readNullableArray(compact: compact, minimumElementSize: minimumElementSize) {
            (reader: inout WireReader) throws(WireError) -> Element in
            try Element(from: &reader, version: version)
        }
    }

    /// A non-nullable array of structures.
    @inlinable
    public mutating func readArray<Element: WireCodable>(
        of type: Element.Type,
        version: Int16,
        compact: Bool,
        minimumElementSize: Int
    ) throws(WireError) -> [Element] {
        try self.readArray(compact: compact, minimumElementSize: minimumElementSize) {
            (reader: inout WireReader) throws(WireError) -> Element in
            try Element(from: &reader, version: version)
        }
    }

    // MARK: Tagged fields

    /// The number of tagged fields that follow; each takes at least two bytes (tag and size).
    public mutating func readTaggedFieldCount() throws(WireError) -> Int {
        let count = Int(try self.readUnsignedVarint())
        guard count * 2 <= self.buffer.readableBytes else {
            throw .countExceedsFrame(count: count, minimumBytes: 2, remaining: self.buffer.readableBytes)
        }
        return count
    }

    /// One tagged field's header and value. The value comes back as its own reader over exactly the declared
    /// bytes, so an unknown tag is skipped by ignoring it, and a known one is decoded from `value` and then
    /// checked with `value.expectEnd()`.
    public mutating func readTaggedField() throws(WireError) -> (tag: UInt32, value: WireReader) {
        let tag = try self.readUnsignedVarint()
        let size = Int(try self.readUnsignedVarint())
        let slice = try self.readSlice(length: size)
        return (tag, WireReader(buffer: slice, limits: self.limits))
    }

    /// Reads and discards a whole tagged-field section (used where no tags are known).
    public mutating func skipTaggedFields() throws(WireError) {
        let count = try self.readTaggedFieldCount()
        for _ in 0..<count {
            _ = try self.readTaggedField()
        }
    }
}
