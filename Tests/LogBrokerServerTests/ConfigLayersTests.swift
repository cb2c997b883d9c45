import ClusterControl
import KafkaProperties
import KafkaWire
import LogBrokerServer
import LogStorage
import Testing

/// Where a topic's and a broker's settings come from, as DescribeConfigs reports them and the logs obey them.
@Suite struct ConfigLayersTests {
    static func entry(_ entries: [ConfigLayers.Entry], _ name: String) throws -> ConfigLayers.Entry {
        try #require(entries.first { $0.name == name }, "\(name) is described")
    }

    @Test func aTopicSettingComesFromTheMostSpecificLayer() throws {
        let configuration = try testConfiguration([("log.retention.hours", "2"), ("log.segment.bytes", "1000")])
        var layers = ConfigLayers(configuration: configuration)
        var topic = layers.describeTopic(overrides: ["segment.bytes": "500"])
        #expect(try Self.entry(topic, "segment.bytes").value == "500")
        #expect(try Self.entry(topic, "segment.bytes").source == .dynamicTopic)
        // log.retention.hours=2 is static and in hours: the topic's retention.ms is 2 hours in milliseconds.
        #expect(try Self.entry(topic, "retention.ms").value == "7200000")
        #expect(try Self.entry(topic, "retention.ms").source == .staticBroker)
        #expect(try Self.entry(topic, "max.message.bytes").source == .defaultConfig)
        #expect(try Self.entry(topic, "compression.type").value == "producer")

        layers.clusterDefaults = ["log.retention.ms": "60000"]
        layers.nodeConfigs = ["log.segment.bytes": "2000"]
        topic = layers.describeTopic(overrides: [:])
        #expect(try Self.entry(topic, "retention.ms").value == "60000")
        #expect(try Self.entry(topic, "retention.ms").source == .dynamicDefaultBroker)
        #expect(try Self.entry(topic, "segment.bytes").source == .dynamicBroker)
        #expect(
            try Self.entry(topic, "retention.ms").synonyms.map(\.name) == [
                "log.retention.ms", "log.retention.hours", "log.retention.ms",
            ]
        )
        #expect(try Self.entry(topic, "retention.ms").synonyms.map(\.source) == [
            .dynamicDefaultBroker, .staticBroker, .defaultConfig,
        ])
        let config = try layers.logConfig(overrides: ["retention.bytes": "77"])
        #expect(config.retentionMs == 60_000 && config.segmentBytes == 2000 && config.retentionBytes == 77)
    }

    @Test func brokerSettingsAreReadOnlyUnlessTheyFeedTopics() throws {
        let layers = ConfigLayers(
            configuration: try testConfiguration([("num.partitions", "3")]),
            brokerConfigs: ["1": ["message.max.bytes": "5000"], "": ["log.retention.ms": "9"]]
        )
        let broker = layers.describeBroker("1")
        #expect(try Self.entry(broker, "num.partitions").readOnly)
        #expect(try Self.entry(broker, "num.partitions").source == .staticBroker)
        #expect(try !Self.entry(broker, "message.max.bytes").readOnly)
        #expect(try Self.entry(broker, "message.max.bytes").value == "5000")
        #expect(try Self.entry(broker, "message.max.bytes").source == .dynamicBroker)
        #expect(try Self.entry(broker, "log.retention.ms").source == .dynamicDefaultBroker)
        #expect(try Self.entry(broker, "socket.request.max.bytes").source == .defaultConfig)
        // The cluster default resource lists only its own dynamic values.
        #expect(layers.describeBroker("").map(\.name) == ["log.retention.ms"])
    }

    @Test func refusedValuesNameTheKey() throws {
        for bad in [["retention.ms": "soon"], ["compression.type": "gzip"], ["no.such.key": "1"], ["segment.bytes": "1"]] {
            #expect {
                try ConfigLayers.validateTopicConfigs(bad)
            } throws: { error in
                let error = error as? ClusterControlError
                return error?.kafkaErrorCode == .invalidConfig && "\(error!)".contains(bad.keys.first!)
            }
        }
        try ConfigLayers.validateTopicConfigs(["cleanup.policy": "compact,delete", "retention.ms": "-1"])
        #expect(throws: ClusterControlError.self) { try ConfigLayers.validateBrokerConfigs(["num.partitions": "2"]) }
        try ConfigLayers.validateBrokerConfigs(["log.retention.ms": "1000", "message.max.bytes": "10"])
    }
}
