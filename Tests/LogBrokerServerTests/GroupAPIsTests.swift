import Foundation
import KafkaMessages
import KafkaNIO
import KafkaWire
import Testing

/// The group APIs at the wire level against the real binary: the multi-group OffsetFetch (v8+; librdkafka sends one
/// group per request, so only a raw request covers it), commits from group-less consumers, and the refusals.
@Suite(.timeLimit(.minutes(2))) struct GroupAPIsTests {
    @Test func offsetFetchAnswersSeveralGroupsAndCommitRefusalsKeepTheState() async throws {
        try await BrokerProcess.withBroker { broker in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                _ = try await connection.send(
                    CreateTopicsRequest(topics: [.init(name: "t", numPartitions: 2, replicationFactor: 1)]),
                    version: 7
                )
                let coordinator = try await connection.send(FindCoordinatorRequest(keyType: 0, coordinatorKeys: ["known"]),
                                                            version: 4)
                #expect(coordinator.coordinators.first?.nodeID == 1 && coordinator.coordinators.first?.errorCode == 0)

                func commit(_ partition: Int32, _ offset: Int64, generation: Int32 = -1, member: String = "",
                            metadata: String = "m") async throws -> Int16? {
                    let response = try await connection.send(
                        OffsetCommitRequest(
                            groupID: "known",
                            generationIDOrMemberEpoch: generation,
                            memberID: member,
                            topics: [.init(name: "t", partitions: [
                                .init(partitionIndex: partition, committedOffset: offset, committedMetadata: metadata)
                            ])]
                        ),
                        version: 9
                    )
                    return response.topics.first?.partitions.first?.errorCode
                }
                #expect(try await commit(0, 42) == 0)
                #expect(try await commit(9, 1) == 3, "an unknown partition")
                #expect(try await commit(1, 5, generation: 3, member: "ghost") == 25, "an unknown member")
                #expect(try await commit(1, 5, metadata: String(repeating: "x", count: 5_000)) == 12,
                        "metadata past offset.metadata.max.bytes")

                let fetched = try await connection.send(
                    OffsetFetchRequest(groups: [
                        .init(groupID: "known", topics: [.init(name: "t", partitionIndexes: [0, 1])]),
                        .init(groupID: "unknown", topics: [.init(name: "t", partitionIndexes: [0])]),
                    ]),
                    version: 9
                )
                #expect(fetched.groups.map(\.groupID) == ["known", "unknown"])
                #expect(fetched.groups.allSatisfy { $0.errorCode == 0 })
                let known = try #require(fetched.groups.first?.topics.first?.partitions)
                #expect(known.map(\.committedOffset) == [42, -1], "the refused commits left partition 1 alone")
                #expect(known.first?.metadata == "m")
                #expect(fetched.groups.last?.topics.first?.partitions.first?.committedOffset == -1)
            }
        }
    }

    /// An OffsetCommit v2 retention expires its offset (kept as OffsetCommitValue v1, which has the expire
    /// timestamp), a deleted topic's offsets leave every group, and a restart brings neither back.
    @Test func offsetsExpireAndDeletedTopicsLoseTheirOffsetsAlsoAfterARestart() async throws {
        try await BrokerProcess.withBroker([("offsets.retention.check.interval.ms", "200")]) { broker in
            func committed(_ connection: KafkaClientConnection, _ group: String, _ topic: String) async throws -> Int64? {
                let response = try await connection.send(
                    OffsetFetchRequest(groups: [.init(groupID: group, topics: [.init(name: topic, partitionIndexes: [0])])]),
                    version: 9
                )
                return response.groups.first?.topics.first?.partitions.first?.committedOffset
            }
            func commit(
                _ connection: KafkaClientConnection, _ group: String, _ offsets: [String: Int64],
                retentionTimeMs: Int64 = -1, version: Int16 = 9
            ) async throws -> [Int16] {
                let response = try await connection.send(
                    OffsetCommitRequest(
                        groupID: group, generationIDOrMemberEpoch: -1, memberID: "", retentionTimeMs: retentionTimeMs,
                        topics: offsets.sorted { $0.key < $1.key }.map {
                            .init(name: $0.key, partitions: [.init(partitionIndex: 0, committedOffset: $0.value)])
                        }
                    ),
                    version: version
                )
                return response.topics.flatMap { $0.partitions.map(\.errorCode) }
            }
            func poll(_ condition: () async throws -> Bool) async throws {
                let deadline = ContinuousClock.now + .seconds(20)
                while try await !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            }

            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                _ = try await connection.send(
                    CreateTopicsRequest(topics: ["kept", "doomed"].map { .init(name: $0, numPartitions: 1, replicationFactor: 1) }),
                    version: 7
                )
                _ = try await connection.send(FindCoordinatorRequest(keyType: 0, coordinatorKeys: ["brief", "lasting"]),
                                              version: 4)
                let committedAt = ContinuousClock.now
                #expect(try await commit(connection, "brief", ["kept": 5], retentionTimeMs: 1_000, version: 2) == [0])
                #expect(try await commit(connection, "lasting", ["kept": 7, "doomed": 3]) == [0, 0])
                // A v2 commit with a long retention is kept (not checked on "brief": a loaded machine may be slower
                // than its 1 s).
                #expect(try await commit(connection, "hour", ["kept": 8], retentionTimeMs: 3_600_000, version: 2) == [0])
                #expect(try await committed(connection, "hour", "kept") == 8)
                try await poll { try await committed(connection, "brief", "kept") == -1 }
                #expect(try await committed(connection, "brief", "kept") == -1, "expired after its 1 s retention")
                #expect(ContinuousClock.now - committedAt >= .seconds(1))
                #expect(try await committed(connection, "lasting", "kept") == 7, "offsets.retention.minutes is 7 days")

                let deleted = try await connection.send(DeleteTopicsRequest(topicNames: ["doomed"], timeoutMs: 10_000), version: 4)
                #expect(deleted.responses.first?.errorCode == 0)
                try await poll { try await committed(connection, "lasting", "doomed") == -1 }
                #expect(try await committed(connection, "lasting", "doomed") == -1, "the deleted topic's offset went")
                #expect(try await committed(connection, "lasting", "kept") == 7)
            }

            try await broker.kill()
            try await broker.start()
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                try await poll { try await committed(connection, "lasting", "kept") == 7 }
                #expect(try await committed(connection, "lasting", "kept") == 7)
                #expect(try await committed(connection, "lasting", "doomed") == -1)
                #expect(try await committed(connection, "brief", "kept") == -1)
                // "brief" had no offset left and no members: gone.
                let groups = try await connection.send(ListGroupsRequest(), version: 4)
                #expect(groups.groups.map(\.groupID).sorted() == ["hour", "lasting"])
                #expect(try await committed(connection, "hour", "kept") == 8)
                #expect(try await commit(connection, "brief", ["kept": 6], retentionTimeMs: 1_500, version: 2) == [0])
            }
            // The expire timestamp is read back from __consumer_offsets: the offset still expires after a restart.
            try await broker.kill()
            try await broker.start()
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                try await poll { try await committed(connection, "brief", "kept") == -1 }
                #expect(try await committed(connection, "brief", "kept") == -1)
            }
        }
    }
}
