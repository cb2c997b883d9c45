import ClusterControl
import KafkaMessages
import KafkaWire

/// FindCoordinator (key 10), v0–4.
///
/// - A group key (key_type 0, and every v0 request) names this broker, with its endpoint on the listener the
///   request came in on, when the broker runs a group coordinator (`groupsOn`; the first lookup creates
///   `__consumer_offsets`); without one, while the topic cannot be created, or while the group's own partition
///   of it cannot be served (not open, offline, or being read), it gets COORDINATOR_NOT_AVAILABLE (15, retriable)
///   with node -1 at once, as Kafka answers while that partition is not loaded. Other groups are unaffected.
/// - A transactional id (key_type 1) gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53): transactions are refused
///   cleanly, and this is the one FindCoordinator error Kafka gives a transactional id that is fatal to the client
///   (a producer's `init_transactions` fails at once with the message, instead of retrying
///   COORDINATOR_NOT_AVAILABLE until `max.block.ms`). Produce refuses transactional batches with the same code.
/// - A share group (key_type 2, KIP-932) gets COORDINATOR_NOT_AVAILABLE, as Kafka does without share groups.
/// - Any other key type gets INVALID_REQUEST (42), as Kafka's `CoordinatorType.forId` refuses it.
///
/// Advertised anyway because librdkafka up to 2.11 decides features from exact versions: without FindCoordinator 0
/// it turns lz4 off (and kcat 2.0.2 then silently produces uncompressed batches); confluent-kafka consumers also
/// ask for a coordinator as soon as they have a `group.id`. v4+ answers each of the batched keys.
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct FindCoordinatorHandler: KafkaHandler {
    public typealias Request = FindCoordinatorRequest

    /// Where group keys go: this broker's node id, the controller whose image has its endpoints, and the offsets
    /// topic, created on the first group lookup as Kafka does.
    let groupsOn: (controller: Controller, nodeID: Int32, offsets: ConsumerOffsetsTopic)?

    public init(groupsOn: (controller: Controller, nodeID: Int32, offsets: ConsumerOffsetsTopic)? = nil) {
        self.groupsOn = groupsOn
    }

    public var versions: ClosedRange<Int16> { 0...4 }

    /// The refusal for a key of `keyType`.
    static func refusal(keyType: Int8) -> (error: ErrorCode, message: String) {
        switch keyType {
        case 0: (.coordinatorNotAvailable, "LogBroker has no group coordinator yet")
        case 1: (.transactionalIDAuthorizationFailed, "LogBroker does not support transactions yet")
        case 2: (.coordinatorNotAvailable, "LogBroker has no share group coordinator")
        default: (.invalidRequest, "Unknown coordinator type \(keyType) in FindCoordinator request")
        }
    }

    /// The answer for a group whose `__consumer_offsets` partition cannot be served now (retriable).
    static let partitionUnavailable = "The group's __consumer_offsets partition is not available on this broker"

    public func handle(_ request: FindCoordinatorRequest, context: RequestContext) async -> FindCoordinatorResponse {
        let keyType = context.apiVersion >= 1 ? request.keyType : 0
        if keyType == 0, let (controller, nodeID, offsets) = self.groupsOn,
            let endpoint = try? await controller.image().brokers[nodeID]?.endpoints.first(where: {
                $0.listener == context.listenerName
            })
        {
            // Each group depends on its own offsets partition only.
            guard context.apiVersion >= 4 else {
                guard await offsets.isAvailable(forGroup: request.key) else {
                    return FindCoordinatorResponse(
                        errorCode: ErrorCode.coordinatorNotAvailable.rawValue,
                        errorMessage: Self.partitionUnavailable,
                        nodeID: -1,
                        host: "",
                        port: -1
                    )
                }
                return FindCoordinatorResponse(
                    errorCode: 0,
                    errorMessage: nil,
                    nodeID: nodeID,
                    host: endpoint.host,
                    port: endpoint.port
                )
            }
            var coordinators: [FindCoordinatorResponse.Coordinator] = []
            for key in request.coordinatorKeys {
                if await offsets.isAvailable(forGroup: key) {
                    coordinators.append(
                        .init(
                            key: key,
                            nodeID: nodeID,
                            host: endpoint.host,
                            port: endpoint.port,
                            errorCode: 0,
                            errorMessage: nil
                        )
                    )
                } else {
                    coordinators.append(
                        .init(
                            key: key,
                            nodeID: -1,
                            host: "",
                            port: -1,
                            errorCode: ErrorCode.coordinatorNotAvailable.rawValue,
                            errorMessage: Self.partitionUnavailable
                        )
                    )
                }
            }
            return FindCoordinatorResponse(coordinators: coordinators)
        }
        let (error, message) = Self.refusal(keyType: keyType)
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
