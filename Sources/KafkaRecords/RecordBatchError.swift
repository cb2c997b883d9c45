import KafkaWire

/// Why a record batch, a record inside it, or a compressed stream was refused.
///
/// One struct around a private `Code` (as NIO and AsyncHTTPClient do), so new cases do not break callers. The
/// `description` says what was wrong and where (byte position, record index); `kafkaErrorCode` is what a Produce
/// response carries: CORRUPT_MESSAGE for size and CRC failures, INVALID_RECORD for record-level problems,
/// UNSUPPORTED_COMPRESSION_TYPE for unknown codec ids, INVALID_TIMESTAMP for timestamps out of bounds, and for magic
/// 0/1 message sets MESSAGE_TOO_LARGE for a message over max.message.bytes.
/// A value type; Sendable.
public struct RecordBatchError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case batchTooShort(size: Int)
        case batchLengthMismatch(declared: Int, available: Int)
        case batchTooLarge(size: Int, limit: Int)
        case unsupportedMagic(Int8)
        case crcMismatch(stored: UInt32, computed: UInt32)
        case unsupportedCompression(Int)
        case invalidRecordCount(Int32)
        case recordCountMismatch(declared: Int32, lastOffsetDelta: Int32)
        case recordsWalkedMismatch(declared: Int32, walked: Int)
        case malformedRecord(index: Int, position: Int, what: String)
        case nonConsecutiveOffsetDelta(index: Int, expected: Int32, found: Int32)
        case offsetDeltaOutOfOrder(index: Int, previous: Int32, found: Int32, last: Int32)
        case trailingBytes(count: Int, afterRecords: Int)
        case controlBatchNotAllowed
        case missingKey(index: Int)
        case timestampOutOfBounds(index: Int, timestamp: Int64, now: Int64)
        case invalidSequence(producerID: Int64, baseSequence: Int32)
        case decompressedTooLarge(codec: CompressionCodec, limit: Int)
        case corruptCompressedData(codec: CompressionCodec, what: String)
        case compressionFailed(codec: CompressionCodec, what: String)
        case corruptLegacyMessage(position: Int, what: String)
        case invalidLegacyMessage(position: Int, what: String)
        case legacyMessageTooLarge(position: Int, size: Int, limit: Int)
        case legacyLogAppendTime(index: Int)
    }

    private let code: Code

    private init(_ code: Code) {
        self.code = code
    }

    /// Fewer bytes than the 61-byte v2 header, or a batchLength too small to hold one.
    public static func batchTooShort(size: Int) -> Self { Self(.batchTooShort(size: size)) }

    /// batchLength + 12 differs from the bytes the view was given.
    public static func batchLengthMismatch(declared: Int, available: Int) -> Self {
        Self(.batchLengthMismatch(declared: declared, available: available))
    }

    /// A batch larger than the caller's limit (message.max.bytes), refused before anything is read or reserved.
    public static func batchTooLarge(size: Int, limit: Int) -> Self { Self(.batchTooLarge(size: size, limit: limit)) }

    public static func unsupportedMagic(_ magic: Int8) -> Self { Self(.unsupportedMagic(magic)) }

    public static func crcMismatch(stored: UInt32, computed: UInt32) -> Self {
        Self(.crcMismatch(stored: stored, computed: computed))
    }

    public static func unsupportedCompression(_ id: Int) -> Self { Self(.unsupportedCompression(id)) }

    public static func invalidRecordCount(_ count: Int32) -> Self { Self(.invalidRecordCount(count)) }

    public static func recordCountMismatch(declared: Int32, lastOffsetDelta: Int32) -> Self {
        Self(.recordCountMismatch(declared: declared, lastOffsetDelta: lastOffsetDelta))
    }

    public static func recordsWalkedMismatch(declared: Int32, walked: Int) -> Self {
        Self(.recordsWalkedMismatch(declared: declared, walked: walked))
    }

    /// A record whose structure is wrong: `position` is the byte offset inside the (decompressed) records area.
    public static func malformedRecord(index: Int, position: Int, what: String) -> Self {
        Self(.malformedRecord(index: index, position: position, what: what))
    }

    public static func nonConsecutiveOffsetDelta(index: Int, expected: Int32, found: Int32) -> Self {
        Self(.nonConsecutiveOffsetDelta(index: index, expected: expected, found: found))
    }

    /// A stored batch's offset deltas must grow and stay within its last offset delta (compaction leaves gaps).
    public static func offsetDeltaOutOfOrder(index: Int, previous: Int32, found: Int32, last: Int32) -> Self {
        Self(.offsetDeltaOutOfOrder(index: index, previous: previous, found: found, last: last))
    }

    public static func trailingBytes(count: Int, afterRecords: Int) -> Self {
        Self(.trailingBytes(count: count, afterRecords: afterRecords))
    }

    public static var controlBatchNotAllowed: Self { Self(.controlBatchNotAllowed) }

    public static func missingKey(index: Int) -> Self { Self(.missingKey(index: index)) }

    public static func timestampOutOfBounds(index: Int, timestamp: Int64, now: Int64) -> Self {
        Self(.timestampOutOfBounds(index: index, timestamp: timestamp, now: now))
    }

    public static func invalidSequence(producerID: Int64, baseSequence: Int32) -> Self {
        Self(.invalidSequence(producerID: producerID, baseSequence: baseSequence))
    }

    /// The stream claims or tries to inflate past `limit` bytes; nothing beyond the limit was allocated.
    public static func decompressedTooLarge(codec: CompressionCodec, limit: Int) -> Self {
        Self(.decompressedTooLarge(codec: codec, limit: limit))
    }

    public static func corruptCompressedData(codec: CompressionCodec, what: String) -> Self {
        Self(.corruptCompressedData(codec: codec, what: what))
    }

    public static func compressionFailed(codec: CompressionCodec, what: String) -> Self {
        Self(.compressionFailed(codec: codec, what: what))
    }

    /// A magic 0/1 message whose size, CRC-32 or field lengths are wrong (Kafka's `CorruptRecordException`);
    /// `position` is the message's first byte in its message set (or in a wrapper's inflated inner set).
    public static func corruptLegacyMessage(position: Int, what: String) -> Self {
        Self(.corruptLegacyMessage(position: position, what: what))
    }

    /// A magic 0/1 message set whose structure Kafka refuses (`InvalidRecordException`): mixed magic, a compressed
    /// wrapper beside other messages or inside one, an empty wrapper, a wrapper offset below its inner offsets.
    public static func invalidLegacyMessage(position: Int, what: String) -> Self {
        Self(.invalidLegacyMessage(position: position, what: what))
    }

    /// A magic 0/1 message (12-byte head included) larger than max.message.bytes (Kafka's RecordTooLargeException).
    public static func legacyMessageTooLarge(position: Int, size: Int, limit: Int) -> Self {
        Self(.legacyMessageTooLarge(position: position, size: size, limit: limit))
    }

    /// A magic 1 message the producer marked LogAppendTime, which only the broker may set: refused on a
    /// LogAppendTime topic, or when the message has no timestamp.
    public static func legacyLogAppendTime(index: Int) -> Self { Self(.legacyLogAppendTime(index: index)) }

    /// The index inside its batch of the record that failed a per-record check (a null key, a timestamp out of
    /// bounds), which Kafka reports as a Produce `record_errors` entry; nil for failures of the batch as a whole.
    public var recordIndex: Int? {
        switch self.code {
        case .missingKey(let index), .timestampOutOfBounds(let index, _, _), .legacyLogAppendTime(let index): index
        default: nil
        }
    }

    /// The error code a Produce response (or a storage error) carries for this failure.
    public var kafkaErrorCode: ErrorCode {
        switch self.code {
        case .batchTooShort, .batchLengthMismatch, .batchTooLarge, .crcMismatch, .corruptCompressedData,
            .corruptLegacyMessage:
            return .corruptMessage
        case .legacyMessageTooLarge:
            return .messageTooLarge
        case .unsupportedCompression:
            return .unsupportedCompressionType
        case .timestampOutOfBounds, .legacyLogAppendTime:
            return .invalidTimestamp
        case .compressionFailed:
            return .unknownServerError
        case .unsupportedMagic, .invalidRecordCount, .recordCountMismatch, .recordsWalkedMismatch, .malformedRecord,
            .nonConsecutiveOffsetDelta, .offsetDeltaOutOfOrder, .trailingBytes, .controlBatchNotAllowed, .missingKey, .invalidSequence,
            .decompressedTooLarge, .invalidLegacyMessage:
            return .invalidRecord
        }
    }

    public var description: String {
        switch self.code {
        case .batchTooShort(let size):
            return "record batch of \(size) bytes is shorter than the 61-byte v2 header"
        case .batchLengthMismatch(let declared, let available):
            return "record batch declares \(declared) bytes (batchLength + 12) but \(available) bytes were given"
        case .batchTooLarge(let size, let limit):
            return "record batch of \(size) bytes is larger than the limit of \(limit) bytes"
        case .unsupportedMagic(let magic):
            return "record batch has magic \(magic) at byte 16; only magic 2 is accepted"
        case .crcMismatch(let stored, let computed):
            return "record batch is corrupt: stored CRC-32C 0x\(String(stored, radix: 16)) over bytes [21, end) "
                + "but computed 0x\(String(computed, radix: 16))"
        case .unsupportedCompression(let id):
            return "record batch attributes name compression codec \(id), which is not one of 0...4"
        case .invalidRecordCount(let count):
            return "record batch declares \(count) records at byte 57; a batch holds at least one"
        case .recordCountMismatch(let declared, let lastOffsetDelta):
            return "record batch declares \(declared) records but lastOffsetDelta \(lastOffsetDelta) "
                + "implies \(Int64(lastOffsetDelta) + 1)"
        case .recordsWalkedMismatch(let declared, let walked):
            return "record batch declares \(declared) records but its records area holds \(walked)"
        case .malformedRecord(let index, let position, let what):
            return "record \(index) at byte \(position) of the records area: \(what)"
        case .nonConsecutiveOffsetDelta(let index, let expected, let found):
            return "record \(index) has offset delta \(found), expected \(expected) (deltas must be 0, 1, 2, ...)"
        case .offsetDeltaOutOfOrder(let index, let previous, let found, let last):
            return "record \(index) has offset delta \(found), not above the previous \(previous) and at most the "
                + "batch's last offset delta \(last)"
        case .trailingBytes(let count, let afterRecords):
            return "\(count) bytes follow the last of \(afterRecords) records in the batch"
        case .controlBatchNotAllowed:
            return "control batches (attributes bit 5) are written by the broker, never accepted from clients"
        case .missingKey(let index):
            return "record \(index) has a null key; a compacted topic needs a key on every record"
        case .timestampOutOfBounds(let index, let timestamp, let now):
            return "record \(index) has timestamp \(timestamp), out of the accepted range around \(now)"
        case .invalidSequence(let producerID, let baseSequence):
            return "record batch from producer \(producerID) has invalid base sequence \(baseSequence)"
        case .decompressedTooLarge(let codec, let limit):
            return "\(codec) records would inflate past the limit of \(limit) bytes; refused before allocating"
        case .corruptCompressedData(let codec, let what):
            return "\(codec) records cannot be decompressed: \(what)"
        case .compressionFailed(let codec, let what):
            return "\(codec) compression failed: \(what)"
        case .corruptLegacyMessage(let position, let what):
            return "message at byte \(position) of the message set is corrupt: \(what)"
        case .invalidLegacyMessage(let position, let what):
            return "message at byte \(position) of the message set is invalid: \(what)"
        case .legacyMessageTooLarge(let position, let size, let limit):
            return "message at byte \(position) of the message set is \(size) bytes, larger than max.message.bytes "
                + "\(limit)"
        case .legacyLogAppendTime(let index):
            return "message \(index) is marked LogAppendTime by the producer; only the broker sets LogAppendTime"
        }
    }
}
