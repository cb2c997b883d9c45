import Foundation
import KafkaMessages
import KafkaNIO
import KafkaWire
import Testing

/// Topic and config administration against the real `logbroker-server`, at the wire level: what Kafka's clients
/// read from the answers (error codes, ids, sources) and what the broker leaves on disk. The Python tests
/// (`Tests/EndToEnd/test_admin_*.py`) drive the same APIs with kafka-python and confluent-kafka.
@Suite(.timeLimit(.minutes(3))) struct AdminAPIsTests {
    static func createTopic(
        _ name: String,
        partitions: Int32 = 1,
        configs: [String: String] = [:]
    ) -> CreateTopicsRequest.CreatableTopic {
        .init(
            name: name,
            numPartitions: partitions,
            replicationFactor: 1,
            configs: configs.map { .init(name: $0.key, value: $0.value) }
        )
    }

    @Test func createTopicsAnswersAtEveryVersionWithKafkasCodes() async throws {
        try await BrokerProcess.withBroker { broker in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                for version in Int16(0)...7 {
                    let name = "created-v\(version)"
                    let response = try await connection.send(
                        CreateTopicsRequest(
                            topics: [Self.createTopic(name, partitions: 2, configs: ["retention.ms": "1000"])],
                            timeoutMs: 5000
                        ),
                        version: version
                    )
                    let result = try #require(response.topics.first)
                    #expect(result.name == name && result.errorCode == 0, "v\(version): \(result)")
                    if version >= 5 {
                        #expect(result.numPartitions == 2 && result.replicationFactor == 1)
                        let retention = result.configs?.first { $0.name == "retention.ms" }
                        #expect(retention?.value == "1000" && retention?.configSource == 1, "v\(version)")
                    }
                    if version >= 7 { #expect(result.topicID != .zero) }
                }
                let refusals: [(CreateTopicsRequest.CreatableTopic, Int16)] = [
                    (Self.createTopic("created-v7"), 36),  // TOPIC_ALREADY_EXISTS
                    (Self.createTopic("bad name"), 17),
                    (Self.createTopic("p", partitions: 0), 37),
                    (.init(name: "rf", numPartitions: 1, replicationFactor: 2), 38),
                    (.init(name: "assigned", numPartitions: -1, replicationFactor: -1, assignments: [
                        .init(partitionIndex: 0, brokerIDs: [7])
                    ]), 39),
                    (Self.createTopic("cfg", configs: ["compression.type": "gzip"]), 40),
                    (Self.createTopic("cfg", configs: ["no.such.config": "1"]), 40),
                ]
                for (topic, code) in refusals {
                    let response = try await connection.send(CreateTopicsRequest(topics: [topic]), version: 7)
                    let result = try #require(response.topics.first)
                    #expect(result.errorCode == code, "\(topic.name): \(result)")
                    #expect(result.errorMessage?.isEmpty == false)
                }
                // '.' and '_' alike: a.b exists, so a_b is refused; the same name twice in one request is refused.
                _ = try await connection.send(CreateTopicsRequest(topics: [Self.createTopic("a.b")]), version: 7)
                let collision = try await connection.send(CreateTopicsRequest(topics: [Self.createTopic("a_b")]), version: 7)
                #expect(collision.topics.first?.errorCode == 17)
                #expect(collision.topics.first?.errorMessage?.contains("a.b") == true)
                let twice = try await connection.send(
                    CreateTopicsRequest(topics: [Self.createTopic("twice"), Self.createTopic("twice")]),
                    version: 7
                )
                #expect(twice.topics.map(\.errorCode) == [42, 42])
                // Validate-only checks and creates nothing.
                let dry = try await connection.send(
                    CreateTopicsRequest(topics: [Self.createTopic("dry")], validateOnly: true),
                    version: 7
                )
                #expect(dry.topics.first?.errorCode == 0)
                let metadata = try await connection.send(MetadataRequest(topics: nil), version: 12)
                #expect(!metadata.topics.contains { $0.name == "dry" || $0.name == "twice" || $0.name == "cfg" })
                #expect(metadata.topics.contains { $0.name == "created-v0" && $0.topicID != .zero })
            }
        }
    }

    @Test func deletedTopicsGoFromTheImageAtOnceAndFromDiskInTheBackground() async throws {
        // Without the default 60 s of log.segment.delete.delay.ms the renamed directories go at once.
        try await BrokerProcess.withBroker([("log.segment.delete.delay.ms", "0")]) { broker in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                let created = try await connection.send(
                    CreateTopicsRequest(topics: [Self.createTopic("gone", partitions: 2)]),
                    version: 7
                )
                let id = try #require(created.topics.first?.topicID)
                let metadataFile = broker.logDirectory.appendingPathComponent("gone-0/partition.metadata")
                let text = try String(contentsOf: metadataFile, encoding: .utf8)
                #expect(text == "version: 0\ntopic_id: \(id)\n")

                let deleted = try await connection.send(DeleteTopicsRequest(topicNames: ["gone", "never"]), version: 5)
                #expect(deleted.responses.map(\.errorCode) == [0, 3])
                // Created again at once with another count: a new id, new empty directories.
                let again = try await connection.send(
                    CreateTopicsRequest(topics: [Self.createTopic("gone", partitions: 3)]),
                    version: 7
                )
                let newID = try #require(again.topics.first?.topicID)
                #expect(again.topics.first?.errorCode == 0 && newID != id)
                #expect(try String(contentsOf: metadataFile, encoding: .utf8).contains("\(newID)"))
                // By id (v6); an unknown id answers UNKNOWN_TOPIC_ID.
                let byID = try await connection.send(
                    DeleteTopicsRequest(topics: [.init(topicID: newID), .init(topicID: id)]),
                    version: 6
                )
                #expect(byID.responses.map(\.errorCode) == [0, 100])
                #expect(byID.responses.first?.name == "gone")
            }
            // Every renamed directory disappears.
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                let names = try FileManager.default.contentsOfDirectory(atPath: broker.logDirectory.path)
                if !names.contains(where: { $0.hasPrefix("gone-") }) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            let names = try FileManager.default.contentsOfDirectory(atPath: broker.logDirectory.path)
            #expect(!names.contains { $0.hasPrefix("gone-") }, "\(names)")
        }
    }

    @Test func describeConfigsReportsSourcesAtEveryVersion() async throws {
        try await BrokerProcess.withBroker([("log.retention.hours", "5")]) { broker in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                _ = try await connection.send(
                    CreateTopicsRequest(topics: [Self.createTopic("described", configs: ["segment.bytes": "100000"])]),
                    version: 7
                )
                for version in Int16(0)...4 {
                    let response = try await connection.send(
                        DescribeConfigsRequest(
                            resources: [
                                .init(resourceType: 2, resourceName: "described", configurationKeys: nil),
                                .init(resourceType: 4, resourceName: "1", configurationKeys: ["num.partitions"]),
                                .init(resourceType: 2, resourceName: "missing", configurationKeys: nil),
                            ],
                            includeSynonyms: true,
                            includeDocumentation: true
                        ),
                        version: version
                    )
                    #expect(response.results.map(\.errorCode) == [0, 0, 3], "v\(version)")
                    let topic = response.results[0].configs
                    let segment = try #require(topic.first { $0.name == "segment.bytes" })
                    let retention = try #require(topic.first { $0.name == "retention.ms" })
                    #expect(segment.value == "100000" && retention.value == "18000000")
                    if version == 0 {
                        #expect(!segment.isDefault && !retention.isDefault)
                    } else {
                        #expect(segment.configSource == 1 && retention.configSource == 4, "v\(version)")
                        #expect(retention.synonyms.first?.name == "log.retention.hours")
                    }
                    if version >= 3 {
                        #expect(segment.configType == 3 && retention.configType == 5)
                        #expect(segment.documentation != nil)
                    }
                    let broker = response.results[1].configs
                    #expect(broker.map(\.name) == ["num.partitions"] && broker.first?.readOnly == true)
                }
            }
        }
    }

    @Test func clusterLogDirsElectionsAndDeleteRecords() async throws {
        try await BrokerProcess.withBroker { broker in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                _ = try await connection.send(CreateTopicsRequest(topics: [Self.createTopic("t", partitions: 2)]), version: 7)
                let cluster = try await connection.send(DescribeClusterRequest(), version: 1)
                #expect(cluster.errorCode == 0 && cluster.controllerID == 1 && !cluster.clusterID.isEmpty)
                #expect(cluster.brokers.map(\.brokerID) == [1] && cluster.brokers.first?.port == Int32(broker.port))
                let controllers = try await connection.send(DescribeClusterRequest(endpointType: 2), version: 1)
                #expect(controllers.errorCode == 114)

                let elected = try await connection.send(
                    ElectLeadersRequest(electionType: 0, topicPartitions: [.init(topic: "t", partitions: [0, 5])]),
                    version: 2
                )
                #expect(elected.replicaElectionResults.first?.partitionResult.map(\.errorCode) == [84, 3])
                let all = try await connection.send(ElectLeadersRequest(topicPartitions: nil), version: 2)
                #expect(all.replicaElectionResults.allSatisfy { $0.partitionResult.isEmpty })

                let dirs = try await connection.send(DescribeLogDirsRequest(topics: nil), version: 4)
                let dir = try #require(dirs.results.first)
                #expect(dir.logDir == broker.logDirectory.path && dir.totalBytes > 0 && dir.usableBytes > 0)
                #expect(dir.topics.first { $0.name == "t" }?.partitions.map(\.partitionIndex) == [0, 1])

                let outOfRange = try await connection.send(
                    DeleteRecordsRequest(topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, offset: 5)])]),
                    version: 2
                )
                #expect(outOfRange.topics.first?.partitions.first?.errorCode == 1)
                let toEnd = try await connection.send(
                    DeleteRecordsRequest(topics: [.init(name: "t", partitions: [.init(partitionIndex: 1, offset: -1)])]),
                    version: 2
                )
                #expect(toEnd.topics.first?.partitions.first?.errorCode == 0)
                #expect(toEnd.topics.first?.partitions.first?.lowWatermark == 0)
            }
        }
    }

    @Test func topicsIdsAndConfigsSurviveARestart() async throws {
        try await BrokerProcess.withBroker { broker in
            let before = try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                _ = try await connection.send(
                    CreateTopicsRequest(topics: [Self.createTopic("kept", partitions: 3, configs: ["retention.ms": "123456"])]),
                    version: 7
                )
                _ = try await connection.send(
                    IncrementalAlterConfigsRequest(resources: [
                        .init(resourceType: 2, resourceName: "kept", configs: [
                            .init(name: "leader.replication.throttled.replicas", configOperation: 2, value: "0:1,1:1")
                        ]),
                        .init(resourceType: 4, resourceName: "", configs: [
                            .init(name: "log.retention.bytes", configOperation: 0, value: "1000000")
                        ]),
                    ]),
                    version: 1
                )
                return try await connection.send(MetadataRequest(topics: [.init(name: "kept")]), version: 12)
            }
            let stop = try await broker.terminate()
            #expect(stop.status == 0)
            try await broker.start()
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                let after = try await connection.send(MetadataRequest(topics: [.init(name: "kept")]), version: 12)
                #expect(after.topics.first?.topicID == before.topics.first?.topicID)
                #expect(after.topics.first?.partitions.count == 3)
                let configs = try await connection.send(
                    DescribeConfigsRequest(resources: [.init(resourceType: 2, resourceName: "kept", configurationKeys: nil)]),
                    version: 4
                )
                let values = Dictionary(uniqueKeysWithValues: configs.results[0].configs.map { ($0.name, $0) })
                #expect(values["retention.ms"]?.value == "123456")
                #expect(values["leader.replication.throttled.replicas"]?.value == "0:1,1:1")
                #expect(values["retention.bytes"]?.value == "1000000" && values["retention.bytes"]?.configSource == 3)
            }
        }
    }
}
