import ClusterControl
import Foundation
import KafkaMessages
import KafkaNIO
import KafkaWire
import LogBrokerServer
import NIOCore
import Testing

/// Metadata over a real socket against a whole in-process broker (`Broker`) whose controller keeps its image in a
/// local store.
@Suite struct MetadataTests {
    /// Runs a broker over the log directory `logDirectory` (its controller's store inside), for `body`.
    static func withMetadataServer<Result: Sendable>(
        logDirectory: String,
        extra: [(String, String)] = [],
        _ body: @Sendable (Int, Controller) async throws -> Result
    ) async throws -> Result {
        try await withInProcessBroker(extra, logDirectory: logDirectory) { broker in
            try await body(try #require(broker.localAddresses.first?.port), broker.controller)
        }
    }

    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("metadata-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func everyVersionAnswersWithTheBrokerAndAnAutoCreatedTopic() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.withMetadataServer(logDirectory: directory + "/logs", extra: [("num.partitions", "2")]) {
            port,
            controller in
            let clusterID = try await controller.image().clusterID
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                for version in Int16(0)...12 {
                    let name = "auto-\(version)"
                    let request = MetadataRequest(topics: [.init(name: name)])
                    let response = try await connection.send(request, version: version)
                    #expect(response.brokers == [.init(nodeID: 1, host: "127.0.0.1", port: Int32(port))])
                    if version >= 1 { #expect(response.controllerID == 1) }
                    if version >= 2 { #expect(response.clusterID == clusterID) }
                    let topic = try #require(response.topics.first)
                    #expect(response.topics.count == 1)
                    #expect(topic.errorCode == 0 && topic.name == name, "v\(version)")
                    #expect(topic.partitions.map(\.partitionIndex) == [0, 1])
                    #expect(
                        topic.partitions.allSatisfy { $0.leaderID == 1 && $0.replicaNodes == [1] && $0.isrNodes == [1] }
                    )
                    if version >= 7 { #expect(topic.partitions.allSatisfy { $0.leaderEpoch == 0 }) }
                    if version >= 10 {
                        #expect(topic.topicID != .zero)
                        #expect(try await controller.image().topics[name]?.id == topic.topicID)
                    }
                    // Asked again, the same topic comes back.
                    let again = try await connection.send(request, version: version)
                    #expect(again.topics == response.topics)
                }
            }
        }
    }

    @Test func topicSelectionAndRefusals() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.withMetadataServer(logDirectory: directory + "/logs") { port, controller in
            _ = try await controller.createTopic("a", partitions: 1, replicationFactor: 1)
            _ = try await controller.createTopic("b", partitions: 1, replicationFactor: 1)
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                // null: all topics; an empty list: none (v1+); an empty list at v0: all.
                #expect(
                    try await connection.send(MetadataRequest(topics: nil), version: 12).topics.map(\.name) == [
                        "a", "b",
                    ]
                )
                #expect(try await connection.send(MetadataRequest(topics: []), version: 12).topics.isEmpty)
                #expect(
                    try await connection.send(MetadataRequest(topics: []), version: 0).topics.map(\.name) == ["a", "b"]
                )
                // v4+ honours the request's flag.
                let refused = try await connection.send(
                    MetadataRequest(topics: [.init(name: "c")], allowAutoTopicCreation: false),
                    version: 4
                )
                #expect(refused.topics.map(\.errorCode) == [ErrorCode.unknownTopicOrPartition.rawValue])
                let invalid = try await connection.send(MetadataRequest(topics: [.init(name: "no good")]), version: 9)
                #expect(invalid.topics.map(\.errorCode) == [ErrorCode.invalidTopicException.rawValue])
                let byID = try await connection.send(
                    MetadataRequest(topics: [
                        .init(topicID: KafkaUUID(mostSignificantBits: 9, leastSignificantBits: 9), name: nil)
                    ]),
                    version: 12
                )
                #expect(byID.topics.map(\.errorCode) == [ErrorCode.unknownTopicID.rawValue])
            }
            #expect(try await controller.image().topics["c"] == nil)
        }
    }

    @Test func autoCreationOffOrATooLargeReplicationFactorIsRefused() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.withMetadataServer(
            logDirectory: directory + "/one",
            extra: [("auto.create.topics.enable", "false")]
        ) {
            port,
            _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let response = try await connection.send(MetadataRequest(topics: [.init(name: "x")]), version: 1)
                #expect(response.topics.map(\.errorCode) == [ErrorCode.unknownTopicOrPartition.rawValue])
            }
        }
        try await Self.withMetadataServer(
            logDirectory: directory + "/two",
            extra: [("default.replication.factor", "3")]
        ) {
            port,
            _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let response = try await connection.send(MetadataRequest(topics: [.init(name: "x")]), version: 12)
                #expect(response.topics.map(\.errorCode) == [ErrorCode.invalidReplicationFactor.rawValue])
            }
        }
    }

    @Test func aRestartKeepsTopicIdsAndGrowsLeaderEpochs() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/logs"
        var previous: MetadataResponse.MetadataResponseTopic?
        for round in 0..<3 {
            let topic = try await Self.withMetadataServer(logDirectory: path) { port, _ in
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                    let response = try await connection.send(
                        MetadataRequest(topics: [.init(name: "kept")]),
                        version: 12
                    )
                    return try #require(response.topics.first)
                }
            }
            #expect(topic.partitions.first?.leaderEpoch == Int32(round))
            if let previous {
                #expect(topic.topicID == previous.topicID)
                #expect(topic.partitions.first!.leaderEpoch > previous.partitions.first!.leaderEpoch)
            }
            previous = topic
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func kcatListsTheBrokerAndAnAutoCreatedTopic() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.withMetadataServer(logDirectory: directory + "/logs", extra: [("num.partitions", "3")]) {
            port,
            _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                _ = try await connection.send(MetadataRequest(topics: [.init(name: "kcat-topic")]), version: 4)
            }
            // A generous metadata timeout: this broker shares the test process's 2-thread cooperative pool with
            // every other suite running in parallel (it once took over 5 s under the full suite in CI).
            let kcat = try await ExternalClientTests.run(["kcat", "-b", "127.0.0.1:\(port)", "-L", "-m", "30"])
            #expect(kcat.status == 0, "\(kcat.output)")
            #expect(kcat.output.contains("broker 1 at 127.0.0.1:\(port)"), "\(kcat.output)")
            #expect(kcat.output.contains("topic \"kcat-topic\" with 3 partitions"), "\(kcat.output)")
            #expect(kcat.output.contains("partition 2, leader 1, replicas: 1, isrs: 1"), "\(kcat.output)")
        }
    }
}
