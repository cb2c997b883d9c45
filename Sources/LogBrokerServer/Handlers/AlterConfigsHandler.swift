import ClusterControl
import KafkaMessages
import KafkaWire

/// AlterConfigs (key 33), v0–2: replaces the whole dynamic config set of each resource (a topic, this broker, or
/// the cluster-wide broker default ""), so keys not sent return to their inherited values. The new set is checked
/// (INVALID_CONFIG naming the key: unknown, invalid, or a broker setting that cannot change live) and committed
/// through the controller; with validate-only nothing is written. Changes reach existing logs without a restart.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct AlterConfigsHandler: KafkaHandler {
    public typealias Request = AlterConfigsRequest

    public var versions: ClosedRange<Int16> { 0...2 }

    let controller: Controller
    let nodeID: Int32

    public init(controller: Controller, nodeID: Int32) {
        self.controller = controller
        self.nodeID = nodeID
    }

    public func handle(_ request: AlterConfigsRequest, context: RequestContext) async -> AlterConfigsResponse {
        var responses: [AlterConfigsResponse.AlterConfigsResourceResponse] = []
        for wanted in request.resources {
            let (errorCode, errorMessage) = await self.controller.alterConfigs(
                type: wanted.resourceType,
                name: wanted.resourceName,
                nodeID: self.nodeID,
                validateOnly: request.validateOnly
            ) { _ throws(ClusterControlError) in
                var configs: [String: String] = [:]
                for config in wanted.configs {
                    guard let value = config.value else {
                        throw .invalidRequest("a null value is not allowed for config \(config.name)")
                    }
                    guard configs.updateValue(value, forKey: config.name) == nil else {
                        throw .invalidRequest("config \(config.name) is given twice")
                    }
                }
                let replacement = configs
                return { _ in replacement }
            }
            responses.append(
                .init(
                    errorCode: errorCode,
                    errorMessage: errorMessage,
                    resourceType: wanted.resourceType,
                    resourceName: wanted.resourceName
                )
            )
        }
        return AlterConfigsResponse(responses: responses)
    }
}

extension Controller {
    typealias ConfigChange = @Sendable ([String: String]) throws(ClusterControlError) -> [String: String]

    /// One resource of an AlterConfigs or IncrementalAlterConfigs request: the change `makeChange` builds for it
    /// (or its refusal of the request) applied to the resource's dynamic set once the result passes the resource's
    /// checks, which run on every attempt of the compare-and-set loop. Returns the answer's error code and message.
    func alterConfigs(
        type: Int8,
        name: String,
        nodeID: Int32,
        validateOnly: Bool,
        _ makeChange: (ConfigLayers.Resource) throws(ClusterControlError) -> ConfigChange
    ) async -> (errorCode: Int16, errorMessage: String?) {
        do throws(ClusterControlError) {
            let resource = try ConfigLayers.Resource(type: type, name: name, nodeID: nodeID)
            let change = try makeChange(resource)
            let checked: ConfigChange = { current throws(ClusterControlError) in
                let next = try change(current)
                try ConfigLayers.validate(next, for: resource)
                return next
            }
            switch resource {
            case .topic(let name): try await self.alterTopicConfigs(name, validateOnly: validateOnly, checked)
            case .broker(let name): try await self.alterBrokerConfigs(name, validateOnly: validateOnly, checked)
            }
            return (ErrorCode.none.rawValue, nil)
        } catch {
            return (error.kafkaErrorCode.rawValue, "\(error)")
        }
    }
}
