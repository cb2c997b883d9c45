import KafkaMessages
import KafkaWire

/// ApiVersions (key 18), v0–4: the APIs and versions this broker serves, taken from the handler table, so a client
/// can pick `min(its max, our max)` for each. Flexible versions (3+) write no tagged fields: the features and
/// finalized-features fields keep their defaults, which Kafka omits, and librdkafka 2.0.2 misreads any it gets.
///
/// From v3 the client names its software; a name or version that breaks Kafka's pattern
/// (`[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`) gets INVALID_REQUEST, as Kafka answers.
///
/// A stateless value; thread-safe.
struct ApiVersionsHandler: KafkaHandler {
    typealias Request = ApiVersionsRequest

    var versions: ClosedRange<Int16> { 0...4 }

    func handle(_ request: ApiVersionsRequest, context: RequestContext) async -> ApiVersionsResponse {
        if context.apiVersion >= 3,
            !Self.isValidSoftwareText(request.clientSoftwareName)
                || !Self.isValidSoftwareText(request.clientSoftwareVersion)
        {
            return ApiVersionsResponse(errorCode: ErrorCode.invalidRequest.rawValue)
        }
        return ApiVersionsResponse(apiKeys: context.advertisedAPIs)
    }

    /// Kafka's `ApiVersionsRequest.isValid` pattern: letters, digits, '-' and '.', starting and ending with a
    /// letter or digit.
    static func isValidSoftwareText(_ text: String) -> Bool {
        func isAlphanumeric(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
        let bytes = Array(text.utf8)
        guard let first = bytes.first, let last = bytes.last, isAlphanumeric(first), isAlphanumeric(last) else {
            return false
        }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
    }
}
