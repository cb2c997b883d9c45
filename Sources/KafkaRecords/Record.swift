import NIOCore

/// One record decoded from a batch: absolute offset and timestamp, key and value as slices of the batch (or of
/// its decompressed records), headers. A value type; Sendable.
public struct Record: Hashable, Sendable {
    public var offset: Int64
    /// baseTimestamp + timestampDelta, or the batch's maxTimestamp in a LogAppendTime batch (as Kafka's reader).
    public var timestamp: Int64
    /// The record's attributes byte (unused by Kafka so far).
    public var attributes: Int8
    public var key: ByteBuffer?
    public var value: ByteBuffer?
    public var headers: [RecordHeader]

    public init(
        offset: Int64,
        timestamp: Int64,
        attributes: Int8 = 0,
        key: ByteBuffer?,
        value: ByteBuffer?,
        headers: [RecordHeader] = []
    ) {
        self.offset = offset
        self.timestamp = timestamp
        self.attributes = attributes
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// A record header: a non-null UTF-8 key and a nullable value. A value type; Sendable.
public struct RecordHeader: Hashable, Sendable {
    public var key: String
    public var value: ByteBuffer?

    public init(key: String, value: ByteBuffer?) {
        self.key = key
        self.value = value
    }
}

/// Decodes the records of one batch in order. A compressed batch is inflated once, when the iterator is made,
/// into a buffer the records' keys and values then slice.
///
/// Each record passes the structural checks of validation (lengths in bounds), so the iterator is safe on
/// unvalidated input; offset deltas must grow and stay within the batch's last offset delta, but may leave gaps,
/// as the log cleaner's rewritten batches do (a producer's batch must have none: `RecordBatchValidator` checks
/// that, and the CRC).
///
/// A value type; not shared between threads.
public struct RecordIterator {
    /// The (decompressed) records area.
    private let records: ByteBuffer
    private let baseOffset: Int64
    private let baseTimestamp: Int64
    private let declaredCount: Int32
    private let lastOffsetDelta: Int32
    private var previousDelta: Int32 = -1
    /// The batch's maxTimestamp when it is LogAppendTime: then every record carries it.
    private let logAppendTime: Int64?
    private var position = 0
    private var index = 0

    init(records: ByteBuffer, batch: RecordBatch) {
        self.records = records
        self.baseOffset = batch.baseOffset
        self.baseTimestamp = batch.baseTimestamp
        self.declaredCount = batch.recordCount
        self.lastOffsetDelta = batch.lastOffsetDelta
        self.logAppendTime = batch.attributes.timestampType == .logAppendTime ? batch.maxTimestamp : nil
    }

    /// The next record, or nil after the last.
    ///
    /// - Throws: `malformedRecord`, `offsetDeltaOutOfOrder`, `trailingBytes` or `recordsWalkedMismatch`.
    public mutating func next() throws(RecordBatchError) -> Record? {
        let available = self.records.readableBytes
        guard self.index < Int(self.declaredCount) else {
            guard self.position == available else {
                throw .trailingBytes(count: available - self.position, afterRecords: self.index)
            }
            return nil
        }
        guard self.position < available else {
            throw .recordsWalkedMismatch(declared: self.declaredCount, walked: self.index)
        }
        let (position, index, lastOffsetDelta) = (self.position, self.index, self.lastOffsetDelta)
        var previousDelta = self.previousDelta
        let layout = try self.records.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
            try RecordLayout.parseStored(
                bytes,
                at: position,
                index: index,
                previousDelta: &previousDelta,
                lastOffsetDelta: lastOffsetDelta
            )
        }
        self.previousDelta = previousDelta
        var headers: [RecordHeader] = []
        if layout.headerCount > 0 {
            headers.reserveCapacity(layout.headerCount)
            var cursor = layout.headersStart
            for _ in 0..<layout.headerCount {
                let keyLength = self.readLength(&cursor)
                let key = self.slice(cursor, keyLength).map { String(buffer: $0) } ?? ""
                cursor += keyLength
                let valueLength = self.readLength(&cursor)
                headers.append(RecordHeader(key: key, value: self.slice(cursor, valueLength)))
                cursor += max(valueLength, 0)
            }
        }
        self.position = layout.end
        self.index += 1
        return Record(
            offset: self.baseOffset &+ Int64(layout.offsetDelta),
            timestamp: self.logAppendTime ?? (self.baseTimestamp &+ layout.timestampDelta),
            attributes: layout.attributes,
            key: self.slice(layout.keyStart, layout.keyLength),
            value: self.slice(layout.valueStart, layout.valueLength),
            headers: headers
        )
    }

    /// Every remaining record.
    public mutating func collect() throws(RecordBatchError) -> [Record] {
        var result: [Record] = []
        result.reserveCapacity(Int(max(0, min(self.declaredCount, 1 << 16))))
        while let record = try self.next() { result.append(record) }
        return result
    }

    private func slice(_ start: Int, _ length: Int) -> ByteBuffer? {
        guard length >= 0 else { return nil }
        return self.records.getSlice(at: self.records.readerIndex + start, length: length)
    }

    /// A header length already checked by `RecordLayout.parse`.
    private func readLength(_ cursor: inout Int) -> Int {
        let (value, next) = self.records.withUnsafeReadableBytes { bytes in
            var reader = VarintCursor(bytes: bytes, position: cursor, end: bytes.count)
            return (Int(reader.readVarint()!), reader.position)
        }
        cursor = next
        return value
    }
}

extension RecordBatch {
    /// An iterator over this batch's records, inflating a compressed batch (at most `maxDecompressedBytes`) with
    /// `compression` into a buffer from `allocator`.
    ///
    /// - Throws: `unsupportedCompression` for an unknown codec id, or any decompression error.
    public func makeRecordIterator(
        compression: CompressionContext,
        maxDecompressedBytes: Int,
        allocator: ByteBufferAllocator = .init()
    ) throws(RecordBatchError) -> RecordIterator {
        let attributes = self.attributes
        guard let codec = attributes.compressionCodec else {
            throw .unsupportedCompression(attributes.compressionCodecID)
        }
        if codec == .none {
            return RecordIterator(records: self.recordsArea, batch: self)
        }
        var output = allocator.buffer(capacity: 0)
        try self.buffer.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
            let compressed = UnsafeRawBufferPointer(rebasing: bytes[RecordBatch.headerSize...])
            try compression.decompress(
                compressed,
                codec: codec,
                maxDecompressedBytes: maxDecompressedBytes,
                appendingTo: &output
            )
        }
        return RecordIterator(records: output, batch: self)
    }
}
