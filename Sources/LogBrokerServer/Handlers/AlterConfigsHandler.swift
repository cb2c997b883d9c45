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
            var response = AlterConfigsResponse.AlterConfigsResourceResponse(
                errorCode: 0,
                errorMessage: nil,
                resourceType: wanted.resourceType,
                resourceName: wanted.resourceName
            )
            do throws(ClusterControlError) {
                let resource = try ConfigLayers.Resource(
                    type: wanted.resourceType,
                    name: wanted.resourceName,
                    nodeID: self.nodeID
                )
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
                try await self.controller.alterConfigs(of: resource, validateOnly: request.validateOnly) { _ in
                    replacement
                }
            } catch {
                response.errorCode = error.kafkaErrorCode.rawValue
                response.errorMessage = "\(error)"
            }
            responses.append(response)
        }
        return AlterConfigsResponse(responses: responses)
    }
}

extension Controller {
    /// Replaces the dynamic config set of `resource` with what `change` makes of it, once the result passes the
    /// resource's checks; the check runs on every attempt of the compare-and-set loop.
    func alterConfigs(
        of resource: ConfigLayers.Resource,
        validateOnly: Bool,
        _ change: @escaping @Sendable ([String: String]) throws(ClusterControlError) -> [String: String]
    ) async throws(ClusterControlError) {
        let checked: @Sendable ([String: String]) throws(ClusterControlError) -> [String: String] = { current in
            let next = try change(current)
            try ConfigLayers.validate(next, for: resource)
            return next
        }
        switch resource {
        case .topic(let name): try await self.alterTopicConfigs(name, validateOnly: validateOnly, checked)
        case .broker(let name): try await self.alterBrokerConfigs(name, validateOnly: validateOnly, checked)
        }
    }
}
