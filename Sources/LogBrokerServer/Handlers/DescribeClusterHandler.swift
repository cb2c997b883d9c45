import ClusterControl
import KafkaMessages
import KafkaWire

/// DescribeCluster (key 60), v0–1: the cluster id, the controller id and every unfenced broker with its endpoint on
/// the listener the request came in on and its rack, from one image (`ClusterView`, as Metadata). Fenced brokers
/// are not listed: v0–1 have no place for them (Kafka 4.0's v2 adds one, KIP-1073); the active controller's
/// DescribeQuorum names every registered broker. Asked for controllers (endpoint type 2, v1), it
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
        guard let cluster = await ClusterView.current(controller: self.controller, nodeID: self.nodeID) else {
            return DescribeClusterResponse(
                errorCode: ErrorCode.brokerNotAvailable.rawValue,
                errorMessage: "the broker is starting"
            )
        }
        let brokers = cluster.brokers(on: context.listenerName).map { broker, endpoint in
            DescribeClusterResponse.DescribeClusterBroker(
                brokerID: broker.nodeID,
                host: endpoint.host,
                port: endpoint.port,
                rack: broker.rack
            )
        }
        return DescribeClusterResponse(
            clusterID: cluster.image.clusterID,
            controllerID: cluster.controllerID,
            brokers: brokers
        )
    }
}
