import KafkaWire

/// Why a Kafka connection could not go on: a frame that breaks the framing rules, a request header that cannot be
/// read, or a response that does not match its request.
///
/// A struct around a private enum, built by static factories, so that cases can be added without breaking callers.
/// `description` names the sizes and keys involved; `shortDescription` carries no values and can be a metric label.
/// A plain value: freely shareable across threads.
public struct KafkaNIOError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case frameTooLarge(declared: Int, limit: Int)
        case negativeFrameSize(Int)
        case truncatedFrame(bufferedBytes: Int)
        case malformedHeader(WireError)
        case unknownAPIKey(APIKey, correlationID: Int32?)
        case malformedResponse(apiKey: APIKey, version: Int16, WireError)
        case correlationMismatch(expected: Int32, received: Int32)
        case unexpectedCorrelationID(Int32)
        case connectionClosed
        case frameExceedsMemoryPool(declared: Int, pool: Int)
        case requestReadTimeout(declared: Int, received: Int, timeoutMs: Int64)
        case idleTimeout(ms: Int64)
    }

    private let code: Code

    private init(_ code: Code) {
        self.code = code
    }

    /// A frame whose declared size is above the limit (`socket.request.max.bytes` on a broker).
    public static func frameTooLarge(declared: Int, limit: Int) -> KafkaNIOError {
        KafkaNIOError(.frameTooLarge(declared: declared, limit: limit))
    }

    /// A frame whose declared size is negative.
    public static func negativeFrameSize(_ size: Int) -> KafkaNIOError {
        KafkaNIOError(.negativeFrameSize(size))
    }

    /// The peer closed its side with part of a frame sent.
    public static func truncatedFrame(bufferedBytes: Int) -> KafkaNIOError {
        KafkaNIOError(.truncatedFrame(bufferedBytes: bufferedBytes))
    }

    /// A request header that cannot be decoded at the header version its API and version call for.
    public static func malformedHeader(_ error: WireError) -> KafkaNIOError {
        KafkaNIOError(.malformedHeader(error))
    }

    /// A request for an API key whose header layout is unknown here (Kafka: "Unknown API key").
    public static func unknownAPIKey(_ apiKey: APIKey, correlationID: Int32?) -> KafkaNIOError {
        KafkaNIOError(.unknownAPIKey(apiKey, correlationID: correlationID))
    }

    /// A response frame that does not decode as the response to the request sent.
    public static func malformedResponse(apiKey: APIKey, version: Int16, _ error: WireError) -> KafkaNIOError {
        KafkaNIOError(.malformedResponse(apiKey: apiKey, version: version, error))
    }

    /// A response whose correlation id is not the one of the request in flight.
    public static func correlationMismatch(expected: Int32, received: Int32) -> KafkaNIOError {
        KafkaNIOError(.correlationMismatch(expected: expected, received: received))
    }

    /// A response whose correlation id names no request in flight (on a pipelined connection).
    public static func unexpectedCorrelationID(_ received: Int32) -> KafkaNIOError {
        KafkaNIOError(.unexpectedCorrelationID(received))
    }

    /// The connection closed before the response arrived.
    public static let connectionClosed = KafkaNIOError(.connectionClosed)

    /// A frame larger than the whole request memory pool (`queued.max.request.bytes`): it could never be read.
    public static func frameExceedsMemoryPool(declared: Int, pool: Int) -> KafkaNIOError {
        KafkaNIOError(.frameExceedsMemoryPool(declared: declared, pool: pool))
    }

    /// A frame whose bytes did not all arrive within the read deadline (`socket.request.read.timeout.ms`) after
    /// its size did, while the broker was reading: a slow or stalled sender holding memory.
    public static func requestReadTimeout(declared: Int, received: Int, timeoutMs: Int64) -> KafkaNIOError {
        KafkaNIOError(.requestReadTimeout(declared: declared, received: received, timeoutMs: timeoutMs))
    }

    /// A connection with no bytes read or written for `connections.max.idle.ms`.
    public static func idleTimeout(ms: Int64) -> KafkaNIOError {
        KafkaNIOError(.idleTimeout(ms: ms))
    }

    /// Whether this is `idleTimeout`: a routine close, not a client's fault.
    public var isIdleTimeout: Bool {
        if case .idleTimeout = self.code { return true }
        return false
    }

    /// A short, value-free name of the failure, usable as a metric label.
    public var shortDescription: String {
        switch self.code {
        case .frameTooLarge: "frame too large"
        case .negativeFrameSize: "negative frame size"
        case .truncatedFrame: "truncated frame"
        case .malformedHeader: "malformed request header"
        case .unknownAPIKey: "unknown API key"
        case .malformedResponse: "malformed response"
        case .correlationMismatch: "correlation id mismatch"
        case .unexpectedCorrelationID: "unexpected correlation id"
        case .connectionClosed: "connection closed"
        case .frameExceedsMemoryPool: "frame exceeds memory pool"
        case .requestReadTimeout: "request read timeout"
        case .idleTimeout: "idle connection"
        }
    }

    public var description: String {
        switch self.code {
        case .frameTooLarge(let declared, let limit):
            "frame too large: \(declared) bytes declared, at most \(limit) allowed"
        case .negativeFrameSize(let size):
            "negative frame size: \(size)"
        case .truncatedFrame(let bufferedBytes):
            "truncated frame: the peer closed the connection \(bufferedBytes) bytes into a frame"
        case .malformedHeader(let error):
            "malformed request header: \(error)"
        case .unknownAPIKey(let apiKey, let correlationID):
            "unknown API key \(apiKey.rawValue)" + (correlationID.map { " (correlation id \($0))" } ?? "")
        case .malformedResponse(let apiKey, let version, let error):
            "malformed \(apiKey) v\(version) response: \(error)"
        case .correlationMismatch(let expected, let received):
            "correlation id mismatch: expected \(expected), received \(received)"
        case .unexpectedCorrelationID(let received):
            "unexpected correlation id \(received): no request in flight has it"
        case .connectionClosed:
            "connection closed before the response arrived"
        case .frameExceedsMemoryPool(let declared, let pool):
            "frame too large for the request memory pool: \(declared) bytes declared, the pool "
                + "(queued.max.request.bytes) holds \(pool)"
        case .requestReadTimeout(let declared, let received, let timeoutMs):
            "request read timeout: \(received) of the frame's \(declared) bytes arrived within \(timeoutMs) ms of "
                + "its size (socket.request.read.timeout.ms)"
        case .idleTimeout(let ms):
            "idle for \(ms) ms (connections.max.idle.ms)"
        }
    }
}
