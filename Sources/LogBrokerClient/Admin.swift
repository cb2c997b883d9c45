import KafkaMessages
import KafkaWire

/// A config resource: a topic, or a broker (its node id, or "" for the cluster-wide default).
public enum ConfigResource: Hashable, Sendable, CustomStringConvertible {
    case topic(String)
    case broker(String)

    var type: Int8 {
        switch self {
        case .topic: 2
        case .broker: 4
        }
    }

    var name: String {
        switch self {
        case .topic(let name), .broker(let name): name
        }
    }

    public var description: String {
        switch self {
        case .topic(let name): "topic \(name)"
        case .broker(let name): name.isEmpty ? "the cluster's broker defaults" : "broker \(name)"
        }
    }
}

/// One config as DescribeConfigs reports it.
public struct ConfigEntry: Hashable, Sendable {
    public var name: String
    public var value: String?
    /// Kafka's `ConfigSource` name: DYNAMIC_TOPIC_CONFIG, DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG,
    /// STATIC_BROKER_CONFIG, DEFAULT_CONFIG.
    public var source: String
    public var isReadOnly: Bool
    public var isSensitive: Bool
}

/// What DescribeCluster reports.
public struct ClusterDescription: Hashable, Sendable {
    public var clusterID: String
    public var controllerID: Int32
    public var brokers: [BrokerAddress]
}

/// One member of the controller quorum as DescribeQuorum reports it: the active controller (a voter) or a
/// registered broker (an observer).
public struct QuorumReplica: Hashable, Sendable {
    public var nodeID: Int32
    /// The metadata image revision it has applied (Kafka's log end offset of `__cluster_metadata`); nil if unknown.
    public var appliedRevision: Int64?
    /// When the active controller last heard from it (Kafka's last fetch time), in milliseconds since the Unix
    /// epoch by the controller's clock; nil if unknown.
    public var lastContactMs: Int64?
}

/// What DescribeQuorum reports of the controller quorum (`__cluster_metadata` partition 0).
public struct QuorumDescription: Hashable, Sendable {
    /// The active controller.
    public var leaderID: Int32
    /// The active controller's epoch.
    public var leaderEpoch: Int32
    /// The metadata image revision the active controller has applied (Kafka's high watermark).
    public var highWatermark: Int64
    public var voters: [QuorumReplica]
    /// The registered brokers.
    public var observers: [QuorumReplica]
}

/// The admin client: topics, partitions, configs, the cluster and records deletion, each call one Kafka request
/// whose refusal is thrown as a `ClientError` naming the resource and Kafka's error.
///
/// A `Sendable` value over the shared client; thread-safe.
public struct Admin: Sendable {
    let client: LogBrokerClient

    public init(client: LogBrokerClient) {
        self.client = client
    }

    /// Creates `name`; -1 partitions or replication factor take the broker's defaults.
    public func createTopic(
        _ name: String,
        partitions: Int32 = -1,
        replicationFactor: Int16 = -1,
        configs: [String: String] = [:],
        validateOnly: Bool = false
    ) async throws {
        let connection = try await self.client.controllerConnection()
        let (response, _) = try await connection.send(supported: 2...7) { _ in
            CreateTopicsRequest(
                topics: [
                    .init(
                        name: name,
                        numPartitions: partitions,
                        replicationFactor: replicationFactor,
                        configs: configs.sorted { $0.key < $1.key }.map { .init(name: $0.key, value: $0.value) }
                    )
                ],
                timeoutMs: 30_000,
                validateOnly: validateOnly
            )
        }
        if let result = response.topics.first, result.errorCode != 0 {
            throw ClientError.kafka(result.errorCode, "topic \(name)", message: result.errorMessage)
        }
        await self.client.invalidate(name)
    }

    public func deleteTopic(_ name: String) async throws {
        let connection = try await self.client.controllerConnection()
        let (response, _) = try await connection.send(supported: 1...5) { _ in
            DeleteTopicsRequest(topicNames: [name], timeoutMs: 30_000)
        }
        if let result = response.responses.first, result.errorCode != 0 {
            throw ClientError.kafka(result.errorCode, "topic \(name)", message: result.errorMessage)
        }
        await self.client.invalidate(name)
    }

    /// Grows `name` to `count` partitions.
    public func createPartitions(_ name: String, count: Int32) async throws {
        let connection = try await self.client.controllerConnection()
        let (response, _) = try await connection.send(supported: 0...3) { _ in
            CreatePartitionsRequest(topics: [.init(name: name, count: count, assignments: nil)], timeoutMs: 30_000)
        }
        if let result = response.results.first, result.errorCode != 0 {
            throw ClientError.kafka(result.errorCode, "topic \(name)", message: result.errorMessage)
        }
        await self.client.invalidate(name)
    }

    /// Every topic, or the named ones, with partitions, leaders, replicas and ISR.
    public func describeTopics(_ names: [String]? = nil) async throws -> ClusterMetadata {
        try await self.client.refreshMetadata(topics: names)
    }

    /// The configs of `resource` (all of them, with their sources).
    public func describeConfigs(_ resource: ConfigResource) async throws -> [ConfigEntry] {
        try await self.describeConfigs([resource])[resource] ?? []
    }

    /// The configs of each of `resources`, in one request.
    /// - Throws: `ClientError` naming the first resource the broker refused.
    public func describeConfigs(_ resources: [ConfigResource]) async throws -> [ConfigResource: [ConfigEntry]] {
        guard !resources.isEmpty else { return [:] }
        let (response, _) = try await self.client.sendToAny(supported: 1...4) { _ in
            DescribeConfigsRequest(
                resources: resources.map {
                    .init(resourceType: $0.type, resourceName: $0.name, configurationKeys: nil)
                }
            )
        }
        var described: [ConfigResource: [ConfigEntry]] = [:]
        for resource in resources {
            let answer = response.results.first { $0.resourceType == resource.type && $0.resourceName == resource.name }
            guard let result = answer else { throw ClientError("\(resource): no answer") }
            guard result.errorCode == 0 else {
                throw ClientError.kafka(result.errorCode, "\(resource)", message: result.errorMessage)
            }
            described[resource] = result.configs.map {
                ConfigEntry(
                    name: $0.name,
                    value: $0.value,
                    source: Self.sourceNames[$0.configSource] ?? "UNKNOWN",
                    isReadOnly: $0.readOnly,
                    isSensitive: $0.isSensitive
                )
            }
        }
        return described
    }

    static let sourceNames: [Int8: String] = [
        1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG", 3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG", 6: "DYNAMIC_BROKER_LOGGER_CONFIG",
    ]

    /// Sets the `set` configs and removes the `delete` ones (IncrementalAlterConfigs), leaving the others.
    public func alterConfigs(_ resource: ConfigResource, set: [String: String], delete: [String] = []) async throws {
        let (response, _) = try await self.client.sendToAny(supported: 0...1) { _ in
            IncrementalAlterConfigsRequest(
                resources: [
                    .init(
                        resourceType: resource.type,
                        resourceName: resource.name,
                        configs: set.sorted { $0.key < $1.key }.map { .init(name: $0.key, configOperation: 0, value: $0.value) }
                            + delete.map { .init(name: $0, configOperation: 1, value: nil) }
                    )
                ]
            )
        }
        if let result = response.responses.first, result.errorCode != 0 {
            throw ClientError.kafka(result.errorCode, "\(resource)", message: result.errorMessage)
        }
    }

    public func describeCluster() async throws -> ClusterDescription {
        let (response, _) = try await self.client.sendToAny(supported: 0...1) { _ in DescribeClusterRequest() }
        guard response.errorCode == 0 else {
            throw ClientError.kafka(response.errorCode, "DescribeCluster", message: response.errorMessage)
        }
        return ClusterDescription(
            clusterID: response.clusterID,
            controllerID: response.controllerID,
            brokers: response.brokers.map {
                BrokerAddress(nodeID: $0.brokerID, host: $0.host, port: Int($0.port), rack: $0.rack)
            }
        )
    }

    /// The controller quorum, from DescribeQuorum sent to the controller id the metadata names (the active
    /// controller, or a broker that forwards to it).
    public func describeQuorum() async throws -> QuorumDescription {
        let connection = try await self.client.controllerConnection()
        let (response, _) = try await connection.send(supported: 0...2) { _ in
            DescribeQuorumRequest(
                topics: [.init(topicName: "__cluster_metadata", partitions: [.init(partitionIndex: 0)])]
            )
        }
        guard response.errorCode == 0 else {
            throw ClientError.kafka(response.errorCode, "DescribeQuorum", message: response.errorMessage)
        }
        guard let partition = response.topics.first?.partitions.first else {
            throw ClientError("DescribeQuorum: no answer for __cluster_metadata")
        }
        guard partition.errorCode == 0 else {
            throw ClientError.kafka(partition.errorCode, "DescribeQuorum", message: partition.errorMessage)
        }
        func replica(_ state: DescribeQuorumResponse.ReplicaState) -> QuorumReplica {
            QuorumReplica(
                nodeID: state.replicaID,
                appliedRevision: state.logEndOffset < 0 ? nil : state.logEndOffset,
                lastContactMs: state.lastFetchTimestamp < 0 ? nil : state.lastFetchTimestamp
            )
        }
        return QuorumDescription(
            leaderID: partition.leaderID,
            leaderEpoch: partition.leaderEpoch,
            highWatermark: partition.highWatermark,
            voters: partition.currentVoters.map(replica),
            observers: partition.observers.map(replica)
        )
    }

    /// Deletes the records of `partition` below `offset` (-1: all, up to the high watermark); returns the new low
    /// watermark.
    public func deleteRecords(_ partition: TopicPartition, before offset: Int64) async throws -> Int64 {
        let leader = try await self.client.leader(of: partition.topic, partition: partition.partition)
        let (response, _) = try await leader.send(supported: 0...2) { _ in
            DeleteRecordsRequest(
                topics: [.init(name: partition.topic, partitions: [.init(partitionIndex: partition.partition, offset: offset)])],
                timeoutMs: 30_000
            )
        }
        guard let result = response.topics.first?.partitions.first else { throw ClientError("\(partition): no answer") }
        guard result.errorCode == 0 else { throw ClientError.kafka(result.errorCode, "\(partition)") }
        return result.lowWatermark
    }
}
