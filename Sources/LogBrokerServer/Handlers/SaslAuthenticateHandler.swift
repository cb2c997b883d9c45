import KafkaMessages
import KafkaWire
import NIOCore

/// SaslAuthenticate (key 36), v0–2, on a listener without SASL: ILLEGAL_SASL_STATE (34) with Kafka's own message,
/// no auth bytes, and the connection kept, as `KafkaApis` answers after (or without) authentication. See
/// `SaslHandshakeHandler` for why both are advertised.
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct SaslAuthenticateHandler: KafkaHandler {
    public typealias Request = SaslAuthenticateRequest

    public init() {}

    public var versions: ClosedRange<Int16> { 0...2 }

    public func handle(
        _ request: SaslAuthenticateRequest,
        context: RequestContext
    ) async -> SaslAuthenticateResponse {
        SaslAuthenticateResponse(
            errorCode: ErrorCode.illegalSaslState.rawValue,
            errorMessage: "SaslAuthenticate request received after successful authentication",
            authBytes: ByteBuffer(),
            sessionLifetimeMs: 0
        )
    }
}
