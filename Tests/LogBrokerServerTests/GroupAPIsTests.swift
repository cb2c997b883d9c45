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
}
