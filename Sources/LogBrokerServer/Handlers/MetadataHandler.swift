import ClusterControl
import KafkaMessages
import KafkaWire
import Logging
import NIOCore

/// Metadata (key 3), v0–12: every unfenced broker with its endpoint for the listener the request came in on and
/// its rack, the cluster id, the controller id (`ClusterView.controllerID`: the active controller), and the
/// requested topics with their ids (v10+), partitions, leaders, leader epochs (v7+), replicas, ISR and offline
/// replicas (replicas on brokers that are not unfenced), all from one image this node applied (one revision), so
/// every broker at the same revision answers alike.
///
/// Topics: null (v1+) or an empty list at v0 means all; an empty list at v1+ means none. An unknown topic is
/// auto-created through the controller when `auto.create.topics.enable` is set and the request allows it (its
/// flag from v4; always before v4), with `num.partitions` and `default.replication.factor`. The creation is
/// synchronous: it is persisted, and the replica manager told of the new leaderships, before the answer, so the
/// first answer already lists the partitions with their leader (Kafka answers LEADER_NOT_AVAILABLE first because
/// its creation is asynchronous; clients accept either). Otherwise an unknown topic gets
/// UNKNOWN_TOPIC_OR_PARTITION, an illegal name INVALID_TOPIC_EXCEPTION, a replication factor above the broker
/// count INVALID_REPLICATION_FACTOR, and a topic asked for by id only (v10+) that does not exist UNKNOWN_TOPIC_ID.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct MetadataHandler: KafkaHandler {
    public typealias Request = MetadataRequest

    public var versions: ClosedRange<Int16> { 0...12 }

    let controller: Controller
    let nodeID: Int32
    let autoCreateTopics: Bool
    let numPartitions: Int32
    let defaultReplicationFactor: Int16

    public init(controller: Controller, configuration: BrokerConfiguration) {
        self.controller = controller
        self.nodeID = configuration.nodeID
        self.autoCreateTopics = configuration.autoCreateTopicsEnable
        self.numPartitions = configuration.numPartitions
        self.defaultReplicationFactor = configuration.defaultReplicationFactor
    }

    /// The endpoints this broker registers: `advertised.listeners`, where a port of 0 (an ephemeral listener, in
    /// tests) is replaced by the port actually bound for the listener of the same name, and an empty host (bind
    /// everything) by the bound host.
    public static func endpoints(
        configuration: BrokerConfiguration,
        bound: [(listener: String, host: String, port: Int)]
    ) -> [BrokerEndpoint] {
        configuration.advertisedListeners.map { listener in
            let actual = bound.first { $0.listener == listener.name }
            let port = listener.port == 0 ? actual?.port ?? 0 : listener.port
            let host = listener.host.isEmpty ? actual?.host ?? "localhost" : listener.host
            return BrokerEndpoint(listener: listener.name, host: host, port: Int32(port))
        }
    }

    public func handle(_ request: MetadataRequest, context: RequestContext) async -> MetadataResponse {
        let version = context.apiVersion
        guard let cluster = await ClusterView.current(controller: self.controller, nodeID: self.nodeID) else {
            return MetadataResponse(controllerID: -1)
        }
        var image = cluster.image
        let live = cluster.live
        let allowCreate = self.autoCreateTopics && (version < 4 || request.allowAutoTopicCreation)

        var topics: [MetadataResponse.MetadataResponseTopic] = []
        let requested = request.topics.map { version == 0 && $0.isEmpty ? nil : $0 } ?? nil
        if let requested {
            for wanted in requested {
                guard let name = wanted.name else {
                    let found = image.topics.values.first { $0.id == wanted.topicID && wanted.topicID != .zero }
                    topics.append(
                        found.map { self.describe($0, live: live) }
                            ?? .init(errorCode: ErrorCode.unknownTopicID.rawValue, name: nil, topicID: wanted.topicID)
                    )
                    continue
                }
                if let topic = image.topics[name] {
                    topics.append(self.describe(topic, live: live))
                    continue
                }
                do {
                    try TopicName.validate(name)
                } catch {
                    topics.append(.init(errorCode: error.kafkaErrorCode.rawValue, name: name))
                    continue
                }
                guard allowCreate else {
                    topics.append(.init(errorCode: ErrorCode.unknownTopicOrPartition.rawValue, name: name))
                    continue
                }
                do {
                    let topic = try await self.controller.createTopic(
                        name,
                        partitions: self.numPartitions,
                        replicationFactor: self.defaultReplicationFactor
                    )
                    image.topics[name] = topic
                    topics.append(self.describe(topic, live: live))
                } catch let error where error == .topicAlreadyExists(name) {
                    // Another request created it meanwhile: answer with that one.
                    if let current = try? await self.controller.image(), let topic = current.topics[name] {
                        image.topics[name] = topic
                        topics.append(self.describe(topic, live: live))
                    } else {
                        topics.append(.init(errorCode: ErrorCode.leaderNotAvailable.rawValue, name: name))
                    }
                } catch {
                    context.logger.warning(
                        "auto topic creation failed",
                        metadata: ["topic": "\(name)", "error": "\(error)"]
                    )
                    topics.append(.init(errorCode: error.kafkaErrorCode.rawValue, name: name))
                }
            }
        } else {
            topics = image.topics.values.sorted { $0.name < $1.name }.map { self.describe($0, live: live) }
        }

        let brokers = cluster.brokers(on: context.listenerName).map { broker, endpoint in
            MetadataResponse.MetadataResponseBroker(
                nodeID: broker.nodeID,
                host: endpoint.host,
                port: endpoint.port,
                rack: broker.rack
            )
        }
        return MetadataResponse(
            brokers: brokers,
            clusterID: image.clusterID,
            controllerID: cluster.controllerID,
            topics: topics
        )
    }

    private func describe(_ topic: TopicImage, live: Set<Int32>) -> MetadataResponse.MetadataResponseTopic {
        .init(
            errorCode: 0,
            name: topic.name,
            topicID: topic.id,
            isInternal: topic.isInternal,
            partitions: topic.partitions.enumerated().map { index, state in
                .init(
                    errorCode: state.leader == nil ? ErrorCode.leaderNotAvailable.rawValue : 0,
                    partitionIndex: Int32(index),
                    leaderID: state.leader ?? -1,
                    leaderEpoch: state.leaderEpoch,
                    replicaNodes: state.replicas,
                    isrNodes: state.isr,
                    offlineReplicas: state.offlineReplicas(live: live)
                )
            }
        )
    }
}
