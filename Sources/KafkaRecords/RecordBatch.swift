import NIOCore

/// A read-only view of one v2 (magic 2) record batch: the bytes exactly as a producer sent them or as a `.log`
/// file holds them. Header fields are read in place from the buffer; nothing is copied or decoded up front.
///
/// The layout (big-endian, Kafka's `DefaultRecordBatch`): baseOffset int64 @0, batchLength int32 @8,
/// partitionLeaderEpoch int32 @12, magic int8 @16, crc uint32 @17 (CRC-32C over [21, end)), attributes int16 @21,
/// lastOffsetDelta int32 @23, baseTimestamp int64 @27, maxTimestamp int64 @35, producerId int64 @43,
/// producerEpoch int16 @51, baseSequence int32 @53, recordCount int32 @57, records @61.
///
/// Creating a view only checks sizes (at least the 61-byte header, batchLength + 12 equal to the bytes given);
/// magic, CRC and records are checked by `RecordBatchValidator`. The setters write into the buffer: in place when
/// the view holds the only reference to its storage, otherwise after ByteBuffer's copy-on-write.
///
/// A value type; Sendable (ByteBuffer is).
public struct RecordBatch: Hashable, Sendable {
    /// The batch's bytes, and nothing else, as the readable bytes of this buffer.
    public private(set) var buffer: ByteBuffer

    /// Bytes of the v2 header up to the first record.
    public static let headerSize = 61
    /// baseOffset and batchLength: the bytes not counted by batchLength.
    public static let logOverhead = 12
    /// The first byte covered by the CRC (the attributes).
    public static let crcCoverageStart = 21

    /// Field positions inside the batch.
    @usableFromInline
    enum Field {
        static let baseOffset = 0
        static let batchLength = 8
        static let partitionLeaderEpoch = 12
        static let magic = 16
        static let crc = 17
        static let attributes = 21
        static let lastOffsetDelta = 23
        static let baseTimestamp = 27
        static let maxTimestamp = 35
        static let producerID = 43
        static let producerEpoch = 51
        static let baseSequence = 53
        static let recordCount = 57
    }

    /// A view of `buffer`'s readable bytes, which must be exactly one batch.
    ///
    /// - Throws: `batchTooShort` below 61 bytes, `batchLengthMismatch` when batchLength + 12 differs from the
    ///   readable bytes.
    public init(_ buffer: ByteBuffer) throws(RecordBatchError) {
        guard buffer.readableBytes >= Self.headerSize else { throw .batchTooShort(size: buffer.readableBytes) }
        let declared = Int(buffer.getInteger(at: buffer.readerIndex + Field.batchLength, as: Int32.self)!)
        guard declared + Self.logOverhead == buffer.readableBytes else {
            throw .batchLengthMismatch(declared: declared + Self.logOverhead, available: buffer.readableBytes)
        }
        self.buffer = buffer
    }

    /// For callers that have already checked the sizes (the splitter, the builder).
    init(unchecked buffer: ByteBuffer) {
        self.buffer = buffer
    }

    @inline(__always)
    private func field<T: FixedWidthInteger>(_ offset: Int, as: T.Type = T.self) -> T {
        self.buffer.getInteger(at: self.buffer.readerIndex &+ offset, as: T.self)!
    }

    @inline(__always)
    private mutating func setField<T: FixedWidthInteger>(_ offset: Int, _ value: T) {
        self.buffer.setInteger(value, at: self.buffer.readerIndex &+ offset)
    }

    /// Total size of the batch in bytes (batchLength + 12).
    public var sizeInBytes: Int { self.buffer.readableBytes }

    /// The first offset; the broker overwrites it when it assigns offsets. Not covered by the CRC.
    public var baseOffset: Int64 {
        get { self.field(Field.baseOffset) }
        set { self.setField(Field.baseOffset, newValue) }
    }

    public var batchLength: Int32 { self.field(Field.batchLength) }

    /// Stamped by the leader on append. Not covered by the CRC.
    public var partitionLeaderEpoch: Int32 {
        get { self.field(Field.partitionLeaderEpoch) }
        set { self.setField(Field.partitionLeaderEpoch, newValue) }
    }

    /// Stamps the base offset and leader epoch of the batch that starts at `index` in `buffer`, in place: how a
    /// leader assigns offsets to batches still inside their request buffer, without first taking each batch out
    /// (which would copy it). Neither field is covered by the CRC.
    public static func stamp(
        baseOffset: Int64,
        partitionLeaderEpoch: Int32,
        ofBatchAt index: Int,
        in buffer: inout ByteBuffer
    ) {
        buffer.setInteger(baseOffset, at: index &+ Field.baseOffset)
        buffer.setInteger(partitionLeaderEpoch, at: index &+ Field.partitionLeaderEpoch)
    }

    public var magic: Int8 { self.field(Field.magic) }

    /// The stored CRC-32C of bytes [21, end).
    public var crc: UInt32 { self.field(Field.crc) }

    public var attributes: RecordBatchAttributes { RecordBatchAttributes(rawValue: self.field(Field.attributes)) }

    public var lastOffsetDelta: Int32 { self.field(Field.lastOffsetDelta) }

    /// baseOffset + lastOffsetDelta.
    public var lastOffset: Int64 { self.baseOffset &+ Int64(self.lastOffsetDelta) }

    /// The first record's timestamp; record timestamps are deltas from it.
    public var baseTimestamp: Int64 { self.field(Field.baseTimestamp) }

    /// The largest record timestamp, or the log-append time for LogAppendTime batches.
    public var maxTimestamp: Int64 { self.field(Field.maxTimestamp) }

    /// -1 when the producer is not idempotent.
    public var producerID: Int64 { self.field(Field.producerID) }

    public var producerEpoch: Int16 { self.field(Field.producerEpoch) }

    public var baseSequence: Int32 { self.field(Field.baseSequence) }

    /// The declared number of records (outside the compressed stream, so readable without decompressing).
    public var recordCount: Int32 { self.field(Field.recordCount) }

    /// The records area: raw records, or one compressed stream of all of them.
    public var recordsArea: ByteBuffer {
        self.buffer.getSlice(at: self.buffer.readerIndex + Self.headerSize, length: self.sizeInBytes - Self.headerSize)!
    }

    /// CRC-32C over [21, end), computed now.
    public func computeCRC() -> UInt32 {
        self.buffer.withUnsafeReadableBytes { bytes in
            CRC32C.extend(0, UnsafeRawBufferPointer(rebasing: bytes[Self.crcCoverageStart...]))
        }
    }

    /// Whether the stored CRC matches the bytes.
    public var isCRCValid: Bool { self.computeCRC() == self.crc }

    /// Sets the timestamp type and maxTimestamp (both covered by the CRC) and recomputes the CRC.
    public mutating func setMaxTimestamp(_ timestamp: Int64, timestampType: TimestampType) {
        var attributes = self.attributes
        attributes.timestampType = timestampType
        self.setField(Field.attributes, attributes.rawValue)
        self.setField(Field.maxTimestamp, timestamp)
        self.recomputeCRC()
    }

    /// Recomputes and stores the CRC: the builder's last step, and needed after any change to bytes [21, end).
    public mutating func recomputeCRC() {
        self.setField(Field.crc, self.computeCRC())
    }

    /// For topics with message.timestamp.type=LogAppendTime: marks the batch LogAppendTime with `timestamp` as its
    /// maxTimestamp (record timestamps are then ignored by readers) and recomputes the CRC, as Kafka's broker does.
    public mutating func setLogAppendTime(_ timestamp: Int64) {
        self.setMaxTimestamp(timestamp, timestampType: .logAppendTime)
    }
}

/// Whether a timestamp is the producer's (CreateTime) or the broker's (LogAppendTime): attributes bit 3.
public enum TimestampType: Hashable, Sendable {
    case createTime
    case logAppendTime
}

/// The attributes int16 of a v2 batch: codec (bits 0-2), timestamp type (3), transactional (4), control (5),
/// delete horizon (6). A value type; Sendable.
public struct RecordBatchAttributes: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int16

    public init(rawValue: Int16) {
        self.rawValue = rawValue
    }

    public init(
        codec: CompressionCodec = .none,
        timestampType: TimestampType = .createTime,
        isTransactional: Bool = false,
        isControl: Bool = false
    ) {
        self.rawValue = codec.rawValue
        self.timestampType = timestampType
        self.isTransactional = isTransactional
        self.isControl = isControl
    }

    /// The raw codec id, 0...7; ids 5...7 are not codecs.
    public var compressionCodecID: Int { Int(self.rawValue & 0x7) }

    /// The codec, or nil for an unknown id (UNSUPPORTED_COMPRESSION_TYPE).
    public var compressionCodec: CompressionCodec? { CompressionCodec(rawValue: self.rawValue & 0x7) }

    public var timestampType: TimestampType {
        get { self.rawValue & 0x08 != 0 ? .logAppendTime : .createTime }
        set { self.set(0x08, newValue == .logAppendTime) }
    }

    public var isTransactional: Bool {
        get { self.rawValue & 0x10 != 0 }
        set { self.set(0x10, newValue) }
    }

    public var isControl: Bool {
        get { self.rawValue & 0x20 != 0 }
        set { self.set(0x20, newValue) }
    }

    /// Set by compaction when baseTimestamp holds the delete horizon of tombstones.
    public var hasDeleteHorizon: Bool { self.rawValue & 0x40 != 0 }

    private mutating func set(_ bit: Int16, _ on: Bool) {
        self.rawValue = on ? self.rawValue | bit : self.rawValue & ~bit
    }
}
