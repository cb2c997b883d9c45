import ClusterControl

/// What a node serves on its controller listeners (`controller.listener.names`): Kafka's controller APIs, not the
/// client APIs. Brokers forward the admin writes here (Kafka's `ForwardingManager`), and register and heartbeat here
/// (KRaft's BrokerRegistration and BrokerHeartbeat). A Kafka client that connects and asks for Metadata, Produce or
/// Fetch has its connection closed, as for any API a listener does not serve.
///
/// The handlers are the broker's own types over the node's `Controller`: its active controller decides while it is
/// the active one, and a standby answers NOT_CONTROLLER, as Kafka's controller does, so the broker finds the active
/// controller again in the election key and retries there.
enum ControllerListener {
    /// The controller listeners' handler table: ApiVersions (every table has it), then one line per API.
    static func handlers(controller: Controller, configuration: BrokerConfiguration) -> HandlerTable {
        var handlers = HandlerTable()
        handlers.register(CreateTopicsHandler(controller: controller, configuration: configuration))
        handlers.register(DeleteTopicsHandler(controller: controller))
        handlers.register(CreatePartitionsHandler(controller: controller))
        handlers.register(AlterConfigsHandler(controller: controller, nodeID: configuration.nodeID))
        handlers.register(IncrementalAlterConfigsHandler(controller: controller, configuration: configuration))
        // No local logs to reopen here: a controller hosts no partitions.
        handlers.register(ElectLeadersHandler(controller: controller))
        // The quorum's description: only the active controller can give it; brokers forward it here.
        handlers.register(DescribeQuorumHandler(controller: controller))
        // KRaft's broker lifecycle: registration, heartbeats (liveness and fencing), producer id blocks.
        handlers.register(BrokerRegistrationHandler(controller: controller))
        handlers.register(BrokerHeartbeatHandler(controller: controller))
        handlers.register(AllocateProducerIdsHandler(controller: controller))
        // Replication: leaders' ISR changes, compare-and-set on the partition epoch.
        handlers.register(AlterPartitionHandler(controller: controller))
        return handlers
    }
}
