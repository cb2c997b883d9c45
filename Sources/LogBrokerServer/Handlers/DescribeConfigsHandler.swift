import ClusterControl
import KafkaMessages
import KafkaProperties
import KafkaWire

/// DescribeConfigs (key 32), v0–4: a topic's configs (every topic setting, its value and where it comes from:
/// the topic's dynamic config, this broker's or the cluster's dynamic broker config, `server.properties`, or the
/// default) and this broker's configs (read-only unless they can change live), with synonyms (v1+), types and
/// documentation (v3+) when asked. Only the listed keys when the request lists some. An unknown topic answers
/// UNKNOWN_TOPIC_OR_PARTITION; another broker or an unsupported resource type INVALID_REQUEST.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct DescribeConfigsHandler: KafkaHandler {
    public typealias Request = DescribeConfigsRequest

    public var versions: ClosedRange<Int16> { 0...4 }

    let controller: Controller
    let configuration: BrokerConfiguration

    public init(controller: Controller, configuration: BrokerConfiguration) {
        self.controller = controller
        self.configuration = configuration
    }

    public func handle(_ request: DescribeConfigsRequest, context: RequestContext) async -> DescribeConfigsResponse {
        let image = try? await self.controller.image()
        let layers = ConfigLayers(configuration: self.configuration, brokerConfigs: image?.brokerConfigs ?? [:])
        let results = request.resources.map { wanted -> DescribeConfigsResponse.DescribeConfigsResult in
            var result = DescribeConfigsResponse.DescribeConfigsResult(
                errorCode: 0,
                errorMessage: nil,
                resourceType: wanted.resourceType,
                resourceName: wanted.resourceName
            )
            do throws(ClusterControlError) {
                let entries: [ConfigLayers.Entry]
                switch try ConfigLayers.Resource(
                    type: wanted.resourceType,
                    name: wanted.resourceName,
                    nodeID: self.configuration.nodeID
                ) {
                case .topic(let name):
                    guard let topic = image?.topics[name] else { throw .unknownTopic(name) }
                    entries = layers.describeTopic(overrides: topic.configs)
                case .broker(let name):
                    entries = layers.describeBroker(name)
                }
                let keys = wanted.configurationKeys.flatMap { $0.isEmpty ? nil : Set($0) }
                result.configs = entries.filter { keys?.contains($0.name) ?? true }.map {
                    Self.describe($0, synonyms: request.includeSynonyms, documentation: request.includeDocumentation)
                }
            } catch {
                result.errorCode = error.kafkaErrorCode.rawValue
                result.errorMessage = "\(error)"
            }
            return result
        }
        return DescribeConfigsResponse(results: results)
    }

    static func describe(
        _ entry: ConfigLayers.Entry,
        synonyms: Bool,
        documentation: Bool
    ) -> DescribeConfigsResponse.DescribeConfigsResourceResult {
        .init(
            name: entry.name,
            value: entry.value,
            readOnly: entry.readOnly,
            isDefault: entry.source == .defaultConfig,
            configSource: entry.source.rawValue,
            isSensitive: entry.sensitive,
            synonyms: synonyms ? entry.synonyms.map { .init(name: $0.name, value: $0.value, source: $0.source.rawValue) } : [],
            configType: Self.kafkaType(entry.type),
            documentation: documentation ? entry.documentation : nil
        )
    }

    /// Kafka's `ConfigType` codes (DescribeConfigs v3+).
    static func kafkaType(_ type: SettingType) -> Int8 {
        switch type {
        case .boolean: 1
        case .string: 2
        case .int: 3
        case .long: 5
        case .double: 6
        case .list: 7
        case .password: 9
        }
    }
}
