import KafkaWire

/// Why a client call failed, naming the broker, topic or partition involved, as `logcat` and `logbroker-admin`
/// print it. A plain value; thread-safe.
public struct ClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The Kafka error code the broker answered with, nil for a local failure (connection, timeout, arguments).
    public let code: ErrorCode?
    public let description: String

    public init(_ description: String, code: ErrorCode? = nil) {
        self.description = description
        self.code = code
    }

    /// A broker's refusal: `what` names the resource, `message` is the broker's own, if any.
    static func kafka(_ code: Int16, _ what: String, message: String? = nil) -> ClientError {
        let error = ErrorCode(code)
        let detail = message.flatMap { $0.isEmpty ? nil : ": \($0)" } ?? ""
        return ClientError("\(what): \(error)\(detail)", code: error)
    }

    /// Errors a producer retries after a pause (and a metadata refresh when leadership may have moved): Kafka's
    /// `RetriableException`s that Produce answers with.
    var isRetriable: Bool {
        guard let code = self.code else { return true }
        return [
            ErrorCode.notLeaderOrFollower, .leaderNotAvailable, .unknownTopicOrPartition, .requestTimedOut,
            .notEnoughReplicas, .notEnoughReplicasAfterAppend, .networkException, .kafkaStorageError,
            .coordinatorNotAvailable, .coordinatorLoadInProgress, .notCoordinator, .brokerNotAvailable,
            .fencedLeaderEpoch, .unknownLeaderEpoch,
        ].contains(code)
    }

    /// Errors after which the client's metadata may be stale.
    var invalidatesMetadata: Bool {
        guard let code = self.code else { return true }
        return [ErrorCode.notLeaderOrFollower, .leaderNotAvailable, .unknownTopicOrPartition, .fencedLeaderEpoch]
            .contains(code)
    }
}
