import ClusterControl
import KafkaMessages
import KafkaWire

/// DescribeCluster (key 60), v0–1: the cluster id, the controller (this node: it runs in-process) and the brokers
/// with their endpoints on the listener the request came in on. Asked for controllers (endpoint type 2, v1), it
/// answers MISMATCHED_ENDPOINT_TYPE as a Kafka broker listener does: controllers have no separate listener here.
/// Authorized operations are not computed (no authorizer), so they stay Kafka's "not provided" value.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct DescribeClusterHandler: KafkaHandler {
    public typealias Request = DescribeClusterRequest

    public var versions: ClosedRange<Int16> { 0...1 }

    let controller: Controller
    let nodeID: Int32

    /// Kafka's MISMATCHED_ENDPOINT_TYPE.
    static let mismatchedEndpointType = ErrorCode(114)

    public init(controller: Controller, nodeID: Int32) {
        self.controller = controller
        self.nodeID = nodeID
    }

    public func handle(_ request: DescribeClusterRequest, context: RequestContext) async -> DescribeClusterResponse {
        guard context.apiVersion < 1 || request.endpointType == 1 else {
            return DescribeClusterResponse(
                errorCode: Self.mismatchedEndpointType.rawValue,
                errorMessage: "this listener serves brokers (endpoint type 1), not controllers",
                endpointType: request.endpointType
            )
        }
        guard let image = try? await self.controller.image() else {
            return DescribeClusterResponse(
                errorCode: ErrorCode.brokerNotAvailable.rawValue,
                errorMessage: "the broker is starting"
            )
        }
        let brokers = image.brokers.values.sorted { $0.nodeID < $1.nodeID }.compactMap { broker in
            broker.endpoints.first { $0.listener == context.listenerName }.map {
                DescribeClusterResponse.DescribeClusterBroker(
                    brokerID: broker.nodeID,
                    host: $0.host,
                    port: $0.port,
                    rack: broker.rack
                )
            }
        }
        return DescribeClusterResponse(clusterID: image.clusterID, controllerID: self.nodeID, brokers: brokers)
    }
}
