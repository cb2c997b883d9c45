import KafkaMessages
import KafkaWire

/// FindCoordinator (key 10), v0–4, before group and transaction coordinators exist: every key, group or
/// transactional id, gets COORDINATOR_NOT_AVAILABLE (a retriable error) with node -1.
///
/// Advertised anyway because librdkafka up to 2.11 decides features from exact versions: without FindCoordinator 0
/// it turns lz4 off (and kcat 2.0.2 then silently produces uncompressed batches); confluent-kafka consumers also
/// ask for a coordinator as soon as they have a `group.id`. v4+ answers each of the batched keys.
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct FindCoordinatorHandler: KafkaHandler {
    public typealias Request = FindCoordinatorRequest

    public init() {}

    public var versions: ClosedRange<Int16> { 0...4 }

    public func handle(_ request: FindCoordinatorRequest, context: RequestContext) async -> FindCoordinatorResponse {
        let error = ErrorCode.coordinatorNotAvailable
        let message = "LogBroker has no group or transaction coordinator yet"
        guard context.apiVersion >= 4 else {
            return FindCoordinatorResponse(
                errorCode: error.rawValue,
                errorMessage: message,
                nodeID: -1,
                host: "",
                port: -1
            )
        }
        return FindCoordinatorResponse(
            coordinators: request.coordinatorKeys.map { key in
                .init(key: key, nodeID: -1, host: "", port: -1, errorCode: error.rawValue, errorMessage: message)
            }
        )
    }
}
