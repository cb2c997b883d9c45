/// Where the fields of one record lie inside a records area, found by one bounded pass over its bytes.
///
/// Shared by the validator (which only needs the numbers) and the iterator (which slices keys and values from
/// the positions), so both apply exactly the same checks. Parsing allocates nothing; a malformed record throws
/// `RecordBatchError.malformedRecord` naming the record index and byte position.
struct RecordLayout {
    var attributes: Int8 = 0
    var timestampDelta: Int64 = 0
    var offsetDelta: Int32 = 0
    /// -1 for a null key.
    var keyLength: Int = -1
    var keyStart: Int = 0
    /// -1 for a null value.
    var valueLength: Int = -1
    var valueStart: Int = 0
    var headerCount: Int = 0
    var headersStart: Int = 0
    /// The first byte after the record.
    var end: Int = 0

    /// The record at `start` of a stored batch, whose offset deltas must grow and stay within `lastOffsetDelta`
    /// (`previousDelta` is the last one seen, -1 before the first, and is moved on); the one walk the iterator, the
    /// validator and the down-converter share.
    static func parseStored(
        _ bytes: UnsafeRawBufferPointer,
        at start: Int,
        index: Int,
        previousDelta: inout Int32,
        lastOffsetDelta: Int32
    ) throws(RecordBatchError) -> Self {
        let layout = try Self.parse(bytes, at: start, index: index)
        guard layout.offsetDelta > previousDelta, layout.offsetDelta <= lastOffsetDelta else {
            throw .offsetDeltaOutOfOrder(
                index: index,
                previous: previousDelta,
                found: layout.offsetDelta,
                last: lastOffsetDelta
            )
        }
        previousDelta = layout.offsetDelta
        return layout
    }

    /// Parses the record starting at `start` of `bytes`, the `index`-th of its batch.
    ///
    /// Every length is checked against the record's own declared size before it is used, as Kafka's
    /// `DefaultRecord.readFrom` does; header keys may not be null, values and keys may (-1).
    @inline(__always)
    static func parse(_ bytes: UnsafeRawBufferPointer, at start: Int, index: Int) throws(RecordBatchError) -> Self {
        var cursor = VarintCursor(bytes: bytes, position: start, end: bytes.count)
        guard let length = cursor.readVarint() else {
            throw .malformedRecord(index: index, position: start, what: "record length varint is cut or too long")
        }
        guard length >= 0, Int(length) <= cursor.end - cursor.position else {
            throw .malformedRecord(
                index: index,
                position: start,
                what: "record length \(length) exceeds the \(cursor.end - cursor.position) bytes left in the batch"
            )
        }
        cursor.end = cursor.position + Int(length)
        var layout = RecordLayout()
        guard let attributes = cursor.readByte() else {
            throw .malformedRecord(index: index, position: cursor.position, what: "attributes byte missing")
        }
        layout.attributes = Int8(bitPattern: attributes)
        guard let timestampDelta = cursor.readVarlong() else {
            throw .malformedRecord(index: index, position: cursor.position, what: "timestamp delta is cut or too long")
        }
        layout.timestampDelta = timestampDelta
        guard let offsetDelta = cursor.readVarint() else {
            throw .malformedRecord(index: index, position: cursor.position, what: "offset delta is cut or too long")
        }
        layout.offsetDelta = offsetDelta
        layout.keyLength = try cursor.readBytesLength(index: index, field: "key")
        layout.keyStart = cursor.position
        cursor.position += max(layout.keyLength, 0)
        layout.valueLength = try cursor.readBytesLength(index: index, field: "value")
        layout.valueStart = cursor.position
        cursor.position += max(layout.valueLength, 0)
        guard let headerCount = cursor.readVarint() else {
            throw .malformedRecord(index: index, position: cursor.position, what: "header count is cut or too long")
        }
        guard headerCount >= 0 else {
            throw .malformedRecord(
                index: index,
                position: cursor.position,
                what: "negative header count \(headerCount)"
            )
        }
        layout.headerCount = Int(headerCount)
        layout.headersStart = cursor.position
        for _ in 0..<layout.headerCount {
            let keyPosition = cursor.position
            let keyLength = try cursor.readBytesLength(index: index, field: "header key")
            guard keyLength >= 0 else {
                throw .malformedRecord(index: index, position: keyPosition, what: "header key is null")
            }
            cursor.position += keyLength
            let valueLength = try cursor.readBytesLength(index: index, field: "header value")
            cursor.position += max(valueLength, 0)
        }
        guard cursor.position == cursor.end else {
            throw .malformedRecord(
                index: index,
                position: start,
                what: "record declares \(length) bytes but its fields end \(cursor.end - cursor.position) bytes early"
            )
        }
        layout.end = cursor.end
        return layout
    }
}

/// Reads Kafka's zig-zag varints (protobuf's signed encoding) from raw bytes, never past `end`.
struct VarintCursor {
    let bytes: UnsafeRawBufferPointer
    var position: Int
    var end: Int

    @inline(__always)
    mutating func readByte() -> UInt8? {
        guard self.position < self.end else { return nil }
        defer { self.position &+= 1 }
        return self.bytes[self.position]
    }

    /// A zig-zag int32 of at most 5 bytes (Kafka's `ByteUtils.readVarint`); nil when cut short or too long.
    @inline(__always)
    mutating func readVarint() -> Int32? {
        var raw: UInt32 = 0
        var shift: UInt32 = 0
        while true {
            guard let byte = self.readByte() else { return nil }
            raw |= UInt32(byte & 0x7F) &<< shift
            if byte & 0x80 == 0 { break }
            shift += 7
            if shift > 28 { return nil }
        }
        return Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// A zig-zag int64 of at most 10 bytes; nil when cut short or too long.
    @inline(__always)
    mutating func readVarlong() -> Int64? {
        var raw: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard let byte = self.readByte() else { return nil }
            raw |= UInt64(byte & 0x7F) &<< shift
            if byte & 0x80 == 0 { break }
            shift += 7
            if shift > 63 { return nil }
        }
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// A length varint for a nullable byte field: -1 (null) or 0...bytes left in the record.
    @inline(__always)
    mutating func readBytesLength(index: Int, field: StaticString) throws(RecordBatchError) -> Int {
        let position = self.position
        guard let length = self.readVarint() else {
            throw .malformedRecord(index: index, position: position, what: "\(field) length is cut or too long")
        }
        guard length >= -1, Int(length) <= self.end - self.position else {
            throw .malformedRecord(
                index: index,
                position: position,
                what: "\(field) length \(length) is outside -1...\(self.end - self.position) (the bytes left)"
            )
        }
        return Int(length)
    }
}
