/// Why bytes inside one Kafka frame could not be decoded.
///
/// A struct around a private enum, built by static factories, so that cases can be added without breaking
/// callers. `description` names what was wrong and the sizes involved; `kafkaErrorCode` is what a broker answers
/// when a request body is malformed. A plain value: freely shareable across threads.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case truncated(needed: Int, remaining: Int)
        case countExceedsFrame(count: Int, minimumBytes: Int, remaining: Int)
        case countExceedsLimit(count: Int, limit: Int)
        case negativeLength(Int)
        case lengthExceedsLimit(length: Int, limit: Int)
        case invalidUTF8(length: Int)
        case varintTooLong(maxBytes: Int)
        case unexpectedNull(what: String)
        case taggedFieldSizeMismatch(tag: UInt32, declared: Int, consumed: Int)
        case unsupportedVersion(message: String, version: Int16)
        case trailingBytes(Int)
    }

    private let code: Code

    private init(_ code: Code) {
        self.code = code
    }

    /// Fewer than `needed` bytes were left in the frame.
    public static func truncated(needed: Int, remaining: Int = 0) -> WireError {
        WireError(.truncated(needed: needed, remaining: remaining))
    }

    /// An array or tag-section count that the rest of the frame cannot possibly hold.
    public static func countExceedsFrame(count: Int, minimumBytes: Int, remaining: Int) -> WireError {
        WireError(.countExceedsFrame(count: count, minimumBytes: minimumBytes, remaining: remaining))
    }

    /// An array count above `WireLimits.maxArrayCount`.
    public static func countExceedsLimit(count: Int, limit: Int) -> WireError {
        WireError(.countExceedsLimit(count: count, limit: limit))
    }

    /// A length prefix below -1 (or below 0 where null is not allowed by the encoding).
    public static func negativeLength(_ length: Int) -> WireError {
        WireError(.negativeLength(length))
    }

    /// A string or bytes length above the configured limit.
    public static func lengthExceedsLimit(length: Int, limit: Int) -> WireError {
        WireError(.lengthExceedsLimit(length: length, limit: limit))
    }

    /// A string whose bytes are not valid UTF-8.
    public static func invalidUTF8(length: Int) -> WireError {
        WireError(.invalidUTF8(length: length))
    }

    /// A varint with more continuation bytes, or more significant bits, than its type holds.
    public static func varintTooLong(maxBytes: Int) -> WireError {
        WireError(.varintTooLong(maxBytes: maxBytes))
    }

    /// A null where the field is not nullable at this version.
    public static func unexpectedNull(_ what: String) -> WireError {
        WireError(.unexpectedNull(what: what))
    }

    /// A known tagged field whose value did not use exactly the size its header declared.
    public static func taggedFieldSizeMismatch(tag: UInt32, declared: Int, consumed: Int) -> WireError {
        WireError(.taggedFieldSizeMismatch(tag: tag, declared: declared, consumed: consumed))
    }

    /// A message decoded or encoded at a version outside its valid range.
    public static func unsupportedVersion(_ message: String, version: Int16) -> WireError {
        WireError(.unsupportedVersion(message: message, version: version))
    }

    /// Bytes left over after a complete message or tagged value.
    public static func trailingBytes(_ count: Int) -> WireError {
        WireError(.trailingBytes(count))
    }

    /// A short, value-free name of the failure, usable as a metric label.
    public var shortDescription: String {
        switch self.code {
        case .truncated: "truncated"
        case .countExceedsFrame: "count exceeds frame"
        case .countExceedsLimit: "count exceeds limit"
        case .negativeLength: "negative length"
        case .lengthExceedsLimit: "length exceeds limit"
        case .invalidUTF8: "invalid UTF-8"
        case .varintTooLong: "varint too long"
        case .unexpectedNull: "unexpected null"
        case .taggedFieldSizeMismatch: "tagged field size mismatch"
        case .unsupportedVersion: "unsupported version"
        case .trailingBytes: "trailing bytes"
        }
    }

    public var description: String {
        switch self.code {
        case .truncated(let needed, let remaining):
            "truncated: needed \(needed) bytes, \(remaining) remaining in the frame"
        case .countExceedsFrame(let count, let minimumBytes, let remaining):
            "count exceeds frame: \(count) elements of at least \(minimumBytes) bytes each, "
                + "\(remaining) bytes remaining"
        case .countExceedsLimit(let count, let limit):
            "count exceeds limit: \(count) elements, at most \(limit) allowed"
        case .negativeLength(let length):
            "negative length: \(length)"
        case .lengthExceedsLimit(let length, let limit):
            "length exceeds limit: \(length) bytes, at most \(limit) allowed"
        case .invalidUTF8(let length):
            "invalid UTF-8 in a \(length)-byte string"
        case .varintTooLong(let maxBytes):
            "varint too long: more than \(maxBytes) bytes or bits beyond its type"
        case .unexpectedNull(let what):
            "unexpected null: \(what) is not nullable here"
        case .taggedFieldSizeMismatch(let tag, let declared, let consumed):
            "tagged field \(tag) declared \(declared) bytes but its value used \(consumed)"
        case .unsupportedVersion(let message, let version):
            "unsupported version: \(message) has no version \(version)"
        case .trailingBytes(let count):
            "trailing bytes: \(count) bytes left after the message"
        }
    }

    /// The code a broker answers with when a request cannot be parsed.
    public var kafkaErrorCode: ErrorCode { .invalidRequest }
}
