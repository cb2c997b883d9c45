import ClusterControl

/// What Metadata and DescribeCluster tell clients about the cluster, all taken from one applied image (one
/// revision): the unfenced brokers, the controller id, and the live set that offline replicas are computed from.
///
/// A plain value, made per request; thread-safe.
struct ClusterView: Sendable {
    /// The image applied, at one revision.
    let image: ClusterImage
    /// The unfenced brokers of `image` (`ActiveController.liveBrokers(in:)`).
    let live: Set<Int32>
    /// The id clients are given as the controller (see `controllerID(active:live:nodeID:)`).
    let controllerID: Int32

    /// The image this node has applied; nil before its controller started.
    static func current(controller: Controller, nodeID: Int32) async -> ClusterView? {
        // `image()` says whether the node has started; the image and the election key are then read together.
        guard (try? await controller.image()) != nil else { return nil }
        let followed = await controller.follower.followed
        let live = ActiveController.liveBrokers(in: followed.image)
        return ClusterView(
            image: followed.image,
            live: live,
            controllerID: Self.controllerID(active: followed.controller?.nodeID, live: live, nodeID: nodeID)
        )
    }

    /// The controller id for clients: the active controller (from the election key) when it is a live broker, as
    /// with `broker,controller` processes. A client sends its admin requests to that id, so an active controller
    /// that serves no clients (a controller-only process) is not named: this broker is, when live, as Kafka's
    /// KRaft brokers name a live broker, which forwards those requests to the active controller. -1 when neither
    /// applies (no controller elected and this broker not live).
    static func controllerID(active: Int32?, live: Set<Int32>, nodeID: Int32) -> Int32 {
        if let active, live.contains(active) { return active }
        if active != nil, live.contains(nodeID) { return nodeID }
        return -1
    }

    /// The live brokers with their endpoint on `listener`, by node id; a broker without that listener is left out.
    func brokers(on listener: String) -> [(registration: BrokerRegistration, endpoint: BrokerEndpoint)] {
        self.image.brokers.values.sorted { $0.nodeID < $1.nodeID }.compactMap { broker in
            guard self.live.contains(broker.nodeID) else { return nil }
            return broker.endpoints.first { $0.listener == listener }.map { (broker, $0) }
        }
    }
}
