import ClusterControl
import KafkaMessages
import KafkaWire

/// CreateTopics (key 19), v0–7, through the controller's compare-and-set commit: partitions and replication
/// factor (-1 takes `num.partitions` / `default.replication.factor`, v4+) or a manual assignment (then both must be
/// -1), dynamic configs checked against the topic config definitions (INVALID_CONFIG naming the key), validate-only
/// (v1+), and the answer Kafka gives from v5: partition count, replication factor and every config with its source,
/// and the topic id (v7). A name given twice in one request is refused for each of its entries (INVALID_REQUEST).
///
/// The creation is synchronous: the partitions are led and their logs open before the answer.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct CreateTopicsHandler: KafkaHandler {
    public typealias Request = CreateTopicsRequest

    public var versions: ClosedRange<Int16> { 0...7 }

    let controller: Controller
    let configuration: BrokerConfiguration

    public init(controller: Controller, configuration: BrokerConfiguration) {
        self.controller = controller
        self.configuration = configuration
    }

    public func handle(_ request: CreateTopicsRequest, context: RequestContext) async -> CreateTopicsResponse {
        let duplicates = Self.duplicates(request.topics.map(\.name))
        var results: [CreateTopicsResponse.CreatableTopicResult] = []
        for topic in request.topics {
            guard !duplicates.contains(topic.name) else {
                results.append(
                    Self.failure(
                        topic.name,
                        ClusterControlError.invalidRequest("the request names topic '\(topic.name)' more than once")
                    )
                )
                continue
            }
            do {
                let created = try await self.create(topic, validateOnly: context.apiVersion >= 1 && request.validateOnly)
                results.append(try await self.success(created))
            } catch {
                results.append(Self.failure(topic.name, error))
            }
        }
        return CreateTopicsResponse(topics: results)
    }

    private func create(
        _ topic: CreateTopicsRequest.CreatableTopic,
        validateOnly: Bool
    ) async throws(ClusterControlError) -> TopicImage {
        var assignment: [[Int32]]?
        if !topic.assignments.isEmpty {
            guard topic.numPartitions == -1, topic.replicationFactor == -1 else {
                throw .invalidRequest(
                    "with a replica assignment, the partition count and replication factor must be -1"
                )
            }
            let sorted = topic.assignments.sorted { $0.partitionIndex < $1.partitionIndex }
            guard sorted.map(\.partitionIndex) == Array(0..<Int32(sorted.count)) else {
                throw .invalidReplicaAssignment("the assigned partitions must be numbered 0 to \(sorted.count - 1)")
            }
            assignment = sorted.map(\.brokerIDs)
        }
        var configs: [String: String] = [:]
        for config in topic.configs {
            guard let value = config.value else {
                throw .invalidRequest("a null value is not allowed for topic config \(config.name)")
            }
            guard configs.updateValue(value, forKey: config.name) == nil else {
                throw .invalidRequest("topic config \(config.name) is given twice")
            }
        }
        try ConfigLayers.validateTopicConfigs(configs)
        return try await self.controller.createTopic(
            topic.name,
            partitions: topic.numPartitions == -1 ? self.configuration.numPartitions : topic.numPartitions,
            replicationFactor: topic.replicationFactor == -1
                ? self.configuration.defaultReplicationFactor : topic.replicationFactor,
            assignment: assignment,
            configs: configs,
            validateOnly: validateOnly
        )
    }

    private func success(_ topic: TopicImage) async throws -> CreateTopicsResponse.CreatableTopicResult {
        let image = try await self.controller.image()
        let layers = ConfigLayers(configuration: self.configuration, brokerConfigs: image.brokerConfigs)
        return .init(
            name: topic.name,
            topicID: topic.id,
            errorCode: 0,
            errorMessage: nil,
            numPartitions: Int32(topic.partitions.count),
            replicationFactor: Int16(topic.partitions.first?.replicas.count ?? 0),
            configs: layers.describeTopic(overrides: topic.configs).map {
                .init(
                    name: $0.name,
                    value: $0.value,
                    readOnly: $0.readOnly,
                    configSource: $0.source.rawValue,
                    isSensitive: $0.sensitive
                )
            }
        )
    }

    private static func failure(_ name: String, _ error: any Error) -> CreateTopicsResponse.CreatableTopicResult {
        let error = error as? ClusterControlError
        return .init(
            name: name,
            errorCode: (error?.kafkaErrorCode ?? .unknownServerError).rawValue,
            errorMessage: error.map { "\($0)" } ?? "the controller is not available",
            configs: nil
        )
    }

    /// The names that appear more than once.
    static func duplicates(_ names: [String]) -> Set<String> {
        var seen: Set<String> = []
        return Set(names.filter { !seen.insert($0).inserted })
    }
}
