import NIOCore

/// Encodes records into one v2 record batch, as a producer (or the broker's own coordinators) writes them.
///
/// Records are appended as raw bytes into one buffer (no per-record objects): length, attributes, timestamp delta
/// from the first record's timestamp, offset delta, key, value and headers, every integer a zig-zag varint.
/// `build` writes the 61-byte header, the records (or one compressed stream of them, in the framing Kafka's Java
/// client uses) and the CRC-32C.
///
/// A value type; not shared between threads (it refers to a `CompressionContext` when compressing).
public struct RecordBatchBuilder {
    public var codec: CompressionCodec
    /// nil takes the codec's Kafka default level.
    public var compressionLevel: Int?
    /// -1 when not idempotent.
    public var producerID: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var isTransactional: Bool
    public var isControl: Bool
    public var timestampType: TimestampType

    private var records: ByteBuffer
    private var allocator: ByteBufferAllocator
    public private(set) var recordCount: Int32 = 0
    private var baseTimestamp: Int64 = -1
    private var maxTimestamp: Int64 = -1
    /// The offset delta of the last record appended.
    private var lastAppendedDelta: Int32 = -1
    /// Written instead of the last record's offset delta (Kafka's `overrideLastOffset`): a rewritten batch keeps
    /// its original last offset, so the producer's last sequence survives compaction.
    public var lastOffsetDeltaOverride: Int32?
    /// Written instead of the records' largest timestamp (a LogAppendTime batch keeps the broker's time).
    public var maxTimestampOverride: Int64?

    public init(
        codec: CompressionCodec = .none,
        compressionLevel: Int? = nil,
        producerID: Int64 = -1,
        producerEpoch: Int16 = -1,
        baseSequence: Int32 = -1,
        isTransactional: Bool = false,
        isControl: Bool = false,
        timestampType: TimestampType = .createTime,
        allocator: ByteBufferAllocator = .init()
    ) {
        self.codec = codec
        self.compressionLevel = compressionLevel
        self.producerID = producerID
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
        self.isTransactional = isTransactional
        self.isControl = isControl
        self.timestampType = timestampType
        self.allocator = allocator
        self.records = allocator.buffer(capacity: 0)
    }

    /// Bytes of the uncompressed records appended so far (the batch is this plus 61 bytes when uncompressed).
    public var uncompressedRecordsSize: Int { self.records.readableBytes }

    /// Appends one record with the next offset delta.
    public mutating func append(
        timestamp: Int64,
        key: UnsafeRawBufferPointer?,
        value: UnsafeRawBufferPointer?,
        headers: [RecordHeader] = []
    ) {
        self.append(offsetDelta: self.lastAppendedDelta + 1, timestamp: timestamp, key: key, value: value, headers: headers)
    }

    /// Appends one record at `offsetDelta` from the base offset (above the last one's: a rewritten batch keeps its
    /// records' offsets, with gaps where records were removed).
    public mutating func append(
        offsetDelta: Int32,
        timestamp: Int64,
        key: UnsafeRawBufferPointer?,
        value: UnsafeRawBufferPointer?,
        headers: [RecordHeader] = []
    ) {
        precondition(offsetDelta > self.lastAppendedDelta, "offset deltas must grow")
        self.lastAppendedDelta = offsetDelta
        if self.recordCount == 0 { self.baseTimestamp = timestamp }
        self.maxTimestamp = max(self.maxTimestamp, timestamp)
        let timestampDelta = timestamp &- self.baseTimestamp
        let offsetDelta = Int64(offsetDelta)
        var bodySize = 1 + Varint.size(timestampDelta) + Varint.size(offsetDelta)
        bodySize +=
            Varint.sizeOfBytes(key?.count) + Varint.sizeOfBytes(value?.count) + Varint.size(Int64(headers.count))
        for header in headers {
            bodySize += Varint.sizeOfBytes(header.key.utf8.count) + Varint.sizeOfBytes(header.value?.readableBytes)
        }
        let total = Varint.size(Int64(bodySize)) + bodySize
        self.records.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
            var position = 0
            Varint.write(Int64(bodySize), to: out, at: &position)
            out[position] = 0
            position += 1
            Varint.write(timestampDelta, to: out, at: &position)
            Varint.write(offsetDelta, to: out, at: &position)
            Varint.writeBytes(key, to: out, at: &position)
            Varint.writeBytes(value, to: out, at: &position)
            Varint.write(Int64(headers.count), to: out, at: &position)
            for header in headers {
                var key = header.key
                key.withUTF8 { Varint.writeBytes(UnsafeRawBufferPointer($0), to: out, at: &position) }
                if let value = header.value {
                    value.withUnsafeReadableBytes { Varint.writeBytes($0, to: out, at: &position) }
                } else {
                    Varint.writeBytes(nil, to: out, at: &position)
                }
            }
            precondition(position == total, "record size computed as \(total), written \(position)")
            return position
        }
        self.recordCount += 1
    }

    /// Appends one record; keys and values are copied from the buffers' readable bytes.
    public mutating func append(
        timestamp: Int64,
        key: ByteBuffer?,
        value: ByteBuffer?,
        headers: [RecordHeader] = []
    ) {
        // Nested closures keep the pointers valid for the copy; nil stays nil.
        func withBytes<R>(_ buffer: ByteBuffer?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
            guard let buffer else { return body(nil) }
            return buffer.withUnsafeReadableBytes { body($0) }
        }
        withBytes(key) { key in
            withBytes(value) { value in
                self.append(timestamp: timestamp, key: key, value: value, headers: headers)
            }
        }
    }

    /// Writes the batch: header, records (compressed with `codec` through `compression`), CRC.
    ///
    /// - Parameter compression: needed unless `codec` is `.none`.
    public func build(
        baseOffset: Int64 = 0,
        partitionLeaderEpoch: Int32 = -1,
        compression: CompressionContext? = nil
    ) throws(RecordBatchError) -> RecordBatch {
        var attributes = RecordBatchAttributes(
            codec: self.codec,
            timestampType: self.timestampType,
            isTransactional: self.isTransactional,
            isControl: self.isControl
        )
        attributes.timestampType = self.timestampType
        var out = self.allocator.buffer(capacity: RecordBatch.headerSize + self.records.readableBytes)
        out.writeInteger(baseOffset)
        out.writeInteger(Int32(0))  // batchLength, set below
        out.writeInteger(partitionLeaderEpoch)
        out.writeInteger(Int8(2))
        out.writeInteger(UInt32(0))  // CRC, set below
        out.writeInteger(attributes.rawValue)
        out.writeInteger(self.lastOffsetDeltaOverride ?? self.lastAppendedDelta)
        out.writeInteger(self.baseTimestamp)
        out.writeInteger(self.maxTimestampOverride ?? self.maxTimestamp)
        out.writeInteger(self.producerID)
        out.writeInteger(self.producerEpoch)
        out.writeInteger(self.baseSequence)
        out.writeInteger(self.recordCount)
        if self.codec == .none {
            out.writeImmutableBuffer(self.records)
        } else {
            let compression = compression ?? CompressionContext()
            let (codec, level) = (self.codec, self.compressionLevel)
            try self.records.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
                try compression.compress(bytes, codec: codec, level: level, appendingTo: &out)
            }
        }
        out.setInteger(Int32(out.readableBytes - RecordBatch.logOverhead), at: RecordBatch.Field.batchLength)
        var batch = RecordBatch(unchecked: out)
        batch.recomputeCRC()
        return batch
    }

    /// Forgets the records, keeping the buffer's capacity for the next batch.
    public mutating func reset() {
        self.records.clear()
        self.recordCount = 0
        self.baseTimestamp = -1
        self.maxTimestamp = -1
        self.lastAppendedDelta = -1
    }
}

/// Zig-zag varint encoding into raw memory, for the builder.
enum Varint {
    @inline(__always)
    static func zigZag(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value << 1) ^ (value >> 63))
    }

    /// Bytes of the zig-zag varint of `value`.
    @inline(__always)
    static func size(_ value: Int64) -> Int {
        let raw = Self.zigZag(value)
        let bits = 64 - raw.leadingZeroBitCount
        return max(1, (bits + 6) / 7)
    }

    /// Bytes of a nullable byte field: its length varint plus its bytes.
    @inline(__always)
    static func sizeOfBytes(_ count: Int?) -> Int {
        guard let count else { return 1 }
        return Self.size(Int64(count)) + count
    }

    @inline(__always)
    static func write(_ value: Int64, to out: UnsafeMutableRawBufferPointer, at position: inout Int) {
        var raw = Self.zigZag(value)
        while raw >= 0x80 {
            out[position] = UInt8(truncatingIfNeeded: raw) | 0x80
            raw >>= 7
            position += 1
        }
        out[position] = UInt8(raw)
        position += 1
    }

    @inline(__always)
    static func writeBytes(
        _ bytes: UnsafeRawBufferPointer?,
        to out: UnsafeMutableRawBufferPointer,
        at position: inout Int
    ) {
        guard let bytes else {
            Self.write(-1, to: out, at: &position)
            return
        }
        Self.write(Int64(bytes.count), to: out, at: &position)
        if let base = bytes.baseAddress, bytes.count > 0 {
            (out.baseAddress! + position).copyMemory(from: base, byteCount: bytes.count)
        }
        position += bytes.count
    }
}
