import KafkaMessages
import KafkaWire
import NIOCore

/// One request frame with its header read: API key, version, correlation id and client id, and the body left as
/// a slice of the frame for the handler to decode at its version.
///
/// The header version comes from the API and version as Kafka's `RequestHeader.parse` computes it: v2 (with tagged
/// fields) from the API's first flexible version on, else v1; that rule also applies to versions outside the API's
/// range, so an ApiVersions request at a version this side does not know still yields its correlation id. A key
/// without a generated definition has no known header layout, and parsing refuses it, as Kafka does ("Unknown API
/// key"). A null client id reads as "", as in Kafka.
///
/// A plain value: freely shareable across threads.
public struct KafkaRequestEnvelope: Sendable {
    public var apiKey: APIKey
    public var apiVersion: Int16
    public var correlationID: Int32
    public var clientID: String
    /// The request header version the header was read at (1 or 2).
    public var headerVersion: Int16
    /// The request body: the rest of the frame after the header.
    public var body: ByteBuffer

    public init(
        apiKey: APIKey,
        apiVersion: Int16,
        correlationID: Int32,
        clientID: String,
        headerVersion: Int16,
        body: ByteBuffer
    ) {
        self.apiKey = apiKey
        self.apiVersion = apiVersion
        self.correlationID = correlationID
        self.clientID = clientID
        self.headerVersion = headerVersion
        self.body = body
    }

    /// Reads the header of `frame` (a frame's contents, without its size).
    /// - Throws: `KafkaNIOError.unknownAPIKey` for a key without a definition, `malformedHeader` for a header the
    ///   frame cannot hold.
    public init(parsing frame: ByteBuffer, limits: WireLimits = .default) throws(KafkaNIOError) {
        guard let rawKey = frame.getInteger(at: frame.readerIndex, as: Int16.self),
            let version = frame.getInteger(at: frame.readerIndex + 2, as: Int16.self)
        else {
            throw .malformedHeader(.truncated(needed: 4, remaining: frame.readableBytes))
        }
        let apiKey = APIKey(rawKey)
        guard let api = KafkaMessageRegistry.api(apiKey) else {
            throw .unknownAPIKey(apiKey, correlationID: frame.getInteger(at: frame.readerIndex + 4, as: Int32.self))
        }
        let headerVersion = api.requestHeaderVersion(for: version)
        var reader = WireReader(buffer: frame, limits: limits)
        let header: RequestHeader
        do {
            header = try RequestHeader(from: &reader, version: headerVersion)
        } catch {
            throw .malformedHeader(error)
        }
        self.init(
            apiKey: apiKey,
            apiVersion: version,
            correlationID: header.correlationID,
            clientID: header.clientID ?? "",
            headerVersion: headerVersion,
            body: reader.buffer
        )
    }

    /// Decodes the body as `Request` at this envelope's version. Bytes after the message are ignored, as Kafka's
    /// `AbstractRequest.parseRequest` ignores them: librdkafka 2.16's all-topics Metadata v12 (AdminClient
    /// `list_topics`) ends with 3 of them.
    public func decodeBody<Request: KafkaRequest>(
        as type: Request.Type,
        limits: WireLimits = .default
    ) throws(WireError) -> Request {
        var reader = WireReader(buffer: self.body, limits: limits)
        return try Request(from: &reader, version: self.apiVersion)
    }
}
