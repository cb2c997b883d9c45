import KafkaWire

/// A Kafka message body generated from one JSON definition: a request, a response, a header or a data record
/// (such as a `__consumer_offsets` key). Values are plain structs: freely shareable across threads.
public protocol KafkaMessage: WireCodable, Hashable, Sendable {
    /// The versions this type can decode and encode (the JSON's `validVersions`).
    static var validVersions: ClosedRange<Int16> { get }

    /// The versions that use compact lengths and tagged fields (the JSON's `flexibleVersions`); nil for none.
    static var flexibleVersions: PartialRangeFrom<Int16>? { get }
}

extension KafkaMessage {
    /// The first flexible version, or nil if no version is flexible.
    public static var firstFlexibleVersion: Int16? { Self.flexibleVersions?.lowerBound }

    public static func isFlexible(version: Int16) -> Bool {
        Self.flexibleVersions?.contains(version) ?? false
    }

    /// Decodes one complete body and requires that it uses every byte: trailing bytes mean the version or the
    /// frame is wrong, and Kafka would misread them.
    public init(decoding reader: inout WireReader, version: Int16) throws(WireError) {
        self = try Self(from: &reader, version: version)
        try reader.expectEnd()
    }
}

/// A request body: names its API key and the type of its response.
public protocol KafkaRequest: KafkaMessage {
    associatedtype Response: KafkaResponse
    static var apiKey: APIKey { get }
}

extension KafkaRequest {
    /// Request header v2 (with tagged fields) for flexible versions, else v1 (KIP-482).
    public static func requestHeaderVersion(for version: Int16) -> Int16 {
        Self.isFlexible(version: version) ? 2 : 1
    }
}

/// A response body.
public protocol KafkaResponse: KafkaMessage {
    static var apiKey: APIKey { get }
}

extension KafkaResponse {
    /// Response header v1 for flexible versions, else v0; ApiVersions always uses v0 (KIP-511), so a client can
    /// read the error even for a version the broker does not know.
    public static func responseHeaderVersion(for version: Int16) -> Int16 {
        if Self.apiKey == .apiVersions { return 0 }
        return Self.isFlexible(version: version) ? 1 : 0
    }
}
