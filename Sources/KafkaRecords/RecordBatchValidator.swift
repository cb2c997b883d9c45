import NIOCore

/// What the broker enforces on batches from clients, besides structure (which is always checked).
/// A value type; Sendable.
public struct RecordBatchValidationOptions: Hashable, Sendable {
    /// The most bytes one compressed batch may inflate to; a larger claim or stream is refused (INVALID_RECORD).
    public var maxDecompressedBytes: Int
    /// Control batches (attributes bit 5) are written only by the broker's transaction markers.
    public var refuseControlBatches: Bool
    /// Compacted topics (cleanup.policy=compact) need a key on every record.
    public var requireKeys: Bool
    /// Record timestamp bounds for CreateTime topics; nil skips the check (LogAppendTime topics).
    public var timestampBounds: TimestampBounds?
    /// Batches read back from a log rather than sent by a producer: the log cleaner leaves gaps between offset
    /// deltas and batches with no records (a producer's last batch), so deltas need only grow within
    /// lastOffsetDelta, and a count of 0 or below lastOffsetDelta + 1 is whole.
    public var storedBatches: Bool

    public init(
        maxDecompressedBytes: Int = 64 * 1024 * 1024,
        refuseControlBatches: Bool = true,
        requireKeys: Bool = false,
        timestampBounds: TimestampBounds? = nil,
        storedBatches: Bool = false
    ) {
        self.maxDecompressedBytes = maxDecompressedBytes
        self.refuseControlBatches = refuseControlBatches
        self.requireKeys = requireKeys
        self.timestampBounds = timestampBounds
        self.storedBatches = storedBatches
    }
}

/// The accepted window around the broker's clock: log.message.timestamp.before.max.ms and
/// log.message.timestamp.after.max.ms (the older message.timestamp.difference.max.ms sets both).
public struct TimestampBounds: Hashable, Sendable {
    public var now: Int64
    public var maxBefore: Int64
    public var maxAfter: Int64

    public init(now: Int64, maxBefore: Int64, maxAfter: Int64) {
        self.now = now
        self.maxBefore = maxBefore
        self.maxAfter = maxAfter
    }

    public init(now: Int64, maxDifference: Int64) {
        self.init(now: now, maxBefore: maxDifference, maxAfter: maxDifference)
    }

    @inline(__always)
    func contains(_ timestamp: Int64) -> Bool {
        let difference = timestamp.subtractingReportingOverflow(self.now)
        if difference.overflow { return false }
        return difference.partialValue <= self.maxAfter && -difference.partialValue <= self.maxBefore
    }
}

/// What a walk over a batch's records found. A value type; Sendable.
public struct RecordBatchSummary: Hashable, Sendable {
    /// Records walked (equal to the declared count and lastOffsetDelta + 1 once validated).
    public var recordCount: Int
    /// The largest record timestamp, -1 (Kafka's NO_TIMESTAMP) when no record has a larger one.
    public var maxTimestamp: Int64
    /// The offset delta of the first record carrying `maxTimestamp`, -1 with it.
    public var offsetDeltaOfMaxTimestamp: Int32
    /// Bytes of the records area once decompressed.
    public var uncompressedRecordsSize: Int
}

/// Checks record batches as Kafka's broker does on Produce (`LogValidator`, `DefaultRecordBatch.ensureValid`,
/// `DefaultRecord.readFrom`), in this order:
///
/// 1. size and header sanity (the `RecordBatch` view), magic 2;
/// 2. CRC-32C over [21, end) (CORRUPT_MESSAGE);
/// 3. a known codec (UNSUPPORTED_COMPRESSION_TYPE), no control batch, a base sequence for idempotent producers,
///    recordCount > 0 and equal to lastOffsetDelta + 1;
/// 4. a walk over the records, through the decompressor for compressed batches: each record's length varint in
///    bounds, its fields within that length, offset deltas 0, 1, 2, ..., key and header lengths in bounds, keys
///    when required, timestamps within bounds, as many records as declared and no bytes after them.
///
/// The walk allocates nothing per record: it reads raw bytes. A compressed batch is inflated once into a scratch
/// buffer the validator keeps and reuses, bounded by `options.maxDecompressedBytes`.
///
/// Not thread-safe (it owns a `CompressionContext` and a scratch buffer): one per connection or thread.
public struct RecordBatchValidator {
    public var options: RecordBatchValidationOptions
    private let compression: CompressionContext
    private var scratch: ByteBuffer

    public init(options: RecordBatchValidationOptions = .init(), allocator: ByteBufferAllocator = .init()) {
        self.options = options
        self.compression = CompressionContext()
        self.scratch = allocator.buffer(capacity: 0)
    }

    /// Validates `batch`; on success returns what the walk found (for the log's max timestamp and time index).
    public mutating func validate(_ batch: RecordBatch) throws(RecordBatchError) -> RecordBatchSummary {
        try Self.checkHeader(batch, options: self.options)
        let codec = batch.attributes.compressionCodec!
        let bounds = self.options.timestampBounds
        let requireKeys = self.options.requireKeys
        let stored = self.options.storedBatches
        if codec == .none {
            return try batch.buffer.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
                let records = UnsafeRawBufferPointer(rebasing: bytes[RecordBatch.headerSize...])
                return try Self.walk(records, batch: batch, requireKeys: requireKeys, timestampBounds: bounds,
                                     storedBatch: stored)
            }
        }
        // A stored batch emptied by the cleaner is written uncompressed; a compressed one always holds records.
        self.scratch.clear()
        let limit = self.options.maxDecompressedBytes
        let compression = self.compression
        try batch.buffer.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
            let compressed = UnsafeRawBufferPointer(rebasing: bytes[RecordBatch.headerSize...])
            try compression.decompress(
                compressed,
                codec: codec,
                maxDecompressedBytes: limit,
                appendingTo: &self.scratch
            )
        }
        return try self.scratch.withUnsafeReadableBytes { records throws(RecordBatchError) in
            try Self.walk(records, batch: batch, requireKeys: requireKeys, timestampBounds: bounds, storedBatch: stored)
        }
    }

    /// Steps 1-3: everything that needs only the header and the CRC.
    static func checkHeader(_ batch: RecordBatch, options: RecordBatchValidationOptions) throws(RecordBatchError) {
        guard batch.magic == 2 else { throw .unsupportedMagic(batch.magic) }
        let computed = batch.computeCRC()
        guard computed == batch.crc else { throw .crcMismatch(stored: batch.crc, computed: computed) }
        let attributes = batch.attributes
        guard attributes.compressionCodec != nil else { throw .unsupportedCompression(attributes.compressionCodecID) }
        if options.refuseControlBatches, attributes.isControl { throw .controlBatchNotAllowed }
        if batch.producerID >= 0, batch.baseSequence < 0 {
            throw .invalidSequence(producerID: batch.producerID, baseSequence: batch.baseSequence)
        }
        let count = batch.recordCount
        if options.storedBatches {
            guard count >= 0, Int64(count) <= Int64(batch.lastOffsetDelta) + 1 else {
                throw .recordCountMismatch(declared: count, lastOffsetDelta: batch.lastOffsetDelta)
            }
            return
        }
        guard count > 0 else { throw .invalidRecordCount(count) }
        guard Int64(batch.lastOffsetDelta) + 1 == Int64(count) else {
            throw .recordCountMismatch(declared: count, lastOffsetDelta: batch.lastOffsetDelta)
        }
    }

    /// Step 4 over the (decompressed) records area.
    static func walk(
        _ records: UnsafeRawBufferPointer,
        batch: RecordBatch,
        requireKeys: Bool,
        timestampBounds: TimestampBounds?,
        storedBatch: Bool = false
    ) throws(RecordBatchError) -> RecordBatchSummary {
        let declared = Int(batch.recordCount)
        let baseTimestamp = batch.baseTimestamp
        var maxTimestamp: Int64 = -1
        var offsetDeltaOfMaxTimestamp: Int32 = -1
        var position = 0
        var index = 0
        var previousDelta: Int32 = -1
        while position < records.count {
            guard index < declared else {
                throw .trailingBytes(count: records.count - position, afterRecords: index)
            }
            let layout =
                storedBatch
                ? try RecordLayout.parseStored(
                    records,
                    at: position,
                    index: index,
                    previousDelta: &previousDelta,
                    lastOffsetDelta: batch.lastOffsetDelta
                )
                : try RecordLayout.parse(records, at: position, index: index)
            if !storedBatch, layout.offsetDelta != Int32(truncatingIfNeeded: index) {
                throw .nonConsecutiveOffsetDelta(index: index, expected: Int32(index), found: layout.offsetDelta)
            }
            if requireKeys, layout.keyLength < 0 { throw .missingKey(index: index) }
            let timestamp = baseTimestamp &+ layout.timestampDelta
            if let timestampBounds, timestamp != -1, !timestampBounds.contains(timestamp) {
                throw .timestampOutOfBounds(index: index, timestamp: timestamp, now: timestampBounds.now)
            }
            if timestamp > maxTimestamp {
                maxTimestamp = timestamp
                offsetDeltaOfMaxTimestamp = layout.offsetDelta
            }
            position = layout.end
            index += 1
        }
        guard index == declared else { throw .recordsWalkedMismatch(declared: batch.recordCount, walked: index) }
        return RecordBatchSummary(
            recordCount: index,
            maxTimestamp: maxTimestamp,
            offsetDeltaOfMaxTimestamp: offsetDeltaOfMaxTimestamp,
            uncompressedRecordsSize: records.count
        )
    }
}
