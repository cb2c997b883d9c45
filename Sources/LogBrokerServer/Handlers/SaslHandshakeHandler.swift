import KafkaMessages
import KafkaWire

/// SaslHandshake (key 17), v0–1, on a listener without SASL (every listener, until SASL listeners exist): Kafka's
/// `KafkaApis` answers ILLEGAL_SASL_STATE (34) with no mechanisms, and keeps the connection, because on a PLAINTEXT
/// listener the connection is already as authenticated as it will ever be. Kafka advertises both SASL APIs on every
/// listener, and so does LogBroker: librdkafka checks exact versions (CLIENTS.md §1), and a client configured for
/// SASL against a PLAINTEXT port then gets a clear error instead of a closed socket.
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct SaslHandshakeHandler: KafkaHandler {
    public typealias Request = SaslHandshakeRequest

    public init() {}

    public var versions: ClosedRange<Int16> { 0...1 }

    public func handle(_ request: SaslHandshakeRequest, context: RequestContext) async -> SaslHandshakeResponse {
        SaslHandshakeResponse(errorCode: ErrorCode.illegalSaslState.rawValue, mechanisms: [])
    }
}
