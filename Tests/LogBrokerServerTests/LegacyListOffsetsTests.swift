import Foundation
import KafkaMessages
import KafkaNIO
import KafkaWire
import LogBrokerServer
import LogStorage
import Replication
import SystemPackage
import Testing

/// ListOffsets v0 (the old-style offsets Burrow asks for) and the duplicate-partition rule of every version, on real
/// sockets against the data path as `logbroker-server` assembles it (`RemainingAPIsTests.withBroker`).
@Suite struct LegacyListOffsetsTests {
    static func request(
        _ topic: String,
        _ lookups: [(partition: Int32, timestamp: Int64, maxNumOffsets: Int32)],
        replicaID: Int32 = -1
    ) -> ListOffsetsRequest {
        ListOffsetsRequest(
            replicaID: replicaID,
            topics: [
                .init(
                    name: topic,
                    partitions: lookups.map {
                        .init(partitionIndex: $0.partition, timestamp: $0.timestamp, maxNumOffsets: $0.maxNumOffsets)
                    }
                )
            ]
        )
    }

    /// Segments 0, 3 and 6 (three batches of three records, `log.segment.bytes` 200), their `.log` files modified
    /// 300, 200 and 100 s ago: v0 answers segment base offsets and the log end, newest first, as Kafka's
    /// `legacyFetchOffsetsBefore` does.
    @Test func v0AnswersSegmentOffsetsAndTheLogEndNewestFirst() async throws {
        try await RemainingAPIsTests.withBroker([("log.segment.bytes", "200")]) { port, storage in
            let replicas = storage.replicas
            try await replicas.becomeLeader(topic: "legacy", partition: 0, topicID: .zero, leaderEpoch: 1)
            try await replicas.becomeLeader(topic: "empty", partition: 0, topicID: .zero, leaderEpoch: 1)
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                for _ in 0..<3 {
                    let produced = try await connection.send(
                        RemainingAPIsTests.produce(try RemainingAPIsTests.batch(3), topic: "legacy"),
                        version: 9
                    )
                    #expect(produced.responses.first?.partitionResponses.first?.errorCode == 0)
                }
                let log = try #require(replicas.partition(TopicPartition("legacy", 0))?.log)
                let bases = try log.withLog { $0.segmentBaseOffsets }
                try #require(bases == [0, 3, 6], "the batches rolled one segment each")
                let now = Date()
                for (base, age) in zip(bases, [300.0, 200, 100]) {
                    let path = log.directory.appending(String(format: "%020lld.log", base)).string
                    try FileManager.default.setAttributes(
                        [.modificationDate: now.addingTimeInterval(-age)],
                        ofItemAtPath: path
                    )
                }
                let nowMs = Int64(now.timeIntervalSince1970 * 1000)

                func lookup(
                    _ timestamp: Int64,
                    _ maxNumOffsets: Int32,
                    topic: String = "legacy",
                    replicaID: Int32 = -1
                ) async throws -> (error: Int16, offsets: [Int64]) {
                    let response = try await connection.send(
                        Self.request(topic, [(0, timestamp, maxNumOffsets)], replicaID: replicaID),
                        version: 0
                    )
                    #expect(response.topics.first?.name == topic)
                    let partition = try #require(response.topics.first?.partitions.first)
                    #expect(partition.partitionIndex == 0)
                    return (partition.errorCode, partition.oldStyleOffsets)
                }
                // Latest (-1): from the log end back.
                #expect(try await lookup(-1, 10) == (0, [9, 6, 3, 0]))
                #expect(try await lookup(-1, 2) == (0, [9, 6]))
                #expect(try await lookup(-1, 1) == (0, [9]), "what Burrow asks")
                // Earliest (-2): the log start alone, however many are allowed.
                #expect(try await lookup(-2, 10) == (0, [0]))
                #expect(try await lookup(-4, 10) == (0, [0]), "earliest local: the same without tiered storage")
                #expect(try await lookup(-3, 10) == (0, []), "max timestamp is no special value at v0")
                // A timestamp: from the newest segment modified at or before it.
                #expect(try await lookup(nowMs - 150_000, 10) == (0, [3, 0]))
                #expect(try await lookup(nowMs - 150_000, 1) == (0, [3]))
                #expect(try await lookup(nowMs - 250_000, 10) == (0, [0]))
                #expect(try await lookup(nowMs - 1_000_000, 10) == (0, []), "older than every segment")
                #expect(try await lookup(nowMs + 3_600_000, 10) == (0, [9, 6, 3, 0]), "the log end counts as now")
                #expect(try await lookup(-1, 0) == (0, []))
                // A follower or debugging replica id gets the same (the high watermark is the log end here).
                #expect(try await lookup(-1, 10, replicaID: -2) == (0, [9, 6, 3, 0]))
                // Kafka's errors at v0: a negative count fails its array allocation (UNKNOWN_SERVER_ERROR).
                #expect(try await lookup(-1, -1) == (-1, []))
                #expect(try await lookup(-1, 1, topic: "nowhere") == (3, []))
                // An empty partition (its only segment holds nothing): the log start, which is the log end.
                #expect(try await lookup(-1, 5, topic: "empty") == (0, [0]))
                #expect(try await lookup(-2, 5, topic: "empty") == (0, [0]))
                #expect(try await lookup(nowMs - 60_000, 5, topic: "empty") == (0, []), "made just now")

                // After DeleteRecords the log start stands in for the segment base offsets below it.
                let deleted = try await connection.send(
                    DeleteRecordsRequest(
                        topics: [.init(name: "legacy", partitions: [.init(partitionIndex: 0, offset: 4)])],
                        timeoutMs: 10_000
                    ),
                    version: 2
                )
                #expect(deleted.topics.first?.partitions.first?.lowWatermark == 4)
                #expect(try await lookup(-2, 10) == (0, [4]))
                let afterDelete = try await lookup(-1, 10)
                #expect(afterDelete.error == 0)
                #expect(afterDelete.offsets.first == 9 && afterDelete.offsets.last == 4, "\(afterDelete.offsets)")
                #expect(afterDelete.offsets == afterDelete.offsets.sorted(by: >))
                #expect(afterDelete.offsets.allSatisfy { $0 >= 4 })
            }
        }
    }

    /// A partition named twice gets INVALID_REQUEST at each mention from v1 on (Kafka's `duplicatePartitions`),
    /// whichever topic entry names it, while the other partitions are answered; v0 answers every mention.
    @Test func aPartitionNamedTwiceGetsInvalidRequest() async throws {
        try await RemainingAPIsTests.withBroker { port, storage in
            let replicas = storage.replicas
            for partition in Int32(0)...1 {
                try await replicas.becomeLeader(topic: "dup", partition: partition, topicID: .zero, leaderEpoch: 1)
            }
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                _ = try await connection.send(
                    RemainingAPIsTests.produce(try RemainingAPIsTests.batch(2), topic: "dup"),
                    version: 9
                )
                let twiceInOneTopic = Self.request("dup", [(0, -1, 1), (1, -1, 1), (0, -2, 1)])
                var acrossTopics = Self.request("dup", [(1, -1, 1)])
                acrossTopics.topics.append(contentsOf: Self.request("dup", [(1, -2, 1), (0, -1, 1)]).topics)
                for version in Int16(1)...7 {
                    let response = try await connection.send(twiceInOneTopic, version: version)
                    let partitions = try #require(response.topics.first?.partitions)
                    #expect(partitions.map(\.partitionIndex) == [0, 1, 0])
                    #expect(partitions.map(\.errorCode) == [42, 0, 42], "v\(version)")
                    #expect(partitions[0].offset == -1 && partitions[0].timestamp == -1)
                    #expect(partitions[2].offset == -1 && partitions[2].timestamp == -1)
                    #expect(partitions[1].offset == 0, "partition 1 is empty: latest is 0")

                    let across = try await connection.send(acrossTopics, version: version)
                    let answers = across.topics.flatMap { topic in topic.partitions.map { ($0.partitionIndex, $0) } }
                    #expect(answers.map(\.0) == [1, 1, 0])
                    #expect(answers.map(\.1.errorCode) == [42, 42, 0], "v\(version)")
                    #expect(answers[2].1.offset == 2)
                }
                // v0 has no duplicate check in Kafka: each mention gets its own answer.
                let v0 = try await connection.send(twiceInOneTopic, version: 0)
                let partitions = try #require(v0.topics.first?.partitions)
                #expect(partitions.map(\.errorCode) == [0, 0, 0])
                #expect(partitions.map(\.oldStyleOffsets) == [[2], [0], [0]])
            }
        }
    }
}
