import Foundation
import KafkaMessages
import KafkaNIO
import KafkaWire
import NIOCore
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

    // MARK: The ZooKeeper-era versions: OffsetCommit v0–1, OffsetFetch v0

    /// OffsetCommit v0 and v1 and OffsetFetch v0 are served from the group store (Kafka 3.9 kept v0 in ZooKeeper;
    /// there is none here): each version reads what the others wrote, v0 answers a missing offset or partition
    /// with UNKNOWN_TOPIC_OR_PARTITION as Kafka's ZooKeeper read did, and v1's generation and member id are checked
    /// against a live group while v0 (which has neither) is refused there.
    @Test func zooKeeperEraVersionsShareTheGroupStore() async throws {
        try await BrokerProcess.withBroker([("group.initial.rebalance.delay.ms", "0")]) { broker in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                _ = try await connection.send(
                    CreateTopicsRequest(topics: [.init(name: "old", numPartitions: 3, replicationFactor: 1)]),
                    version: 7
                )
                let coordinator = try await connection.send(FindCoordinatorRequest(key: "zk-era"), version: 0)
                #expect(coordinator.errorCode == 0 && coordinator.nodeID == 1)

                func commit(
                    _ group: String, _ partition: Int32, _ offset: Int64, version: Int16, generation: Int32 = -1,
                    member: String = "", topic: String = "old"
                ) async throws -> Int16? {
                    let response = try await connection.send(
                        OffsetCommitRequest(
                            groupID: group,
                            generationIDOrMemberEpoch: generation,
                            memberID: member,
                            topics: [.init(name: topic, partitions: [
                                .init(partitionIndex: partition, committedOffset: offset, committedMetadata: "v\(version)")
                            ])]
                        ),
                        version: version
                    )
                    #expect(response.topics.first?.name == topic)
                    return response.topics.first?.partitions.first?.errorCode
                }
                func fetch(_ group: String, _ partitions: [Int32], version: Int16, topic: String = "old") async throws
                    -> (offsets: [Int64], errors: [Int16])
                {
                    let response = try await connection.send(
                        OffsetFetchRequest(groupID: group, topics: [.init(name: topic, partitionIndexes: partitions)]),
                        version: version
                    )
                    #expect(response.errorCode == 0)
                    let answered = response.topics.first?.partitions ?? []
                    #expect(answered.map(\.partitionIndex) == partitions)
                    return (answered.map(\.committedOffset), answered.map(\.errorCode))
                }

                #expect(try await commit("zk-era", 0, 10, version: 0) == 0)
                #expect(try await commit("zk-era", 1, 11, version: 1) == 0)
                #expect(try await commit("zk-era", 9, 1, version: 0) == 3, "no partition 9")
                #expect(try await commit("zk-era", 0, 1, version: 0, topic: "nowhere") == 3)
                // v0: a partition without an offset, like one the broker does not have, is
                // UNKNOWN_TOPIC_OR_PARTITION (Kafka's ZooKeeper read); v1+ answer -1 with NONE.
                #expect(try await fetch("zk-era", [0, 1, 2], version: 0) == ([10, 11, -1], [0, 0, 3]))
                #expect(try await fetch("zk-era", [0, 1, 2], version: 1) == ([10, 11, -1], [0, 0, 0]))
                #expect(try await fetch("zk-era", [0], version: 0, topic: "nowhere") == ([-1], [3]))
                #expect(try await fetch("never-seen", [0], version: 0) == ([-1], [3]))
                let modern = try await connection.send(
                    OffsetFetchRequest(groups: [.init(groupID: "zk-era", topics: [.init(name: "old", partitionIndexes: [0, 1])])]),
                    version: 9
                )
                let partitions = try #require(modern.groups.first?.topics.first?.partitions)
                #expect(partitions.map(\.committedOffset) == [10, 11])
                #expect(partitions.map(\.metadata) == ["v0", "v1"])
                // A v9 commit reads back at v0.
                #expect(try await commit("zk-era", 2, 12, version: 9) == 0)
                #expect(try await fetch("zk-era", [2], version: 0) == ([12], [0]))

                // A live group: one member joined and synced (generation 1).
                let joined = try await connection.send(
                    JoinGroupRequest(
                        groupID: "live", sessionTimeoutMs: 30_000, rebalanceTimeoutMs: 30_000, memberID: "",
                        protocolType: "consumer", protocols: [.init(name: "range", metadata: ByteBuffer())]
                    ),
                    version: 3
                )
                #expect(joined.errorCode == 0)
                let synced = try await connection.send(
                    SyncGroupRequest(
                        groupID: "live", generationID: joined.generationID, memberID: joined.memberID,
                        assignments: [.init(memberID: joined.memberID, assignment: ByteBuffer())]
                    ),
                    version: 3
                )
                #expect(synced.errorCode == 0)
                let generation = joined.generationID
                let member = joined.memberID
                #expect(try await commit("live", 0, 5, version: 1, generation: generation, member: member) == 0)
                #expect(try await commit("live", 0, 6, version: 1, generation: generation + 1, member: member) == 22)
                #expect(try await commit("live", 0, 6, version: 1, generation: generation, member: "stranger") == 25)
                #expect(try await commit("live", 0, 6, version: 1) == 25, "no generation while the group has members")
                #expect(try await commit("live", 0, 6, version: 0) == 25, "v0 has no generation")
                #expect(try await fetch("live", [0], version: 0) == ([5], [0]))
            }
        }
    }

    /// OffsetCommit v1's commit timestamp is the offset's commit time, which a group-less consumer's offset expires
    /// from after `offsets.retention.minutes` (as Kafka 3.9's coordinator has it); -1 means now.
    @Test func offsetCommitV1TimestampIsWhatExpiryCountsFrom() async throws {
        try await BrokerProcess.withBroker([
            ("offsets.retention.minutes", "1"), ("offsets.retention.check.interval.ms", "200"),
        ]) { broker in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                _ = try await connection.send(
                    CreateTopicsRequest(topics: [.init(name: "stamped", numPartitions: 3, replicationFactor: 1)]),
                    version: 7
                )
                let coordinator = try await connection.send(FindCoordinatorRequest(key: "stamps"), version: 0)
                #expect(coordinator.errorCode == 0 && coordinator.nodeID == 1)
                let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
                // Partition 0 committed two minutes ago (past the one-minute retention), 1 ten seconds ago, 2 now.
                let committed = try await connection.send(
                    OffsetCommitRequest(
                        groupID: "stamps",
                        topics: [.init(name: "stamped", partitions: [
                            .init(partitionIndex: 0, committedOffset: 100, commitTimestamp: nowMs - 120_000),
                            .init(partitionIndex: 1, committedOffset: 101, commitTimestamp: nowMs - 10_000),
                            .init(partitionIndex: 2, committedOffset: 102, commitTimestamp: -1),
                        ])]
                    ),
                    version: 1
                )
                #expect(committed.topics.first?.partitions.map(\.errorCode) == [0, 0, 0])
                func offsets() async throws -> [Int64] {
                    let response = try await connection.send(
                        OffsetFetchRequest(groupID: "stamps", topics: [.init(name: "stamped", partitionIndexes: [0, 1, 2])]),
                        version: 1
                    )
                    return response.topics.first?.partitions.map(\.committedOffset) ?? []
                }
                let deadline = ContinuousClock.now + .seconds(20)
                while try await offsets().first != -1, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(try await offsets() == [-1, 101, 102], "only the offset stamped two minutes ago expired")
            }
        }
    }
}
