import NIOCore

/// What down-converting one partition's fetched batches gave.
public enum LegacyDownConversion: Sendable {
    /// The message set (magic 0 or 1), possibly empty when nothing convertible was there.
    case messages(ByteBuffer)
    /// The first convertible batch uses a codec the old message formats do not have (zstd): the partition answers
    /// UNSUPPORTED_COMPRESSION_TYPE, as Kafka's `LazyDownConversionRecords` does.
    case unsupportedCompression(CompressionCodec)
}

/// Writes v2 record batches as a legacy message set (magic 0 or 1) for Fetch v0–3, as Kafka 3.x's
/// `RecordsUtil.downConvert` and `LazyDownConversionRecords` do:
///
/// - an uncompressed batch becomes one message per record, leaving out records below the fetch offset;
/// - a compressed batch becomes one wrapper message with the batch's codec (gzip; snappy in xerial framing; lz4
///   frames, with the magic-0 frame descriptor checksum Kafka computes over the frame magic too) whose value is
///   the compressed inner message set of all its records: with magic 1 the inner offsets are relative (each
///   record's offset minus the first's) and the wrapper carries the absolute offset of the last record and the
///   largest timestamp (or the LogAppendTime); with magic 0 the inner offsets are absolute;
/// - control batches (transaction markers) and batches left without records are skipped; headers are dropped;
///   magic 0 has no timestamps; a LogAppendTime batch gives every message its time and the timestamp-type bit;
/// - zstd has no legacy form: as the first convertible batch it is refused (`unsupportedCompression`), later the
///   message set ends before it, so the client fetches from there and gets the refusal then.
///
/// Size: the first converted batch is always whole, whatever its size; after it, messages are added while the set
/// stays within `maxBytes`. Kafka sends the converted bytes cut at the size of the unconverted ones (a partial
/// last message, or padding when shorter); here the set ends at a whole message instead.
///
/// Keys and values are copied straight from the batch (or its decompressed records) into the output; nothing is
/// allocated per record. Scratch buffers and the codec contexts are kept for the next call.
///
/// A value type holding a `CompressionContext`: not thread-safe, one per task at a time.
public struct LegacyMessageSetWriter {
    /// The message format written: 0 or 1.
    public let magic: Int8
    /// The most bytes one compressed batch may inflate to.
    public var maxDecompressedBytes: Int
    private let compression: CompressionContext
    /// A compressed batch's records, inflated.
    private var inflated = ByteBuffer()
    /// A wrapper's inner message set before compression.
    private var inner = ByteBuffer()

    /// Offset int64 and size int32 before each message.
    private static let logOverhead = 12
    /// crc, magic, attributes, [timestamp], key length, value length.
    private static func messageOverhead(_ magic: Int8) -> Int { magic == 0 ? 14 : 22 }
    private static let timestampTypeBit: Int8 = 0x08

    public init(magic: Int8, maxDecompressedBytes: Int = 64 * 1024 * 1024, compression: CompressionContext = .init()) {
        precondition(magic == 0 || magic == 1, "legacy message formats are magic 0 and 1")
        self.magic = magic
        self.maxDecompressedBytes = maxDecompressedBytes
        self.compression = compression
    }

    /// Converts the whole batches of `batches` (a fetched range; a trailing partial batch is ignored).
    ///
    /// - Parameters:
    ///   - fetchOffset: records of uncompressed batches below it are left out (Kafka's `firstOffset`).
    ///   - maxBytes: the size after which no more messages are added once the first batch is converted; the
    ///     broker passes the size of the unconverted batches. Nil: no limit.
    /// - Throws: a batch that is not magic 2 (`unsupportedMagic`), a damaged compressed stream or record.
    public mutating func downConvert(
        _ batches: ByteBuffer,
        fetchOffset: Int64,
        maxBytes: Int? = nil
    ) throws(RecordBatchError) -> LegacyDownConversion {
        var output = ByteBuffer()
        output.reserveCapacity(batches.readableBytes + batches.readableBytes / 4)
        let limit = maxBytes ?? Int.max
        var splitter = RecordBatchSplitter(batches)
        var converted = false
        while let batch = try splitter.next() {
            guard batch.magic == 2 else { throw .unsupportedMagic(batch.magic) }
            let attributes = batch.attributes
            if attributes.isControl { continue }
            guard let codec = attributes.compressionCodec else {
                throw .unsupportedCompression(attributes.compressionCodecID)
            }
            if codec == .zstd {
                if converted { break }
                return .unsupportedCompression(codec)
            }
            let before = output.writerIndex
            let complete: Bool
            if codec == .none {
                complete = try self.writeUncompressed(
                    batch,
                    fetchOffset: fetchOffset,
                    limit: converted ? limit : Int.max,
                    into: &output
                )
            } else {
                complete = try self.writeWrapper(batch, codec: codec, limit: converted ? limit : Int.max, into: &output)
            }
            if output.writerIndex > before { converted = true }
            if !complete { break }
        }
        return .messages(output)
    }

    // MARK: Uncompressed batches

    /// One message per record at or above `fetchOffset`; false when the next message would pass `limit` (the
    /// messages before it stay).
    private func writeUncompressed(
        _ batch: RecordBatch,
        fetchOffset: Int64,
        limit: Int,
        into output: inout ByteBuffer
    ) throws(RecordBatchError) -> Bool {
        let magic = self.magic
        let walk = RecordWalk(batch)
        let attributes: Int8 = magic == 1 && walk.logAppendTime != nil ? Self.timestampTypeBit : 0
        var complete = true
        try batch.buffer.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
            let records = UnsafeRawBufferPointer(rebasing: bytes[RecordBatch.headerSize...])
            try walk.forEach(records) { layout, offset, timestamp in
                guard offset >= fetchOffset else { return true }
                let size =
                    Self.logOverhead + Self.messageOverhead(magic) + max(layout.keyLength, 0)
                    + max(layout.valueLength, 0)
                guard output.readableBytes + size <= limit else {
                    complete = false
                    return false
                }
                Self.writeMessage(
                    into: &output,
                    offset: offset,
                    magic: magic,
                    attributes: attributes,
                    timestamp: timestamp,
                    key: Self.field(records, layout.keyStart, layout.keyLength),
                    value: Self.field(records, layout.valueStart, layout.valueLength)
                )
                return true
            }
        }
        return complete
    }

    // MARK: Compressed batches

    /// One wrapper message holding every record of `batch`, compressed with `codec`; false (and nothing written)
    /// when it would pass `limit`. A batch without records writes nothing and returns true.
    private mutating func writeWrapper(
        _ batch: RecordBatch,
        codec: CompressionCodec,
        limit: Int,
        into output: inout ByteBuffer
    ) throws(RecordBatchError) -> Bool {
        self.inflated.clear()
        try batch.buffer.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
            try self.compression.decompress(
                UnsafeRawBufferPointer(rebasing: bytes[RecordBatch.headerSize...]),
                codec: codec,
                maxDecompressedBytes: self.maxDecompressedBytes,
                appendingTo: &self.inflated
            )
        }
        let magic = self.magic
        let walk = RecordWalk(batch)
        let innerAttributes: Int8 = magic == 1 && walk.logAppendTime != nil ? Self.timestampTypeBit : 0
        var inner = self.inner
        self.inner = ByteBuffer()
        inner.clear()
        defer { self.inner = inner }
        var firstOffset: Int64?
        var lastOffset: Int64 = -1
        var maxTimestamp: Int64 = -1
        try self.inflated.withUnsafeReadableBytes { records throws(RecordBatchError) in
            try walk.forEach(records) { layout, offset, timestamp in
                let base = firstOffset ?? offset
                firstOffset = base
                lastOffset = offset
                maxTimestamp = max(maxTimestamp, timestamp)
                Self.writeMessage(
                    into: &inner,
                    offset: magic == 1 ? offset - base : offset,
                    magic: magic,
                    attributes: innerAttributes,
                    timestamp: timestamp,
                    key: Self.field(records, layout.keyStart, layout.keyLength),
                    value: Self.field(records, layout.valueStart, layout.valueLength)
                )
                return true
            }
        }
        guard firstOffset != nil else { return true }
        if let logAppendTime = walk.logAppendTime { maxTimestamp = logAppendTime }

        // The wrapper: header with the size, CRC and value length patched once the value is compressed in place.
        let start = output.writerIndex
        output.writeInteger(lastOffset)
        output.writeInteger(Int32(0))
        output.writeInteger(UInt32(0))
        output.writeInteger(magic)
        output.writeInteger(Int8(truncatingIfNeeded: codec.rawValue) | innerAttributes)
        if magic == 1 { output.writeInteger(maxTimestamp) }
        output.writeInteger(Int32(-1))
        let valueLengthIndex = output.writerIndex
        output.writeInteger(Int32(0))
        let valueStart = output.writerIndex
        try inner.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
            try self.compression.compress(bytes, codec: codec, appendingTo: &output)
        }
        let valueLength = output.writerIndex - valueStart
        if codec == .lz4, magic == 0 { Self.breakLZ4HeaderChecksum(in: &output, frameAt: valueStart) }
        guard output.readableBytes <= limit else {
            output.moveWriterIndex(to: start)
            return false
        }
        output.setInteger(Int32(output.writerIndex - start - Self.logOverhead), at: start + 8)
        output.setInteger(Int32(valueLength), at: valueLengthIndex)
        let crc = output.withUnsafeReadableBytes { bytes in
            LegacyMessageSet.crc32(UnsafeRawBufferPointer(rebasing: bytes[(start - output.readerIndex + 16)...]))
        }
        output.setInteger(crc, at: start + 12)
        return true
    }

    /// Kafka writes magic-0 lz4 frames with the frame descriptor checksum taken over the frame magic as well
    /// (the original encoder's bug, which magic-0 readers expect): the second byte of XXH32 over everything
    /// before the checksum byte.
    private static func breakLZ4HeaderChecksum(in output: inout ByteBuffer, frameAt start: Int) {
        guard let flags = output.getInteger(at: start + 4, as: UInt8.self) else { return }
        let checksumIndex = start + (flags & 0x08 != 0 ? 14 : 6)
        guard checksumIndex < output.writerIndex else { return }
        let hash = output.withUnsafeReadableBytes { bytes in
            let from = start - output.readerIndex
            return XXHash32.hash(UnsafeRawBufferPointer(rebasing: bytes[from..<(from + checksumIndex - start)]), seed: 0)
        }
        output.setInteger(UInt8(truncatingIfNeeded: hash >> 8), at: checksumIndex)
    }

    // MARK: Messages

    /// Appends one message: offset, size, CRC-32 over magic..end, magic, attributes, timestamp (magic 1), key and
    /// value with int32 lengths (-1 for null).
    @inline(__always)
    private static func writeMessage(
        into output: inout ByteBuffer,
        offset: Int64,
        magic: Int8,
        attributes: Int8,
        timestamp: Int64,
        key: UnsafeRawBufferPointer?,
        value: UnsafeRawBufferPointer?
    ) {
        let keyLength = key?.count ?? 0
        let valueLength = value?.count ?? 0
        let size = Self.messageOverhead(magic) + keyLength + valueLength
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.logOverhead + size) { target in
            let base = target.baseAddress!
            var position = 0
            func put<T: FixedWidthInteger>(_ value: T) {
                (base + position).storeBytes(of: value.bigEndian, as: T.self)
                position += MemoryLayout<T>.size
            }
            func put(_ bytes: UnsafeRawBufferPointer?) {
                guard let bytes else {
                    put(Int32(-1))
                    return
                }
                put(Int32(bytes.count))
                if let source = bytes.baseAddress, bytes.count > 0 {
                    (base + position).copyMemory(from: source, byteCount: bytes.count)
                }
                position += bytes.count
            }
            put(offset)
            put(Int32(size))
            position += 4
            put(magic)
            put(attributes)
            if magic == 1 { put(timestamp) }
            put(key)
            put(value)
            let crc = LegacyMessageSet.crc32(UnsafeRawBufferPointer(start: base + 16, count: position - 16))
            (base + 12).storeBytes(of: crc.bigEndian, as: UInt32.self)
            return position
        }
    }

    /// A key or value of a record, nil for null (length -1).
    @inline(__always)
    private static func field(_ records: UnsafeRawBufferPointer, _ start: Int, _ length: Int) -> UnsafeRawBufferPointer?
    {
        guard length >= 0 else { return nil }
        return UnsafeRawBufferPointer(rebasing: records[start..<(start + length)])
    }
}

/// Walks the records of one v2 batch's records area (raw or inflated) with the checks `RecordIterator` applies,
/// giving each record's layout, absolute offset and timestamp (the batch's LogAppendTime when it has one).
private struct RecordWalk {
    let baseOffset: Int64
    let baseTimestamp: Int64
    let count: Int32
    let lastOffsetDelta: Int32
    let logAppendTime: Int64?

    init(_ batch: RecordBatch) {
        self.baseOffset = batch.baseOffset
        self.baseTimestamp = batch.baseTimestamp
        self.count = batch.recordCount
        self.lastOffsetDelta = batch.lastOffsetDelta
        self.logAppendTime = batch.attributes.timestampType == .logAppendTime ? batch.maxTimestamp : nil
    }

    /// Calls `body` for each record until it returns false.
    @inline(__always)
    func forEach(
        _ records: UnsafeRawBufferPointer,
        _ body: (RecordLayout, Int64, Int64) -> Bool
    ) throws(RecordBatchError) {
        var position = 0
        var previousDelta: Int32 = -1
        var index = 0
        while index < Int(self.count) {
            guard position < records.count else {
                throw .recordsWalkedMismatch(declared: self.count, walked: index)
            }
            let layout = try RecordLayout.parseStored(
                records,
                at: position,
                index: index,
                previousDelta: &previousDelta,
                lastOffsetDelta: self.lastOffsetDelta
            )
            position = layout.end
            index += 1
            let offset = self.baseOffset &+ Int64(layout.offsetDelta)
            let timestamp = self.logAppendTime ?? (self.baseTimestamp &+ layout.timestampDelta)
            guard body(layout, offset, timestamp) else { return }
        }
    }
}
