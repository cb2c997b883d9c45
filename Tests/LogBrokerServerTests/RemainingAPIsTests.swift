import Foundation
import KafkaMessages
import KafkaNIO
import KafkaProperties
import KafkaRecords
import KafkaWire
import LogBrokerServer
import LogStorage
import Logging
import NIOCore
import Replication
import Testing

/// OffsetForLeaderEpoch, the SASL APIs on a PLAINTEXT listener, FindCoordinator's refusals and Produce's record
/// errors, on real sockets against the broker's data path as `logbroker-server` assembles it (`BrokerStorage` from
/// a broker configuration over a temporary log directory).
@Suite struct RemainingAPIsTests {
    static let topic = "epochs"

    /// Runs `body` with a server over `BrokerStorage` built from `properties` (plus a temporary `log.dirs`), serving
    /// the data path, FindCoordinator and the SASL refusals as the daemon does.
    static func withBroker<Result: Sendable>(
        _ properties: [(String, String)] = [],
        _ body: @Sendable (Int, BrokerStorage) async throws -> Result
    ) async throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("remaining-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = try testConfiguration([("log.dirs", directory)] + properties)
        let storage = try BrokerStorage(configuration: configuration, logger: Logger(label: "test"))
        defer {
            try? storage.logManager.shutdown()
            storage.ioPool.shutdown()
        }
        var handlers = HandlerTable()
        handlers.register(FindCoordinatorHandler())
        handlers.register(SaslHandshakeHandler())
        handlers.register(SaslAuthenticateHandler())
        storage.register(in: &handlers)
        return try await withServer(handlers: handlers, configuration: configuration) { port in
            try await body(port, storage)
        }
    }

    static func batch(_ count: Int, timestamps: [Int64]? = nil) throws -> ByteBuffer {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var builder = RecordBatchBuilder(codec: .none)
        for index in 0..<count {
            builder.append(
                timestamp: timestamps?[index] ?? now,
                key: nil,
                value: ByteBuffer(string: "record-\(index)")
            )
        }
        return try builder.build().buffer
    }

    static func produce(_ records: ByteBuffer, topic: String = Self.topic) -> ProduceRequest {
        ProduceRequest(
            acks: -1,
            timeoutMs: 30_000,
            topicData: [.init(name: topic, partitionData: [.init(index: 0, records: records)])]
        )
    }

    static func epochRequest(
        _ leaderEpoch: Int32,
        currentLeaderEpoch: Int32 = -1,
        replicaID: Int32 = -1,
        topic: String = Self.topic
    ) -> OffsetForLeaderEpochRequest {
        OffsetForLeaderEpochRequest(
            replicaID: replicaID,
            topics: [
                .init(
                    topic: topic,
                    partitions: [.init(partition: 0, currentLeaderEpoch: currentLeaderEpoch, leaderEpoch: leaderEpoch)]
                )
            ]
        )
    }

    // MARK: OffsetForLeaderEpoch

    @Test func offsetForLeaderEpochFollowsTheEpochCacheAsKafkaDoes() async throws {
        try await Self.withBroker { port, storage in
            let replicas = storage.replicas
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                // Epoch 3: offsets 0-4; epoch 5 (a leader change): offsets 5-7; the log end is 8.
                try await replicas.becomeLeader(topic: Self.topic, partition: 0, topicID: .zero, leaderEpoch: 3)
                let first = try await connection.send(Self.produce(try Self.batch(5)), version: 9)
                #expect(first.responses.first?.partitionResponses.first?.errorCode == 0)
                try await replicas.becomeLeader(topic: Self.topic, partition: 0, topicID: .zero, leaderEpoch: 5)
                let second = try await connection.send(Self.produce(try Self.batch(3)), version: 9)
                #expect(second.responses.first?.partitionResponses.first?.baseOffset == 5)

                let expectations: [(requested: Int32, epoch: Int32, endOffset: Int64)] = [
                    (3, 3, 5),  // an older epoch ends where the next one starts
                    (4, 3, 5),  // never led: the largest epoch below it (KIP-279)
                    (5, 5, 8),  // the current epoch ends at the log end
                    (6, -1, -1),  // above every epoch: undefined
                    (1, 1, 0),  // below every epoch: Kafka answers the requested epoch and the first start offset
                ]
                for version in Int16(2)...4 {
                    for expected in expectations {
                        let request = Self.epochRequest(expected.requested)
                        let response = try await connection.send(request, version: version)
                        let partition = try #require(response.topics.first?.partitions.first)
                        #expect(response.topics.first?.topic == Self.topic)
                        #expect(partition.errorCode == 0, "v\(version) epoch \(expected.requested)")
                        #expect(partition.partition == 0)
                        #expect(
                            partition.leaderEpoch == expected.epoch && partition.endOffset == expected.endOffset,
                            "v\(version) epoch \(expected.requested): \(partition)"
                        )
                    }
                }
                // A follower (replica id 1, v3+) gets the same answer as a consumer (-1).
                let follower = try await connection.send(Self.epochRequest(3, replicaID: 1), version: 4)
                #expect(follower.topics.first?.partitions.first?.endOffset == 5)
                // The current leader epoch is checked like a fetch's.
                let checks: [(current: Int32, error: Int16)] = [(5, 0), (-1, 0), (4, 74), (6, 75)]
                for check in checks {
                    let response = try await connection.send(
                        Self.epochRequest(5, currentLeaderEpoch: check.current),
                        version: 3
                    )
                    let partition = try #require(response.topics.first?.partitions.first)
                    #expect(partition.errorCode == check.error, "current leader epoch \(check.current)")
                    if check.error != 0 { #expect(partition.leaderEpoch == -1 && partition.endOffset == -1) }
                }
                let unknown = try await connection.send(Self.epochRequest(5, topic: "nowhere"), version: 4)
                #expect(unknown.topics.first?.partitions.first?.errorCode == 3)
                #expect(unknown.topics.first?.partitions.first?.endOffset == -1)
            }
        }
    }

    @Test func aNewLeaderAnswersForItsEpochBeforeItAppends() async throws {
        try await Self.withBroker { port, storage in
            let replicas = storage.replicas
            try await replicas.becomeLeader(topic: Self.topic, partition: 0, topicID: .zero, leaderEpoch: 7)
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                // Kafka's new leader records its epoch at the log end when it is elected, not at its first append.
                let expectations: [(requested: Int32, epoch: Int32, endOffset: Int64)] = [
                    (7, 7, 0), (3, 3, 0), (8, -1, -1),
                ]
                for expected in expectations {
                    let response = try await connection.send(Self.epochRequest(expected.requested), version: 4)
                    let partition = try #require(response.topics.first?.partitions.first)
                    #expect(partition.errorCode == 0)
                    #expect(
                        partition.leaderEpoch == expected.epoch && partition.endOffset == expected.endOffset,
                        "empty log, epoch \(expected.requested): \(partition)"
                    )
                }
                // Records at epoch 7, then a re-election at 9 with nothing appended since: 7 ends where 9 begins.
                _ = try await connection.send(Self.produce(try Self.batch(4)), version: 9)
                try await replicas.becomeLeader(topic: Self.topic, partition: 0, topicID: .zero, leaderEpoch: 9)
                let after: [(requested: Int32, epoch: Int32, endOffset: Int64)] = [
                    (7, 7, 4), (8, 7, 4), (9, 9, 4), (10, -1, -1),
                ]
                for expected in after {
                    let response = try await connection.send(Self.epochRequest(expected.requested), version: 4)
                    let partition = try #require(response.topics.first?.partitions.first)
                    #expect(
                        partition.leaderEpoch == expected.epoch && partition.endOffset == expected.endOffset,
                        "re-elected, epoch \(expected.requested): \(partition)"
                    )
                }
            }
        }
    }

    // MARK: SASL on a PLAINTEXT listener

    @Test func saslOnAPlaintextListenerGetsIllegalSaslStateAndTheConnectionStays() async throws {
        try await Self.withBroker { port, _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let hello = ApiVersionsRequest(clientSoftwareName: "test", clientSoftwareVersion: "1")
                let versions = try await connection.send(hello, version: 3)
                let advertised = Dictionary(uniqueKeysWithValues: versions.apiKeys.map { ($0.apiKey, $0) })
                #expect(advertised[17]?.minVersion == 0 && advertised[17]?.maxVersion == 1)
                #expect(advertised[36]?.minVersion == 0 && advertised[36]?.maxVersion == 2)
                for version in Int16(0)...1 {
                    let request = SaslHandshakeRequest(mechanism: "PLAIN")
                    let handshake = try await connection.send(request, version: version)
                    #expect(handshake.errorCode == 34, "SaslHandshake v\(version)")
                    #expect(handshake.mechanisms.isEmpty)
                }
                for version in Int16(0)...2 {
                    let authenticate = try await connection.send(
                        SaslAuthenticateRequest(authBytes: ByteBuffer(string: "\u{0}user\u{0}secret")),
                        version: version
                    )
                    #expect(authenticate.errorCode == 34, "SaslAuthenticate v\(version)")
                    #expect(authenticate.errorMessage?.contains("SaslAuthenticate") == true)
                    #expect(authenticate.authBytes.readableBytes == 0)
                }
                // Still served on the same connection.
                let again = try await connection.send(hello, version: 3)
                #expect(again.errorCode == 0)
            }
        }
    }

    // MARK: FindCoordinator

    @Test func findCoordinatorRefusesTransactionKeysAndWaitsForGroups() async throws {
        try await Self.withBroker { port, _ in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let group0 = try await connection.send(FindCoordinatorRequest(key: "g"), version: 0)
                #expect(group0.errorCode == 15 && group0.nodeID == -1)
                for version in Int16(1)...3 {
                    let group = try await connection.send(FindCoordinatorRequest(key: "g"), version: version)
                    #expect(group.errorCode == 15, "group v\(version)")
                    let txn = try await connection.send(FindCoordinatorRequest(key: "t", keyType: 1), version: version)
                    #expect(txn.errorCode == 53, "transaction v\(version)")
                    #expect(txn.nodeID == -1)
                    let unknownType = FindCoordinatorRequest(key: "x", keyType: 9)
                    let bogus = try await connection.send(unknownType, version: version)
                    #expect(bogus.errorCode == 42, "key type 9 v\(version)")
                }
                let batched = try await connection.send(
                    FindCoordinatorRequest(keyType: 1, coordinatorKeys: ["t1", "t2"]),
                    version: 4
                )
                #expect(batched.coordinators.map(\.key) == ["t1", "t2"])
                #expect(batched.coordinators.allSatisfy { $0.errorCode == 53 && $0.nodeID == -1 })
            }
        }
    }

    // MARK: Produce record errors and timestamp bounds

    @Test func timestampBoundsComeFromTheBrokerConfiguration() async throws {
        let properties = [
            ("log.message.timestamp.before.max.ms", "60000"), ("log.message.timestamp.after.max.ms", "5000"),
        ]
        try await Self.withBroker(properties) { port, storage in
            try await storage.replicas.becomeLeader(topic: Self.topic, partition: 0, topicID: .zero, leaderEpoch: 1)
            let config = try #require(storage.replicas.partition(TopicPartition(Self.topic, 0))?.log.config)
            #expect(config.timestampBeforeMaxMs == 60_000 && config.timestampAfterMaxMs == 5_000)
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                // Record 2 is ten minutes ahead, record 1 (checked first) ten minutes behind: the first bad one is
                // reported, by its index in the batch.
                let late = try Self.batch(3, timestamps: [now, now - 600_000, now + 600_000])
                for version in Int16(3)...11 {
                    let response = try await connection.send(Self.produce(late), version: version)
                    let partition = try #require(response.responses.first?.partitionResponses.first)
                    #expect(partition.errorCode == 32, "Produce v\(version)")
                    #expect(partition.baseOffset == -1)
                    if version >= 8 {
                        #expect(partition.recordErrors.map(\.batchIndex) == [1], "Produce v\(version)")
                        #expect(partition.recordErrors.first?.batchIndexErrorMessage?.contains("timestamp") == true)
                        #expect(
                            partition.errorMessage == "One or more records have been rejected due to invalid timestamp"
                        )
                    }
                }
                let ahead = try Self.batch(2, timestamps: [now, now + 600_000])
                let refused = try await connection.send(Self.produce(ahead), version: 9)
                #expect(refused.responses.first?.partitionResponses.first?.recordErrors.map(\.batchIndex) == [1])
                // Inside the bounds (and -1, "no timestamp") the batch is appended; nothing was written before.
                let fine = try Self.batch(2, timestamps: [now - 30_000, -1])
                let accepted = try await connection.send(Self.produce(fine), version: 9)
                let partition = try #require(accepted.responses.first?.partitionResponses.first)
                #expect(partition.errorCode == 0 && partition.baseOffset == 0 && partition.recordErrors.isEmpty)
            }
        }
    }

    @Test func defaultTimestampBoundsAreKafka4s() throws {
        let config = try ConfigLayers(configuration: testConfiguration()).logConfig(overrides: [:])
        #expect(config.timestampBeforeMaxMs == Int64.max)
        #expect(config.timestampAfterMaxMs == 3_600_000)
        #expect(throws: LogBrokerServerError.self) {
            try testConfiguration([("log.message.timestamp.after.max.ms", "-1")])
        }
    }

    @Test func aCompactedTopicRefusesARecordWithoutAKeyWithItsIndex() async throws {
        try await Self.withBroker([("log.cleanup.policy", "compact")]) { port, storage in
            try await storage.replicas.becomeLeader(topic: Self.topic, partition: 0, topicID: .zero, leaderEpoch: 1)
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                var builder = RecordBatchBuilder(codec: .lz4)
                for index in 0..<3 {
                    let key = index == 2 ? nil : ByteBuffer(string: "key-\(index)")
                    builder.append(timestamp: now, key: key, value: ByteBuffer(string: "value-\(index)"))
                }
                let response = try await connection.send(Self.produce(try builder.build().buffer), version: 10)
                let partition = try #require(response.responses.first?.partitionResponses.first)
                #expect(partition.errorCode == 87)
                #expect(partition.recordErrors.map(\.batchIndex) == [2])
                #expect(partition.recordErrors.first?.batchIndexErrorMessage?.contains("key") == true)
                let summary = "One or more records have been rejected due to 1 record errors"
                #expect(partition.errorMessage?.hasPrefix(summary) == true)
                // With every key present the batch is appended.
                var keyed = RecordBatchBuilder(codec: .lz4)
                keyed.append(timestamp: now, key: ByteBuffer(string: "k"), value: ByteBuffer(string: "v"))
                let accepted = try await connection.send(Self.produce(try keyed.build().buffer), version: 10)
                #expect(accepted.responses.first?.partitionResponses.first?.errorCode == 0)
            }
        }
    }

    @Test func batchLevelRefusalsCarryNoRecordErrors() async throws {
        try await Self.withBroker { port, storage in
            try await storage.replicas.becomeLeader(topic: Self.topic, partition: 0, topicID: .zero, leaderEpoch: 1)
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                var corrupt = try Self.batch(2)
                corrupt.setInteger(UInt8(0x55), at: corrupt.writerIndex - 1)
                let response = try await connection.send(Self.produce(corrupt), version: 11)
                let partition = try #require(response.responses.first?.partitionResponses.first)
                #expect(partition.errorCode == 2)
                #expect(partition.recordErrors.isEmpty)
            }
        }
    }
}
