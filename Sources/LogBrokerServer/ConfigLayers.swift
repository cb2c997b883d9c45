import ClusterControl
import KafkaProperties
import LogStorage

/// Kafka's layers of configuration, most specific first: a topic's dynamic overrides, this broker's dynamic
/// configs, the cluster-wide dynamic broker default, `server.properties`, and the built-in defaults. Topic settings
/// take their default from the broker setting of the same meaning (`LogConfig.brokerSynonyms`, e.g.
/// `retention.ms` from `log.retention.ms`, `.minutes`, `.hours`), so `LogConfig` is the one definition of what a
/// log obeys and the broker's `log.*` settings only feed it.
///
/// The dynamic broker settings are those that feed topic settings (Kafka's `DynamicLogConfig`); every other
/// broker setting is read-only until a restart.
///
/// A plain value; thread-safe.
public struct ConfigLayers: Sendable {
    /// Kafka's `ConfigSource` codes, as DescribeConfigs (v1+) reports them.
    public enum Source: Int8, Sendable {
        case dynamicTopic = 1
        case dynamicBroker = 2
        case dynamicDefaultBroker = 3
        case staticBroker = 4
        case defaultConfig = 5
    }

    /// One setting as DescribeConfigs reports it.
    public struct Entry: Hashable, Sendable {
        public var name: String
        public var value: String?
        public var source: Source
        public var readOnly: Bool
        public var sensitive: Bool
        public var type: SettingType
        /// Where the value could come from, most specific first (DescribeConfigs' synonyms).
        public var synonyms: [Synonym]
        public var documentation: String
    }

    public struct Synonym: Hashable, Sendable {
        public var name: String
        public var value: String?
        public var source: Source
    }

    /// Broker settings that can change without a restart: those that are topic defaults.
    public static let dynamicBrokerSettings: Set<String> = Set(LogConfig.brokerSynonyms.values.joined())
        .filter { BrokerConfiguration.table[$0] != nil }

    /// `server.properties` and the overrides, resolved.
    let staticSettings: Settings
    /// This broker's node id: the name of its BROKER config resource.
    public let nodeID: Int32
    /// The cluster-wide dynamic broker configs (the BROKER resource "").
    public var clusterDefaults: [String: String] = [:]
    /// This broker's dynamic configs (the BROKER resource named by its node id).
    public var nodeConfigs: [String: String] = [:]

    /// The layers of `configuration` with the dynamic BROKER resources of the image (`ClusterImage.brokerConfigs`).
    public init(configuration: BrokerConfiguration, brokerConfigs: [String: [String: String]] = [:]) {
        self.staticSettings = configuration.settings
        self.nodeID = configuration.nodeID
        self.clusterDefaults = brokerConfigs[""] ?? [:]
        self.nodeConfigs = brokerConfigs[String(configuration.nodeID)] ?? [:]
    }

    /// A config resource of DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.
    public enum Resource: Hashable, Sendable {
        case topic(String)
        /// "" (the cluster-wide default) or this broker's node id.
        case broker(String)

        /// Kafka's `ConfigResource.Type` codes.
        static let topicType: Int8 = 2
        static let brokerType: Int8 = 4

        /// The resource a request names.
        /// - Throws: `invalidRequest` for another broker's id or an unsupported resource type (BROKER_LOGGER,
        ///   CLIENT_METRICS, GROUP), `invalidTopic` for an illegal topic name.
        init(type: Int8, name: String, nodeID: Int32) throws(ClusterControlError) {
            switch type {
            case Self.topicType:
                try TopicName.validate(name)
                self = .topic(name)
            case Self.brokerType:
                guard name.isEmpty || name == String(nodeID) else {
                    throw .invalidRequest("broker \(name) is not this broker (\(nodeID))")
                }
                self = .broker(name)
            default:
                throw .invalidRequest("config resources of type \(type) are not supported")
            }
        }
    }

    /// The setting definition of `name` for a resource, nil for an unknown one.
    static func definition(of name: String, for resource: Resource) -> SettingDefinition? {
        switch resource {
        case .topic: LogConfig.table[name]
        case .broker: BrokerConfiguration.table[name]
        }
    }

    /// The value of `name` a resource has without its own dynamic value (what APPEND and SUBTRACT start from).
    func inheritedValue(of name: String, for resource: Resource) -> String? {
        switch resource {
        case .topic:
            if let (value, _) = self.brokerDefault(of: name) { return value }
        case .broker(let resourceName):
            if !resourceName.isEmpty, let value = self.clusterDefaults[name] { return value }
            if self.staticSettings.isExplicit(name) { return self.staticSettings[name].map(Self.text) ?? nil }
        }
        return Self.definition(of: name, for: resource)?.defaultValue.map(Self.text) ?? nil
    }

    /// Checks `configs` as the whole dynamic set of `resource`.
    /// - Throws: `invalidConfig` naming the key.
    static func validate(_ configs: [String: String], for resource: Resource) throws(ClusterControlError) {
        switch resource {
        case .topic: try Self.validateTopicConfigs(configs)
        case .broker: try Self.validateBrokerConfigs(configs)
        }
    }

    // MARK: Topics

    /// The config a log of a topic with `overrides` obeys.
    /// - Throws: `StorageError.invalidConfig` when the layers combine into a refused value.
    public func logConfig(overrides: [String: String]) throws(StorageError) -> LogConfig {
        var properties = Properties()
        for definition in LogConfig.table.definitions {
            if let (value, _) = self.brokerDefault(of: definition.name) { properties[definition.name] = value }
        }
        for (key, value) in overrides { properties[key] = value }
        return try LogConfig(properties)
    }

    /// Checks `overrides` as a topic's dynamic configs: known topic settings with valid values.
    /// - Throws: `invalidConfig` naming the key.
    public static func validateTopicConfigs(_ overrides: [String: String]) throws(ClusterControlError) {
        do {
            _ = try LogConfig(Properties(overrides.map { ($0.key, $0.value) }))
        } catch {
            throw .invalidConfig("\(error)")
        }
    }

    /// Every topic setting of a topic with `overrides`, with value, source and synonyms.
    public func describeTopic(overrides: [String: String]) -> [Entry] {
        LogConfig.table.definitions.sorted { $0.name < $1.name }.map { definition in
            let name = definition.name
            let brokerNames = LogConfig.brokerSynonyms[name] ?? []
            var synonyms: [Synonym] = []
            if let value = overrides[name] { synonyms.append(Synonym(name: name, value: value, source: .dynamicTopic)) }
            for (layer, source) in self.brokerLayers {
                for brokerName in brokerNames {
                    if let value = layer(brokerName) {
                        synonyms.append(Synonym(name: brokerName, value: value, source: source))
                    }
                }
            }
            let defaultName = brokerNames.first ?? name
            let defaultValue =
                (BrokerConfiguration.table[defaultName] ?? definition).defaultValue.map(Self.text) ?? nil
            synonyms.append(Synonym(name: defaultName, value: defaultValue, source: .defaultConfig))

            let (value, source): (String?, Source) =
                if let value = overrides[name] {
                    (value, .dynamicTopic)
                } else if let (value, source) = self.brokerDefault(of: name) {
                    (value, source)
                } else {
                    (definition.defaultValue.map(Self.text) ?? nil, .defaultConfig)
                }
            return Entry(
                name: name,
                value: value,
                source: source,
                readOnly: false,
                sensitive: definition.type == .password,
                type: definition.type,
                synonyms: synonyms,
                documentation: definition.documentation
            )
        }
    }

    /// The value a topic setting takes from the broker layers (converted to the topic setting's unit), with its
    /// source; nil when no layer sets any of its broker synonyms.
    func brokerDefault(of topicSetting: String) -> (String, Source)? {
        for (layer, source) in self.brokerLayers {
            for brokerName in LogConfig.brokerSynonyms[topicSetting] ?? [] {
                if let value = layer(brokerName) { return (Self.converted(value, from: brokerName), source) }
            }
        }
        return nil
    }

    /// The broker layers that hold explicit values, most specific first.
    private var brokerLayers: [((String) -> String?, Source)] {
        [
            ({ self.nodeConfigs[$0] }, .dynamicBroker),
            ({ self.clusterDefaults[$0] }, .dynamicDefaultBroker),
            ({ self.staticSettings.isExplicit($0) ? self.staticSettings[$0].map(Self.text) ?? nil : nil }, .staticBroker),
        ]
    }

    /// A broker value in the unit of the topic setting it feeds (hours and minutes become milliseconds; -1 stays).
    static func converted(_ value: String, from brokerSetting: String) -> String {
        let factor: Int64? =
            switch brokerSetting {
            case "log.roll.hours", "log.retention.hours": 3_600_000
            case "log.retention.minutes": 60_000
            default: nil
            }
        guard let factor, let number = Int64(value) else { return value }
        return number < 0 ? "-1" : String(number.multipliedReportingOverflow(by: factor).partialValue)
    }

    // MARK: Brokers

    /// Every broker setting of BROKER resource `resource` (this node's id, or "" for the cluster default, which
    /// lists only the cluster-wide dynamic values, as Kafka does).
    public func describeBroker(_ resource: String) -> [Entry] {
        BrokerConfiguration.table.definitions.sorted { $0.name < $1.name }.compactMap { definition in
            let name = definition.name
            var synonyms: [Synonym] = []
            for (layer, source) in self.brokerLayers {
                if let value = layer(name) { synonyms.append(Synonym(name: name, value: value, source: source)) }
            }
            if resource.isEmpty {
                guard let value = self.clusterDefaults[name] else { return nil }
                synonyms = [Synonym(name: name, value: value, source: .dynamicDefaultBroker)]
            }
            let defaultValue = definition.defaultValue.map(Self.text) ?? nil
            synonyms.append(Synonym(name: name, value: defaultValue, source: .defaultConfig))
            let chosen = synonyms[0]
            return Entry(
                name: name,
                value: definition.type == .password ? nil : chosen.value,
                source: chosen.source,
                readOnly: !Self.dynamicBrokerSettings.contains(name),
                sensitive: definition.type == .password,
                type: definition.type,
                synonyms: synonyms,
                documentation: definition.documentation
            )
        }
    }

    /// Checks `configs` as the dynamic set of a BROKER resource: dynamic settings with valid values.
    /// - Throws: `invalidConfig` naming the key.
    public static func validateBrokerConfigs(_ configs: [String: String]) throws(ClusterControlError) {
        for (key, value) in configs.sorted(by: { $0.key < $1.key }) {
            guard let definition = BrokerConfiguration.table[key] else {
                throw .invalidConfig("Unknown broker config \(key)")
            }
            guard Self.dynamicBrokerSettings.contains(key) else {
                throw .invalidConfig("Cannot update \(key) dynamically: it is read-only until a restart")
            }
            do {
                _ = try definition.parse(value)
            } catch {
                throw .invalidConfig("\(error)")
            }
        }
    }

    /// A value as Kafka's configs print it (lists comma-separated).
    static func text(_ value: SettingValue) -> String? {
        if case .password = value { return nil }
        return value.description
    }
}
