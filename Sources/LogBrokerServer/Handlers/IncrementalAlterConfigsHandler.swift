import ClusterControl
import KafkaMessages
import KafkaProperties
import KafkaWire

/// IncrementalAlterConfigs (key 44), v0–1: per resource, a list of operations on its dynamic configs, applied
/// together through the controller's compare-and-set (two admin clients changing one topic at once both keep
/// their changes): SET (0) a value, DELETE (1) back to the inherited value, APPEND (2) and SUBTRACT (3) items of
/// a list setting (starting from its inherited value; INVALID_CONFIG for a setting that is not a list). A key
/// given twice or an unknown operation answers INVALID_REQUEST; checks as AlterConfigs.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct IncrementalAlterConfigsHandler: KafkaHandler {
    public typealias Request = IncrementalAlterConfigsRequest

    public var versions: ClosedRange<Int16> { 0...1 }

    let controller: Controller
    let configuration: BrokerConfiguration

    public init(controller: Controller, configuration: BrokerConfiguration) {
        self.controller = controller
        self.configuration = configuration
    }

    enum Operation: Int8 {
        case set = 0
        case delete = 1
        case append = 2
        case subtract = 3
    }

    public func handle(
        _ request: IncrementalAlterConfigsRequest,
        context: RequestContext
    ) async -> IncrementalAlterConfigsResponse {
        let image = try? await self.controller.image()
        let layers = ConfigLayers(configuration: self.configuration, brokerConfigs: image?.brokerConfigs ?? [:])
        var responses: [IncrementalAlterConfigsResponse.AlterConfigsResourceResponse] = []
        for wanted in request.resources {
            let (errorCode, errorMessage) = await self.controller.alterConfigs(
                type: wanted.resourceType,
                name: wanted.resourceName,
                nodeID: self.configuration.nodeID,
                validateOnly: request.validateOnly
            ) { resource throws(ClusterControlError) in
                guard CreateTopicsHandler.duplicates(wanted.configs.map(\.name)).isEmpty else {
                    throw .invalidRequest("a config is given twice for \(wanted.resourceName)")
                }
                let operations = try wanted.configs.map { config throws(ClusterControlError) in
                    try Self.operation(config, resource: resource, layers: layers)
                }
                return { current in
                    var next = current
                    for operation in operations { operation(&next) }
                    return next
                }
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
        return IncrementalAlterConfigsResponse(responses: responses)
    }

    /// One operation as a change of the dynamic set, checked before anything is committed.
    static func operation(
        _ config: IncrementalAlterConfigsRequest.AlterableConfig,
        resource: ConfigLayers.Resource,
        layers: ConfigLayers
    ) throws(ClusterControlError) -> @Sendable (inout [String: String]) -> Void {
        let name = config.name
        guard let operation = Operation(rawValue: config.configOperation) else {
            throw .invalidRequest("unknown config operation \(config.configOperation) for \(name)")
        }
        switch operation {
        case .set:
            guard let value = config.value else { throw .invalidRequest("SET needs a value for \(name)") }
            return { $0[name] = value }
        case .delete:
            return { $0[name] = nil }
        case .append, .subtract:
            guard let definition = ConfigLayers.definition(of: name, for: resource) else {
                throw .invalidConfig("Unknown config \(name)")
            }
            guard definition.type == .list else {
                throw .invalidConfig("\(name) is not a list: APPEND and SUBTRACT are not allowed on it")
            }
            let items = Self.items(config.value ?? "")
            let inherited = Self.items(layers.inheritedValue(of: name, for: resource) ?? "")
            return { configs in
                var list = configs[name].map(Self.items) ?? inherited
                if operation == .append {
                    list += items.filter { !list.contains($0) }
                } else {
                    list.removeAll { items.contains($0) }
                }
                configs[name] = list.joined(separator: ",")
            }
        }
    }

    static func items(_ text: String) -> [String] {
        text.split(separator: ",").map { String($0.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
            .filter { !$0.isEmpty }
    }
}
