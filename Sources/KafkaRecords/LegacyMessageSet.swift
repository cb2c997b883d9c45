import CZlib
import NIOCore

/// The message formats before record batches: magic 0 (Kafka 0.8-0.9) and magic 1 (0.10, which added timestamps).
/// Produce v0-2 carry them as a "message set": messages one after another, each
///
/// ```
/// offset int64 @0 | size int32 @8 (bytes after this field) | crc uint32 @12 (CRC-32, IEEE, over [16, end))
/// magic int8 @16 | attributes int8 @17 (bits 0-2 codec, bit 3 LogAppendTime for magic 1)
/// [timestamp int64 @18, magic 1 only] | key: int32 length (-1 null) + bytes | value: int32 length + bytes
/// ```
///
/// The offset and size fields are laid out as in a v2 batch's first 12 bytes, and magic sits at byte 16 in both
/// formats, so one byte tells them apart. A compressed message (a "wrapper") holds a whole inner message set,
/// compressed, as its value; its inner messages are never compressed themselves. For magic 1 the inner offsets are
/// relative (0, 1, 2, ...) and the wrapper's offset is the last inner one's (or 0 from some producers).
public enum LegacyMessageSet {
    /// offset and size: the bytes not counted by size.
    public static let logOverhead = 12
    /// crc, magic, attributes, key length and value length: the smallest magic 0 message, after the log overhead.
    public static let minimumMessageSizeV0 = 14
    /// The same plus the timestamp.
    public static let minimumMessageSizeV1 = 22
    /// The bytes of a message's head before its key length.
    static func keyLengthOffset(magic: Int8) -> Int { magic == 0 ? 18 : 26 }

    /// Attributes bit 3 of a magic 1 message: the timestamp is the broker's (LogAppendTime).
    static let logAppendTimeBit: UInt8 = 0x08

    /// The magic of the first message or batch in `records` when it is 0 or 1 (a message set), nil for a v2
    /// batch, a different magic or fewer than 17 bytes. Reads one byte; the v2 path pays nothing more.
    @inline(__always)
    public static func legacyMagic(of records: ByteBuffer) -> Int8? {
        guard let magic = records.getInteger(at: records.readerIndex &+ 16, as: Int8.self), magic == 0 || magic == 1
        else { return nil }
        return magic
    }
}

/// Where the fields of one magic 0/1 message lie, found by one bounded pass over its bytes with its CRC checked.
/// Allocates nothing.
struct LegacyMessageLayout {
    var offset: Int64
    var start: Int
    /// The first byte after the message (start + 12 + size).
    var end: Int
    var magic: Int8
    var attributes: UInt8
    /// The message's own timestamp; -1 for magic 0.
    var timestamp: Int64
    /// -1 for a null key.
    var keyLength: Int
    var keyStart: Int
    /// -1 for a null value.
    var valueLength: Int
    var valueStart: Int

    /// The codec id, attributes bits 0-2.
    var codecID: Int { Int(self.attributes & 0x7) }

    var isLogAppendTime: Bool { self.magic == 1 && self.attributes & LegacyMessageSet.logAppendTimeBit != 0 }

    var sizeInBytes: Int { self.end - self.start }

    /// Parses the message at `start` of `bytes`, checking, in Kafka's order: the head is whole, size at least the
    /// smallest message (CORRUPT_MESSAGE), the message whole (CORRUPT_MESSAGE: LogBroker refuses a cut message
    /// where Kafka drops it), magic 0 or 1 (2 is INVALID_RECORD, as a magic mixed into a set; others
    /// CORRUPT_MESSAGE), at most `maxSize` bytes (MESSAGE_TOO_LARGE), the CRC-32 (CORRUPT_MESSAGE), then key and
    /// value lengths within the message (CORRUPT_MESSAGE). Bytes after the value are ignored, as Kafka does.
    @inline(__always)
    static func parse(_ bytes: UnsafeRawBufferPointer, at start: Int, maxSize: Int) throws(RecordBatchError) -> Self {
        let remaining = bytes.count - start
        guard remaining >= LegacyMessageSet.logOverhead else {
            throw .corruptLegacyMessage(
                position: start,
                what: "only \(remaining) bytes left, less than the 12-byte offset and size"
            )
        }
        let offset = Int64(bitPattern: UInt64(bigEndianBytes: bytes, at: start))
        let size = Int(Int32(bitPattern: UInt32(bigEndianBytes: bytes, at: start + 8)))
        guard size >= LegacyMessageSet.minimumMessageSizeV0 else {
            throw .corruptLegacyMessage(
                position: start,
                what: "size \(size) is less than the smallest message (\(LegacyMessageSet.minimumMessageSizeV0))"
            )
        }
        guard size <= remaining - LegacyMessageSet.logOverhead else {
            throw .corruptLegacyMessage(
                position: start,
                what: "size \(size) overruns the \(remaining - LegacyMessageSet.logOverhead) bytes left (a cut message)"
            )
        }
        let magic = Int8(bitPattern: bytes[start + 16])
        guard magic == 0 || magic == 1 else {
            if magic == 2 {
                throw .invalidLegacyMessage(position: start, what: "a magic 2 batch inside a magic 0/1 message set")
            }
            throw .corruptLegacyMessage(position: start, what: "magic \(magic) is not 0, 1 or 2")
        }
        let end = start + LegacyMessageSet.logOverhead + size
        guard end - start <= maxSize else {
            throw .legacyMessageTooLarge(position: start, size: end - start, limit: maxSize)
        }
        let minimum = magic == 0 ? LegacyMessageSet.minimumMessageSizeV0 : LegacyMessageSet.minimumMessageSizeV1
        guard size >= minimum else {
            throw .corruptLegacyMessage(position: start, what: "size \(size) is less than a magic \(magic) message")
        }
        let stored = UInt32(bigEndianBytes: bytes, at: start + 12)
        let computed = LegacyMessageSet.crc32(UnsafeRawBufferPointer(rebasing: bytes[(start + 16)..<end]))
        guard stored == computed else {
            throw .corruptLegacyMessage(
                position: start,
                what: "stored CRC-32 0x\(String(stored, radix: 16)) but computed 0x\(String(computed, radix: 16))"
            )
        }
        var position = start + LegacyMessageSet.keyLengthOffset(magic: magic)
        let keyLength = try Self.readLength(bytes, at: &position, end: end, start: start, field: "key")
        let keyStart = position
        position += max(keyLength, 0)
        let valueLength = try Self.readLength(bytes, at: &position, end: end, start: start, field: "value")
        return Self(
            offset: offset,
            start: start,
            end: end,
            magic: magic,
            attributes: bytes[start + 17],
            timestamp: magic == 0 ? -1 : Int64(bitPattern: UInt64(bigEndianBytes: bytes, at: start + 18)),
            keyLength: keyLength,
            keyStart: keyStart,
            valueLength: valueLength,
            valueStart: position
        )
    }

    /// A key or value length (any negative one is null, as Kafka reads it) whose bytes lie within the message.
    @inline(__always)
    private static func readLength(
        _ bytes: UnsafeRawBufferPointer,
        at position: inout Int,
        end: Int,
        start: Int,
        field: String
    ) throws(RecordBatchError) -> Int {
        guard end - position >= 4 else {
            throw .corruptLegacyMessage(position: start, what: "\(field) length cut by the message's end")
        }
        let length = Int(Int32(bitPattern: UInt32(bigEndianBytes: bytes, at: position)))
        position += 4
        guard length < 0 || length <= end - position else {
            throw .corruptLegacyMessage(
                position: start,
                what: "\(field) of \(length) bytes overruns the \(end - position) bytes left in the message"
            )
        }
        return max(length, -1)
    }

    /// The key's bytes, nil when null; valid while `bytes` is.
    func key(in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        self.keyLength < 0
            ? nil : UnsafeRawBufferPointer(rebasing: bytes[self.keyStart..<(self.keyStart + self.keyLength)])
    }

    /// The value's bytes, nil when null; valid while `bytes` is.
    func value(in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        self.valueLength < 0
            ? nil : UnsafeRawBufferPointer(rebasing: bytes[self.valueStart..<(self.valueStart + self.valueLength)])
    }
}

/// Limits and topic settings for one conversion. A value type; Sendable.
public struct LegacyMessageSetConversionOptions: Hashable, Sendable {
    /// max.message.bytes: the largest message (or compressed wrapper) of the set, its 12-byte head included.
    public var maxMessageBytes: Int
    /// The most bytes a wrapper's value may inflate to.
    public var maxDecompressedBytes: Int
    /// message.timestamp.type=LogAppendTime: a producer's own LogAppendTime mark is refused on such a topic.
    public var logAppendTimeTopic: Bool

    public init(maxMessageBytes: Int, maxDecompressedBytes: Int = 64 * 1024 * 1024, logAppendTimeTopic: Bool = false) {
        self.maxMessageBytes = maxMessageBytes
        self.maxDecompressedBytes = maxDecompressedBytes
        self.logAppendTimeTopic = logAppendTimeTopic
    }
}

/// What a conversion produced: the v2 batch and what the message set was. A value type; Sendable.
public struct LegacyMessageSetConversion: Hashable, Sendable {
    /// One v2 batch (base offset 0, producer id -1, CreateTime, the source's codec), CRC-32C set.
    public var batch: RecordBatch
    /// The message set's magic, 0 or 1.
    public var magic: Int8
    /// The wrapper's codec, `.none` for an uncompressed set.
    public var codec: CompressionCodec
    /// Messages converted (the inner messages of a wrapper).
    public var recordCount: Int
}

/// Reads a magic 0/1 message set, checks it as Kafka 3.9's broker does on Produce v0-2, and converts it into one
/// v2 record batch, as Kafka's `LogValidator` rebuilds such a set for a v2 log (`convertAndAssignOffsetsNonCompressed`,
/// `buildRecordsAndAssignOffsets`):
///
/// - every message whole, its size at least the smallest message and at most max.message.bytes, its CRC-32 valid,
///   magic 0 or 1 and the same throughout; codec ids above 4 are UNSUPPORTED_COMPRESSION_TYPE, zstd (which needs
///   magic 2) INVALID_RECORD;
/// - a compressed wrapper (gzip, snappy in xerial or raw framing, lz4) must be the set's only message and have a
///   value; its value is inflated (at most `maxDecompressedBytes`) and its inner messages checked the same way,
///   each with the wrapper's magic and uncompressed; at least one. A magic 1 wrapper's offset must be 0 or at least
///   its last inner offset (INVALID_RECORD). Inner offsets that are not 0, 1, 2, ... are accepted, as Kafka accepts
///   them: the conversion assigns offsets afresh. Magic 0 lz4 wrappers carry the frame-descriptor checksum that
///   Kafka 0.8-0.9 computed wrongly; Kafka ignores that byte for magic 0, and so does this reader;
/// - timestamps: magic 0 messages have none (-1); magic 1 keep theirs, except that inner messages of a wrapper
///   marked LogAppendTime take the wrapper's timestamp. A producer's LogAppendTime mark is refused (INVALID_TIMESTAMP)
///   on a LogAppendTime topic, or on a message without a timestamp, as Kafka's `validateTimestamp` does.
///
/// The batch keeps keys and values, has no headers, producer id -1, CreateTime, and is compressed with the source's
/// codec (compression.type=producer). Timestamp bounds, keys on compacted topics, max.message.bytes of the converted
/// batch, offsets, the leader epoch and LogAppendTime stamping are left to the v2 append path the batch then takes.
///
/// Not thread-safe (it owns a `CompressionContext` and buffers it reuses): one per task at a time.
public struct LegacyMessageSetConverter {
    public var options: LegacyMessageSetConversionOptions
    private let compression: CompressionContext
    /// A wrapper's inner message set, inflated.
    private var inflated: ByteBuffer
    /// A magic 0 lz4 frame copied with its descriptor checksum corrected.
    private var repairedFrame: ByteBuffer
    private var builder: RecordBatchBuilder

    public init(options: LegacyMessageSetConversionOptions, allocator: ByteBufferAllocator = .init()) {
        self.options = options
        self.compression = CompressionContext()
        self.inflated = allocator.buffer(capacity: 0)
        self.repairedFrame = allocator.buffer(capacity: 0)
        self.builder = RecordBatchBuilder(allocator: allocator)
    }

    /// Bytes the reusable buffers hold; a caller keeping converters for reuse drops one that grew large.
    public var retainedBytes: Int {
        self.inflated.capacity + self.repairedFrame.capacity + self.builder.uncompressedRecordsSize
    }

    /// Checks `messageSet` (one partition's records field of a Produce v0-2) and converts it to one v2 batch.
    ///
    /// - Throws: `RecordBatchError`, whose `kafkaErrorCode` is the Produce answer; nothing is returned then.
    public mutating func convert(_ messageSet: ByteBuffer) throws(RecordBatchError) -> LegacyMessageSetConversion {
        self.builder.reset()
        self.builder.codec = .none
        let options = self.options
        var setMagic: Int8 = -1
        var wrapper: (message: LegacyMessageLayout, codec: CompressionCodec)?
        var count = 0
        var refusedRecord: Int?
        try messageSet.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
            var position = 0
            while position < bytes.count {
                let message = try LegacyMessageLayout.parse(bytes, at: position, maxSize: options.maxMessageBytes)
                if count == 0 {
                    setMagic = message.magic
                } else if message.magic != setMagic {
                    throw .invalidLegacyMessage(
                        position: position,
                        what: "magic \(message.magic) differs from the first message's magic \(setMagic)"
                    )
                }
                let codec = try Self.codec(of: message)
                if codec != .none {
                    // Kafka: "Compressed outer record has more than one batch".
                    guard count == 0, message.end == bytes.count else {
                        throw .invalidLegacyMessage(
                            position: position,
                            what: "a compressed wrapper message must be the only message of its set"
                        )
                    }
                    wrapper = (message, codec)
                } else {
                    let refused = Self.append(
                        message,
                        from: bytes,
                        timestamp: message.timestamp,
                        logAppendTime: message.isLogAppendTime,
                        options: options,
                        to: &self.builder
                    )
                    if refused, refusedRecord == nil { refusedRecord = count }
                }
                count += 1
                position = message.end
            }
        }
        guard count > 0 else {
            throw .invalidLegacyMessage(position: 0, what: "the message set holds no message")
        }
        var codec = CompressionCodec.none
        if let wrapper {
            codec = wrapper.codec
            (count, refusedRecord) = try self.appendInner(of: wrapper.message, in: messageSet, codec: codec)
        }
        if let refusedRecord { throw .legacyLogAppendTime(index: refusedRecord) }
        self.builder.codec = codec
        let batch = try self.builder.build(compression: self.compression)
        return LegacyMessageSetConversion(batch: batch, magic: setMagic, codec: codec, recordCount: count)
    }

    /// The message's codec: unknown ids are UNSUPPORTED_COMPRESSION_TYPE, zstd (magic 2 only) INVALID_RECORD.
    private static func codec(of message: LegacyMessageLayout) throws(RecordBatchError) -> CompressionCodec {
        guard let codec = CompressionCodec(rawValue: Int16(message.codecID)) else {
            throw .unsupportedCompression(message.codecID)
        }
        guard codec != .zstd else {
            throw .invalidLegacyMessage(
                position: message.start,
                what: "zstd needs magic 2; this is magic \(message.magic)"
            )
        }
        return codec
    }

    /// Appends one uncompressed message's key, value and timestamp to the batch; returns whether Kafka's
    /// `validateTimestamp` refuses it: a CreateTime topic checks the bounds of a real timestamp (the v2 path does that
    /// here), otherwise a batch the producer marked LogAppendTime is refused. The caller throws for the first refused
    /// record only after every message was read, as Kafka collects record errors but throws CRC errors at once.
    @inline(__always)
    private static func append(
        _ message: LegacyMessageLayout,
        from bytes: UnsafeRawBufferPointer,
        timestamp: Int64,
        logAppendTime: Bool,
        options: LegacyMessageSetConversionOptions,
        to builder: inout RecordBatchBuilder
    ) -> Bool {
        builder.append(timestamp: timestamp, key: message.key(in: bytes), value: message.value(in: bytes))
        return logAppendTime && (options.logAppendTimeTopic || timestamp == -1)
    }

    /// Inflates `wrapper`'s value, checks its inner messages and appends them; returns how many, and the first one
    /// refused for a LogAppendTime mark.
    private mutating func appendInner(
        of wrapper: LegacyMessageLayout,
        in messageSet: ByteBuffer,
        codec: CompressionCodec
    ) throws(RecordBatchError) -> (count: Int, refusedRecord: Int?) {
        guard wrapper.valueLength >= 0 else {
            throw .invalidLegacyMessage(position: wrapper.start, what: "a compressed wrapper with a null value")
        }
        self.inflated.clear()
        let limit = self.options.maxDecompressedBytes
        let compression = self.compression
        if codec == .lz4, wrapper.magic == 0 {
            self.repairedFrame.clear()
            _ = messageSet.withUnsafeReadableBytes { bytes in
                self.repairedFrame.writeBytes(
                    UnsafeRawBufferPointer(
                        rebasing: bytes[wrapper.valueStart..<(wrapper.valueStart + wrapper.valueLength)]
                    )
                )
            }
            LegacyMessageSet.repairLZ4DescriptorChecksum(&self.repairedFrame)
            try self.repairedFrame.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
                try compression.decompress(
                    bytes,
                    codec: codec,
                    maxDecompressedBytes: limit,
                    appendingTo: &self.inflated
                )
            }
        } else {
            try messageSet.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
                try compression.decompress(
                    wrapper.value(in: bytes)!,
                    codec: codec,
                    maxDecompressedBytes: limit,
                    appendingTo: &self.inflated
                )
            }
        }
        let options = self.options
        let wrapperLogAppendTime = wrapper.isLogAppendTime
        return try self.inflated.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
            var position = 0
            var count = 0
            var lastInnerOffset: Int64 = 0
            var refusedRecord: Int?
            while position < bytes.count {
                // Kafka reads inner messages without a size limit beyond the inflated bytes themselves.
                let inner = try LegacyMessageLayout.parse(bytes, at: position, maxSize: Int.max)
                guard inner.magic == wrapper.magic else {
                    throw .invalidLegacyMessage(
                        position: position,
                        what: "inner message magic \(inner.magic) differs from its wrapper's magic \(wrapper.magic)"
                    )
                }
                guard inner.codecID == 0 else {
                    throw .invalidLegacyMessage(position: position, what: "an inner message is compressed itself")
                }
                let refused = Self.append(
                    inner,
                    from: bytes,
                    timestamp: wrapperLogAppendTime ? wrapper.timestamp : inner.timestamp,
                    logAppendTime: wrapperLogAppendTime,
                    options: options,
                    to: &self.builder
                )
                if refused, refusedRecord == nil { refusedRecord = count }
                lastInnerOffset = inner.offset
                count += 1
                position = inner.end
            }
            guard count > 0 else {
                throw .invalidLegacyMessage(position: wrapper.start, what: "a compressed wrapper with no inner message")
            }
            // Kafka's `DeepRecordsIterator`: relative inner offsets end at the wrapper's offset (0 from librdkafka).
            if wrapper.magic == 1, wrapper.offset != 0, wrapper.offset < lastInnerOffset {
                throw .invalidLegacyMessage(
                    position: wrapper.start,
                    what: "wrapper offset \(wrapper.offset) is less than the last inner offset \(lastInnerOffset) "
                        + "and not 0"
                )
            }
            return (count, refusedRecord)
        }
    }
}

extension LegacyMessageSet {
    /// CRC-32 (IEEE, zlib's) of `bytes`: a magic 0/1 message's checksum over [16, end).
    @inline(__always)
    public static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        var crc: uLong = 0
        var position = 0
        // zlib's length is a 32-bit uInt: feed it in pieces below 1 GiB.
        while position < bytes.count {
            let length = min(bytes.count - position, 1 << 30)
            crc = CZlib.crc32(crc, (base + position).assumingMemoryBound(to: Bytef.self), uInt(length))
            position += length
        }
        return UInt32(truncatingIfNeeded: crc)
    }

    /// Rewrites the header checksum byte of the LZ4 frame in `frame` to the correct one. Kafka 0.8-0.9 clients
    /// hashed the 4-byte magic number too; Kafka ignores the byte for magic 0 (`Lz4BlockInputStream`'s
    /// `ignoreFlagDescriptorChecksum`), liblz4 checks it. Leaves anything too short or not an LZ4 frame alone,
    /// for the decompressor to refuse.
    static func repairLZ4DescriptorChecksum(_ frame: inout ByteBuffer) {
        let start = frame.readerIndex
        guard frame.readableBytes >= 7,
            frame.getInteger(at: start, endianness: .little, as: UInt32.self) == 0x184D_2204,
            let flags = frame.getInteger(at: start + 4, as: UInt8.self)
        else { return }
        // FLG, BD, and the 8-byte content size when FLG bit 3 says so (a dictionary id, bit 0, adds 4 more).
        let descriptorLength = 2 + (flags & 0x08 != 0 ? 8 : 0) + (flags & 0x01 != 0 ? 4 : 0)
        guard frame.readableBytes > 4 + descriptorLength,
            let descriptor = frame.getBytes(at: start + 4, length: descriptorLength)
        else { return }
        let checksum = UInt8(truncatingIfNeeded: XXHash32.hash(descriptor, seed: 0) >> 8)
        frame.setInteger(checksum, at: start + 4 + descriptorLength)
    }
}

/// xxHash32 (Yann Collet's) of fewer than 16 bytes, enough for an LZ4 frame descriptor (at most 14 bytes):
/// liblz4 does not export its own copy.
enum XXHash32 {
    private static let prime1: UInt32 = 2_654_435_761
    private static let prime2: UInt32 = 2_246_822_519
    private static let prime3: UInt32 = 3_266_489_917
    private static let prime4: UInt32 = 668_265_263
    private static let prime5: UInt32 = 374_761_393

    static func hash(_ input: [UInt8], seed: UInt32) -> UInt32 {
        input.withUnsafeBytes { Self.hash($0, seed: seed) }
    }

    static func hash(_ input: UnsafeRawBufferPointer, seed: UInt32) -> UInt32 {
        precondition(input.count < 16, "only the short-input path of xxHash32 is implemented")
        var hash = seed &+ Self.prime5 &+ UInt32(input.count)
        var position = 0
        while position + 4 <= input.count {
            let word = input.loadUnaligned(fromByteOffset: position, as: UInt32.self).littleEndian
            hash = Self.rotate(hash &+ word &* Self.prime3, 17) &* Self.prime4
            position += 4
        }
        while position < input.count {
            hash = Self.rotate(hash &+ UInt32(input[position]) &* Self.prime5, 11) &* Self.prime1
            position += 1
        }
        hash ^= hash >> 15
        hash = hash &* Self.prime2
        hash ^= hash >> 13
        hash = hash &* Self.prime3
        hash ^= hash >> 16
        return hash
    }

    @inline(__always)
    private static func rotate(_ value: UInt32, _ bits: UInt32) -> UInt32 {
        (value << bits) | (value >> (32 - bits))
    }
}

extension UInt64 {
    /// A big-endian UInt64 at `index` of `bytes`; the caller has checked the bounds.
    @inline(__always)
    init(bigEndianBytes bytes: UnsafeRawBufferPointer, at index: Int) {
        self =
            UInt64(UInt32(bigEndianBytes: bytes, at: index)) << 32
            | UInt64(UInt32(bigEndianBytes: bytes, at: index + 4))
    }
}
