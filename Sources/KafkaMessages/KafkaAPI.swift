import KafkaWire

/// One API of the generated table `KafkaMessageRegistry.apis`: its key, request and response types, versions and
/// header versions. Immutable; freely shareable across threads.
public struct KafkaAPI: Sendable {
    public let apiKey: APIKey
    public let requestType: any KafkaRequest.Type
    public let responseType: any KafkaResponse.Type
    public let validVersions: ClosedRange<Int16>
    public let firstFlexibleVersion: Int16?
    /// True for ApiVersions only (KIP-511).
    public let responseHeaderIsAlwaysV0: Bool

    public init(
        apiKey: APIKey,
        requestType: any KafkaRequest.Type,
        responseType: any KafkaResponse.Type,
        validVersions: ClosedRange<Int16>,
        firstFlexibleVersion: Int16?,
        responseHeaderIsAlwaysV0: Bool
    ) {
        self.apiKey = apiKey
        self.requestType = requestType
        self.responseType = responseType
        self.validVersions = validVersions
        self.firstFlexibleVersion = firstFlexibleVersion
        self.responseHeaderIsAlwaysV0 = responseHeaderIsAlwaysV0
    }

    public func isFlexible(version: Int16) -> Bool {
        self.firstFlexibleVersion.map { version >= $0 } ?? false
    }

    /// Request header v2 for flexible versions, else v1.
    public func requestHeaderVersion(for version: Int16) -> Int16 {
        self.isFlexible(version: version) ? 2 : 1
    }

    /// Response header v1 for flexible versions, else v0; always v0 for ApiVersions.
    public func responseHeaderVersion(for version: Int16) -> Int16 {
        if self.responseHeaderIsAlwaysV0 { return 0 }
        return self.isFlexible(version: version) ? 1 : 0
    }
}

/// Whether a message is the request or the response of its API.
public enum KafkaMessageDirection: Hashable, Sendable {
    case request
    case response
}

extension KafkaMessageRegistry {
    private static let apisByKey: [APIKey: KafkaAPI] = Dictionary(
        uniqueKeysWithValues: KafkaMessageRegistry.apis.map { ($0.apiKey, $0) }
    )

    /// The API with this key, if its messages are generated.
    public static func api(_ apiKey: APIKey) -> KafkaAPI? {
        self.apisByKey[apiKey]
    }

    /// The request or response type of an API, for decoding bytes whose type is known only at run time.
    public static func messageType(apiKey: APIKey, direction: KafkaMessageDirection) -> (any KafkaMessage.Type)? {
        guard let api = self.apisByKey[apiKey] else { return nil }
        switch direction {
        case .request: return api.requestType
        case .response: return api.responseType
        }
    }
}
