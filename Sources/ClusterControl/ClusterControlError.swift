import KafkaWire
import MetadataStore

/// Why a controller operation failed, with the Kafka error code a handler answers with. One struct around a
/// private code (STYLE.md §8.10). A plain value; thread-safe.
public struct ClusterControlError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case invalidTopic(String, reason: String)
        case topicAlreadyExists(String)
        case invalidPartitions(Int32)
        case invalidReplicationFactor(Int16, liveBrokers: Int)
        case store(MetadataStoreError)
        case corruptImage(key: String, reason: String)
        case notStarted
    }

    private let code: Code

    private init(_ code: Code) { self.code = code }

    public static func invalidTopic(_ name: String, reason: String) -> Self {
        Self(.invalidTopic(name, reason: reason))
    }
    public static func topicAlreadyExists(_ name: String) -> Self { Self(.topicAlreadyExists(name)) }
    public static func invalidPartitions(_ count: Int32) -> Self { Self(.invalidPartitions(count)) }
    public static func invalidReplicationFactor(_ factor: Int16, liveBrokers: Int) -> Self {
        Self(.invalidReplicationFactor(factor, liveBrokers: liveBrokers))
    }
    public static func store(_ error: MetadataStoreError) -> Self { Self(.store(error)) }
    public static func corruptImage(key: String, reason: String) -> Self {
        Self(.corruptImage(key: key, reason: reason))
    }
    /// The controller was used before `start`.
    public static let notStarted = Self(.notStarted)

    /// The code a Kafka handler answers with.
    public var kafkaErrorCode: ErrorCode {
        switch self.code {
        case .invalidTopic: return .invalidTopicException
        case .topicAlreadyExists: return .topicAlreadyExists
        case .invalidPartitions: return ErrorCode(37)  // INVALID_PARTITIONS
        case .invalidReplicationFactor: return .invalidReplicationFactor
        case .store, .corruptImage, .notStarted: return .unknownServerError
        }
    }

    public var description: String {
        switch self.code {
        case .invalidTopic(let name, let reason): return "invalid topic name '\(name)': \(reason)"
        case .topicAlreadyExists(let name): return "topic '\(name)' already exists"
        case .invalidPartitions(let count): return "\(count) partitions: at least 1 is needed"
        case .invalidReplicationFactor(let factor, let live):
            return "replication factor \(factor) is not between 1 and the \(live) live broker(s)"
        case .store(let error): return "\(error)"
        case .corruptImage(let key, let reason): return "metadata key \(key) does not decode: \(reason)"
        case .notStarted: return "the controller is not started"
        }
    }
}
