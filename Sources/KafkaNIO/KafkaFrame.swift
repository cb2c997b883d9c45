import KafkaMessages
import KafkaWire
import NIOCore

/// Builds and reads the contents of Kafka frames (header then body, without the 4-byte size, which
/// `KafkaFrameEncoder` adds and `KafkaFrameDecoder` removes).
///
/// Header versions follow Kafka's rule: request header v2 and response header v1 from the API's first flexible
/// version on, v1 and v0 before it; ApiVersions responses always use response header v0 (KIP-511), so a client can
/// read an UNSUPPORTED_VERSION answer whatever version it asked for. Stateless: freely usable from any thread.
public enum KafkaFrame {
    /// A request frame: header (with `correlationID` and `clientID`) then `request` encoded at `version`.
    public static func request<Request: KafkaRequest>(
        _ request: Request,
        version: Int16,
        correlationID: Int32,
        clientID: String?,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) -> ByteBuffer {
        let header = RequestHeader(
            requestApiKey: Request.apiKey.rawValue,
            requestApiVersion: version,
            correlationID: correlationID,
            clientID: clientID
        )
        var writer = WireWriter(buffer: allocator.buffer(capacity: 64))
        header.encode(into: &writer, version: Request.requestHeaderVersion(for: version))
        request.encode(into: &writer, version: version)
        return writer.buffer
    }

    /// A response frame: response header for `Response` at `version`, then `response` encoded at `version`.
    public static func response<Response: KafkaResponse>(
        _ response: Response,
        version: Int16,
        correlationID: Int32,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) -> ByteBuffer {
        var writer = WireWriter(buffer: allocator.buffer(capacity: 64))
        ResponseHeader(correlationID: correlationID)
            .encode(into: &writer, version: Response.responseHeaderVersion(for: version))
        response.encode(into: &writer, version: version)
        return writer.buffer
    }

    /// The correlation id at the start of a response frame, without consuming it; nil if the frame is shorter.
    public static func peekCorrelationID(_ frame: ByteBuffer) -> Int32? {
        frame.getInteger(at: frame.readerIndex, as: Int32.self)
    }

    /// Reads a response frame to a request of type `Request` sent at `version`: its correlation id and body.
    /// An ApiVersions response that does not decode at `version` is read again with the v0 layout, as Kafka's Java
    /// client does, since a broker answers an ApiVersions version it does not support with the v0 body.
    public static func decodeResponse<Request: KafkaRequest>(
        _ frame: ByteBuffer,
        to request: Request.Type,
        version: Int16,
        limits: WireLimits = .default
    ) throws(KafkaNIOError) -> (correlationID: Int32, response: Request.Response) {
        var reader = WireReader(buffer: frame, limits: limits)
        let header: ResponseHeader
        do {
            header = try ResponseHeader(from: &reader, version: Request.Response.responseHeaderVersion(for: version))
        } catch {
            throw .malformedResponse(apiKey: Request.apiKey, version: version, error)
        }
        var bodyReader = reader
        do {
            return (header.correlationID, try Request.Response(decoding: &bodyReader, version: version))
        } catch {
            guard Request.apiKey == .apiVersions, version != 0 else {
                throw .malformedResponse(apiKey: Request.apiKey, version: version, error)
            }
            do {
                return (header.correlationID, try Request.Response(decoding: &reader, version: 0))
            } catch {
                throw .malformedResponse(apiKey: Request.apiKey, version: version, error)
            }
        }
    }
}
