import Foundation
import KafkaProperties
import LogBrokerServer
import LogStorage
import Testing

@Suite struct BrokerConfigurationTests {
    static func resolve(_ pairs: [(String, String)]) throws -> (BrokerConfiguration, [String]) {
        let result = try BrokerConfiguration.resolve(Properties(pairs))
        return (result.configuration, result.warnings)
    }

    static func error(_ pairs: [(String, String)]) -> String? {
        do {
            _ = try Self.resolve(pairs)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func kafkasDefaults() throws {
        let (configuration, warnings) = try Self.resolve([("node.id", "1")])
        #expect(warnings.isEmpty)
        #expect(
            configuration.listeners == [
                .init(name: "PLAINTEXT", host: "127.0.0.1", port: 9092, securityProtocol: "PLAINTEXT")
            ]
        )
        #expect(configuration.advertisedListeners == configuration.listeners)
        #expect(configuration.processRoles == ["broker", "controller"])
        #expect(configuration.logDirs == ["/tmp/kafka-logs"])
        #expect(configuration.numPartitions == 1)
        #expect(configuration.defaultReplicationFactor == 1)
        #expect(configuration.autoCreateTopicsEnable)
        #expect(configuration.socketRequestMaxBytes == 104_857_600)
        let topicDefaults = try ConfigLayers(configuration: configuration).logConfig(overrides: [:])
        #expect(topicDefaults.maxMessageBytes == 1_048_588)
        #expect(topicDefaults.segmentBytes == 1_073_741_824)
        #expect(topicDefaults.retentionMs == 168 * 3_600_000)
        #expect(topicDefaults.segmentMs == 168 * 3_600_000)
        #expect(topicDefaults.retentionBytes == -1)
        #expect(configuration.log.flushIntervalMessages == Int64.max)
        #expect(configuration.log.flushIntervalMs == Int64.max)
        #expect(configuration.log.offsetCheckpointIntervalMs == 60_000)
        #expect(configuration.log.startOffsetCheckpointIntervalMs == 60_000)
        #expect(configuration.maxIncrementalFetchSessionCacheSlots == 1000)
    }

    @Test func theShippedServerPropertiesIsAcceptedWithoutWarnings() throws {
        let text = try String(
            contentsOf: packageRoot.appendingPathComponent("config/server.properties"),
            encoding: .utf8
        )
        let result = try BrokerConfiguration.resolve(Properties(parsing: text))
        #expect(result.warnings == [])
        #expect(result.configuration.nodeID == 1)
        #expect(result.configuration.logDirs == ["data/logs"])
    }

    @Test func nodeIDIsRequiredAsInKRaft() {
        #expect(Self.error([]) == "Missing required configuration \"node.id\" which has no default value.")
        #expect(
            Self.error([("node.id", "-1")]) == "Invalid value -1 for configuration node.id: Value must be at least 0"
        )
    }

    @Test func aBadValueNamesTheKeyTheValueAndWhatIsAllowed() {
        #expect(
            Self.error([("node.id", "1"), ("num.partitions", "0")])
                == "Invalid value 0 for configuration num.partitions: Value must be at least 1"
        )
        #expect(
            Self.error([("node.id", "1"), ("log.segment.bytes", "big")])
                == "Invalid value big for configuration log.segment.bytes: Not a number of type INT"
        )
        #expect(
            Self.error([("node.id", "1"), ("auto.create.topics.enable", "yes")])
                == "Invalid value yes for configuration auto.create.topics.enable: Expected value to be either true or false"
        )
        #expect(
            Self.error([("node.id", "1"), ("log.cleanup.policy", "delete,shred")])
                == "Invalid value delete,shred for configuration log.cleanup.policy: String must be one of: compact, delete"
        )
    }

    @Test func anUnknownKeyStopsStartUpWithASuggestion() {
        #expect(
            Self.error([("node.id", "1"), ("log.retention.hour", "1")])
                == "Unknown configuration \"log.retention.hour\"; did you mean \"log.retention.hours\"?"
        )
        // Kafka keys LogBroker ignores are suggested too.
        #expect(
            Self.error([("node.id", "1"), ("num.network.thread", "3")])
                == "Unknown configuration \"num.network.thread\"; did you mean \"num.network.threads\"?"
        )
        #expect(
            Self.error([("node.id", "1"), ("completely.made.up", "1")])
                == "Unknown configuration \"completely.made.up\"."
        )
    }

    @Test func aKafkaKeyLogBrokerDoesNotImplementIsAWarning() throws {
        let (_, warnings) = try Self.resolve([
            ("node.id", "1"), ("num.network.threads", "3"), ("listener.name.plaintext.foo", "x"),
            ("controller.quorum.voters", "1@localhost:9093"),
        ])
        #expect(warnings.count == 3)
        #expect(
            warnings.first
                == "num.network.threads is an Apache Kafka broker setting that LogBroker does not implement; ignored."
        )
    }

    @Test func retentionAndRollTakeKafkasPrecedence() throws {
        func topicDefaults(_ pairs: [(String, String)]) throws -> LogConfig {
            try ConfigLayers(configuration: Self.resolve([("node.id", "1")] + pairs).0).logConfig(overrides: [:])
        }
        let hours = try topicDefaults([("log.retention.hours", "2"), ("log.roll.hours", "1")])
        #expect(hours.retentionMs == 7_200_000)
        #expect(hours.segmentMs == 3_600_000)
        #expect(try topicDefaults([("log.retention.hours", "2"), ("log.retention.minutes", "3")]).retentionMs == 180_000)
        let ms = try topicDefaults([
            ("log.retention.minutes", "3"), ("log.retention.ms", "5"), ("log.roll.ms", "7"), ("log.roll.hours", "1"),
        ])
        #expect(ms.retentionMs == 5)
        #expect(ms.segmentMs == 7)
        #expect(try topicDefaults([("log.retention.hours", "-1")]).retentionMs == -1)
    }

    @Test func compressionTypeAcceptsOnlyProducer() throws {
        #expect(throws: LogBrokerServerError.self) { try Self.resolve([("node.id", "1"), ("compression.type", "gzip")]) }
        _ = try Self.resolve([("node.id", "1"), ("compression.type", "producer")])
    }

    @Test func listeners() throws {
        let configuration = try Self.resolve([
            ("node.id", "1"), ("listeners", "PLAINTEXT://:9092, INTERNAL://[::1]:0"),
            ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT"),
            ("advertised.listeners", "PLAINTEXT://broker.example:9092"),
        ]).0
        #expect(configuration.listeners.map(\.description) == ["PLAINTEXT://:9092", "INTERNAL://[::1]:0"])
        #expect(configuration.advertisedListeners.map(\.host) == ["broker.example"])
        #expect(configuration.logDirs == ["/tmp/kafka-logs"])

        #expect(
            Self.error([("node.id", "1"), ("listeners", "localhost:9092")])?.contains(
                "is not of the form NAME://host:port"
            ) == true
        )
        #expect(
            Self.error([("node.id", "1"), ("listeners", "PLAINTEXT://h:99999")])?.contains("no valid port") == true
        )
        #expect(
            Self.error([("node.id", "1"), ("listeners", "FOO://h:1")])?.contains(
                "FOO is not in listener.security.protocol.map"
            ) == true
        )
        #expect(Self.error([("node.id", "1"), ("listeners", "SSL://h:1")])?.contains("serves only PLAINTEXT") == true)
        #expect(
            Self.error([("node.id", "1"), ("listeners", "PLAINTEXT://h:1,PLAINTEXT://h:2")])?.contains("appears twice")
                == true
        )
    }

    @Test func onlyTheCombinedRolesAreSupportedSoFar() {
        #expect(
            Self.error([("node.id", "1"), ("process.roles", "broker")])?.contains("only broker,controller") == true
        )
        #expect(
            Self.error([("node.id", "1"), ("process.roles", "broker,zookeeper")])
                == "Invalid value broker,zookeeper for configuration process.roles: String must be one of: broker, controller"
        )
    }

    @Test func logDirsOverLogDir() throws {
        let configuration = try Self.resolve([("node.id", "1"), ("log.dir", "/a"), ("log.dirs", "/b, /c")]).0
        #expect(configuration.logDirs == ["/b", "/c"])
    }

    @Test func overridesApplyOnTopOfTheFileAndErrorsSayWhere() throws {
        let file = Properties([("node.id", "1"), ("num.partitions", "2")])
        let (merged, source) = try BrokerConfiguration.merge(
            file: file,
            fileName: "server.properties",
            overrides: ["num.partitions=3", "log.dirs=/x=y"]
        )
        #expect(merged["num.partitions"] == "3")
        #expect(merged["log.dirs"] == "/x=y")
        #expect(source("num.partitions") == "--override")
        #expect(source("node.id") == "server.properties")
        #expect(throws: LogBrokerServerError.invalidOverride("novalue")) {
            try BrokerConfiguration.merge(file: file, fileName: "f", overrides: ["novalue"])
        }
        let (bad, badSource) = try BrokerConfiguration.merge(
            file: Properties([("node.id", "x")]),
            fileName: "f.properties",
            overrides: []
        )
        do {
            _ = try BrokerConfiguration.resolve(bad, source: badSource)
            Issue.record("node.id=x was accepted")
        } catch {
            #expect("\(error)" == "f.properties: Invalid value x for configuration node.id: Not a number of type INT")
        }
    }
}
