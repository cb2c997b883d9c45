import Foundation
import KafkaProperties
import LogBrokerServer
import LogStorage
import Replication
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
        #expect(configuration.processRoles == [.broker, .controller])
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

    @Test func theReplicaFetcherSettingsHaveKafkasNamesAndDefaults() throws {
        let defaults = try Self.resolve([("node.id", "4")]).0.replicaFetchers
        #expect(defaults.brokerID == 4 && defaults.fetchersPerLeader == 1)
        #expect(defaults.fetchMaxBytes == 1_048_576 && defaults.fetchResponseMaxBytes == 10_485_760)
        #expect(defaults.fetchWaitMaxMs == 500 && defaults.fetchMinBytes == 1)
        #expect(defaults.fetchBackoffMs == 1000 && defaults.socketTimeoutMs == 30_000)
        let (configuration, warnings) = try Self.resolve([
            ("node.id", "4"), ("num.replica.fetchers", "3"), ("replica.fetch.max.bytes", "65536"),
            ("replica.fetch.response.max.bytes", "131072"), ("replica.fetch.wait.max.ms", "100"),
            ("replica.fetch.min.bytes", "10"), ("replica.fetch.backoff.ms", "50"), ("replica.socket.timeout.ms", "2000"),
        ])
        #expect(warnings.isEmpty)
        let set = configuration.replicaFetchers
        #expect(set.fetchersPerLeader == 3 && set.fetchMaxBytes == 65536 && set.fetchResponseMaxBytes == 131_072)
        #expect(set.fetchWaitMaxMs == 100 && set.fetchMinBytes == 10 && set.fetchBackoffMs == 50)
        #expect(set.socketTimeoutMs == 2000)
        #expect(Self.error([("node.id", "4"), ("num.replica.fetchers", "0")])?.contains("num.replica.fetchers") == true)
        #expect(
            Self.error([("node.id", "4"), ("replica.socket.timeout.ms", "100")])?.contains("replica.fetch.wait.max.ms")
                == true
        )
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

    @Test func theLocalStoreRunsOnlyTheCombinedRoles() {
        #expect(
            Self.error([("node.id", "1"), ("process.roles", "broker")])?.contains(
                "a local metadata store cannot be shared by processes"
            ) == true
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
    @Test func connectionLimitsAndRequestMemoryAreSettingsNotIgnoredNames() throws {
        let (defaults, _) = try Self.resolve([("node.id", "1")])
        #expect(defaults.connections.maxConnections == Int(Int32.max))
        #expect(defaults.connections.maxConnectionsPerIP == Int(Int32.max))
        #expect(defaults.connections.idleTimeoutMs == 600_000)
        #expect(defaults.queuedMaxRequestBytes == -1)
        #expect(defaults.socketRequestReadTimeoutMs == 30_000)

        let (configuration, warnings) = try Self.resolve([
            ("node.id", "1"), ("listeners", "PLAINTEXT://:9092,INTERNAL://:9093"),
            ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT"),
            ("max.connections", "100"), ("listener.name.internal.max.connections", "7"),
            ("max.connections.per.ip", "0"), ("max.connections.per.ip.overrides", "127.0.0.2:5, [::1]:3,localhost:4"),
            ("connections.max.idle.ms", "-1"), ("queued.max.request.bytes", "209715200"),
            ("socket.request.read.timeout.ms", "2000"),
        ])
        #expect(warnings.isEmpty)
        #expect(configuration.connections.maxConnections == 100)
        #expect(configuration.connections.perListener == ["INTERNAL": 7])
        #expect(configuration.connections.limit(forIP: "127.0.0.2") == 5)
        #expect(configuration.connections.limit(forIP: "::1") == 3)
        #expect(configuration.connections.limit(forIP: "127.0.0.1") == 4)
        #expect(configuration.connections.limit(forIP: "10.0.0.1") == 0)
        #expect(configuration.connections.idleTimeoutMs == nil)
        #expect(configuration.queuedMaxRequestBytes == 209_715_200)
        #expect(configuration.socketRequestReadTimeoutMs == 2000)

        #expect(
            Self.error([("node.id", "1"), ("max.connections.per.ip", "0")])?.contains(
                "can be set to zero only if max.connections.per.ip.overrides is set"
            ) == true
        )
        #expect(
            Self.error([("node.id", "1"), ("max.connections.per.ip.overrides", "127.0.0.1")])?.contains(
                "127.0.0.1 is not host:count"
            ) == true
        )
        #expect(
            Self.error([("node.id", "1"), ("listener.name.other.max.connections", "3")])?.contains(
                "no listener is named other"
            ) == true
        )
    }

    @Test func theDescriptorLimitIsSplitBetweenLogsAndConnections() {
        let split = FileHandleBudget.split(processLimit: 1024, maxConnections: nil)
        #expect(split.logs == 448)
        #expect(split.connections == 448)
        #expect(split.reserved == 128)
        #expect(split.description == "descriptors: limit 1024, logs 448, connections 448, other 128")
        // A lower max.connections leaves the rest to the logs; a higher one is capped at half.
        #expect(FileHandleBudget.split(processLimit: 1024, maxConnections: 100).logs == 796)
        #expect(FileHandleBudget.split(processLimit: 1024, maxConnections: 5000).connections == 448)
        let large = FileHandleBudget.split(processLimit: 1_048_576, maxConnections: nil)
        #expect(large.logs + large.connections + large.reserved == 1_048_576)
        #expect(FileHandleBudget.split(processLimit: nil, maxConnections: nil).logs == 50_000)
    }
}
