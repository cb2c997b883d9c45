import KafkaMessages
import KafkaWire

/// A partition as the client last learned it from Metadata.
public struct PartitionMetadata: Hashable, Sendable {
    public var partition: Int32
    /// -1 while the partition has no leader.
    public var leader: Int32
    public var leaderEpoch: Int32
    public var replicas: [Int32]
    public var isr: [Int32]
    public var error: Int16
}

/// A topic as the client last learned it from Metadata.
public struct TopicMetadata: Hashable, Sendable {
    public var name: String
    public var id: KafkaUUID
    public var isInternal: Bool
    /// By partition number.
    public var partitions: [PartitionMetadata]
}

/// A broker's node id and address.
public struct BrokerAddress: Hashable, Sendable, CustomStringConvertible {
    public var nodeID: Int32
    public var host: String
    public var port: Int
    public var rack: String?

    public var description: String { "\(self.host):\(self.port)" }
}

/// The cluster as one Metadata answer describes it.
public struct ClusterMetadata: Hashable, Sendable {
    public var clusterID: String?
    public var controllerID: Int32
    public var brokers: [BrokerAddress]
    public var topics: [TopicMetadata]
}

/// The client's view of a cluster: bootstrap servers, one shared connection per broker, and the metadata the
/// producer, consumer and admin client route by (refreshed on demand and when an answer says leadership moved).
///
/// Thread safety: an actor.
public actor LogBrokerClient {
    public struct Configuration: Sendable {
        /// `host:port` pairs, as `bootstrap.servers`.
        public var bootstrapServers: [String]
        /// `client.id`, sent in every request header.
        public var clientID: String

        public init(bootstrapServers: [String], clientID: String = "logbroker-client") {
            self.bootstrapServers = bootstrapServers
            self.clientID = clientID
        }
    }

    public let configuration: Configuration
    private var connections: [String: BrokerConnection] = [:]
    private var brokers: [Int32: BrokerAddress] = [:]
    private var topics: [String: TopicMetadata] = [:]
    private var controllerID: Int32 = -1

    public init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    /// - Throws: `ClientError` for a bootstrap entry that is not `host:port`.
    public init(bootstrapServers: String, clientID: String = "logbroker-client") throws {
        let servers = bootstrapServers.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
        guard !servers.isEmpty else { throw ClientError("no bootstrap server given") }
        for server in servers { _ = try Self.hostAndPort(server) }
        self.configuration = Configuration(bootstrapServers: servers, clientID: clientID)
    }

    static func hostAndPort(_ server: String) throws -> (String, Int) {
        guard let colon = server.lastIndex(of: ":"), let port = Int(server[server.index(after: colon)...]),
            (1...65535).contains(port)
        else { throw ClientError("bootstrap server '\(server)' is not host:port") }
        var host = String(server[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    // MARK: Connections

    private func connection(host: String, port: Int) -> BrokerConnection {
        let key = "\(host):\(port)"
        if let existing = self.connections[key], existing.isAlive { return existing }
        let connection = BrokerConnection(host: host, port: port, clientID: self.configuration.clientID)
        self.connections[key] = connection
        return connection
    }

    /// The connection to broker `nodeID`, as the last metadata placed it.
    func connection(to nodeID: Int32) async throws -> BrokerConnection {
        if self.brokers[nodeID] == nil { try await self.refreshMetadata(topics: []) }
        guard let broker = self.brokers[nodeID] else { throw ClientError("broker \(nodeID) is not in the cluster") }
        return self.connection(host: broker.host, port: broker.port)
    }

    /// A connection to any broker: a known one, else the bootstrap servers in turn.
    func anyConnection() async throws -> BrokerConnection {
        var candidates = self.brokers.values.sorted { $0.nodeID < $1.nodeID }.map { ($0.host, $0.port) }
        for server in self.configuration.bootstrapServers { candidates.append(try Self.hostAndPort(server)) }
        var failure: ClientError?
        for (host, port) in candidates {
            let connection = self.connection(host: host, port: port)
            if connection.isAlive { return connection }
            failure = connection.failure ?? failure
        }
        // The last broker's own reason (a connect refused at once fails before it is looked at).
        let servers = self.configuration.bootstrapServers.joined(separator: ",")
        throw failure ?? ClientError("no broker of \(servers) is reachable")
    }

    /// Sends `build`'s request to any broker, trying the next one when a broker cannot be reached.
    func sendToAny<Request: KafkaRequest>(
        supported: ClosedRange<Int16> = Request.validVersions,
        _ build: @escaping @Sendable (Int16) -> Request
    ) async throws -> (response: Request.Response, version: Int16) {
        var lastError: (any Error)?
        for _ in 0..<(self.configuration.bootstrapServers.count + self.brokers.count + 1) {
            let connection = try await self.anyConnection()
            do {
                return try await connection.send(supported: supported, build)
            } catch {
                lastError = error
                if connection.isAlive { throw error }
            }
        }
        throw lastError ?? ClientError("no broker is reachable")
    }

    /// The controller's connection (admin requests that Kafka requires there: topic creation and deletion).
    func controllerConnection() async throws -> BrokerConnection {
        if self.controllerID < 0 { try await self.refreshMetadata(topics: []) }
        return self.controllerID >= 0 ? try await self.connection(to: self.controllerID) : try await self.anyConnection()
    }

    // MARK: Metadata

    /// Asks for `topics` (nil: every topic) and remembers the answer. Auto-creation is not requested.
    @discardableResult
    public func refreshMetadata(topics: [String]?, allowAutoCreation: Bool = false) async throws -> ClusterMetadata {
        let (response, version) = try await self.sendToAny(supported: 1...12) { version in
            MetadataRequest(
                topics: topics?.map { .init(name: $0) },
                allowAutoTopicCreation: allowAutoCreation
            )
        }
        _ = version
        var brokers: [Int32: BrokerAddress] = [:]
        for broker in response.brokers {
            brokers[broker.nodeID] = BrokerAddress(
                nodeID: broker.nodeID,
                host: broker.host,
                port: Int(broker.port),
                rack: broker.rack
            )
        }
        self.brokers = brokers
        self.controllerID = response.controllerID
        var described: [TopicMetadata] = []
        for topic in response.topics {
            guard let name = topic.name else { continue }
            guard topic.errorCode == 0 else {
                self.topics[name] = nil
                if topics != nil { throw ClientError.kafka(topic.errorCode, "topic \(name)") }
                continue
            }
            let partitions = topic.partitions.sorted { $0.partitionIndex < $1.partitionIndex }.map {
                PartitionMetadata(
                    partition: $0.partitionIndex,
                    leader: $0.leaderID,
                    leaderEpoch: $0.leaderEpoch,
                    replicas: $0.replicaNodes,
                    isr: $0.isrNodes,
                    error: $0.errorCode
                )
            }
            let metadata = TopicMetadata(
                name: name,
                id: topic.topicID,
                isInternal: topic.isInternal,
                partitions: partitions
            )
            self.topics[name] = metadata
            described.append(metadata)
        }
        return ClusterMetadata(
            clusterID: response.clusterID,
            controllerID: response.controllerID,
            brokers: brokers.values.sorted { $0.nodeID < $1.nodeID },
            topics: described.sorted { $0.name < $1.name }
        )
    }

    /// The topic's metadata, asked for when not known yet (or when `refresh`); with `allowAutoCreation` the broker
    /// may create it (`auto.create.topics.enable`), as producers ask.
    /// - Throws: `ClientError` naming the topic when it does not exist.
    public func topic(_ name: String, refresh: Bool = false, allowAutoCreation: Bool = false) async throws
        -> TopicMetadata
    {
        if refresh || self.topics[name] == nil {
            try await self.refreshMetadata(topics: [name], allowAutoCreation: allowAutoCreation)
        }
        guard let topic = self.topics[name] else { throw ClientError("topic \(name) does not exist", code: .unknownTopicOrPartition) }
        return topic
    }

    /// Forgets what the client knows of `topic`, so the next use asks again (leadership moved).
    func invalidate(_ topic: String) {
        self.topics[topic] = nil
    }

    /// The leader of `partition` of `topic`, asking for metadata when unknown.
    func leader(of topic: String, partition: Int32) async throws -> BrokerConnection {
        let metadata = try await self.topic(topic)
        guard partition >= 0, Int(partition) < metadata.partitions.count else {
            throw ClientError("partition \(partition) of topic \(topic) does not exist", code: .unknownTopicOrPartition)
        }
        let leader = metadata.partitions[Int(partition)].leader
        guard leader >= 0 else {
            self.invalidate(topic)
            throw ClientError("\(topic)-\(partition) has no leader", code: .leaderNotAvailable)
        }
        return try await self.connection(to: leader)
    }
}

extension Substring {
    func trimmingSpaces() -> String { String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
}
