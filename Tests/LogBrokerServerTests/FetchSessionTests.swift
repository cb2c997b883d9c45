import DelayedOperations
import KafkaMessages
import KafkaNIO
import KafkaWire
import LogStorage
import NIOCore
import Replication
import Testing

@testable import LogBrokerServer

/// Incremental fetch sessions (KIP-227) on a real socket, against partitions 0 and 1 of the test topic.
@Suite struct FetchSessionTests {
    static let topic = ProduceFetchTests.topic
    static let invalidEpoch: Int16 = 71
    static let sessionNotFound: Int16 = 70

    /// A Fetch of `partitions` (partition, fetch offset) in session `sessionID` at `epoch`, forgetting `forgotten`.
    static func fetch(
        _ partitions: [(Int32, Int64)],
        sessionID: Int32 = 0,
        epoch: Int32 = 0,
        forgotten: [Int32] = [],
        maxWaitMs: Int32 = 0
    ) -> FetchRequest {
        FetchRequest(
            maxWaitMs: maxWaitMs,
            minBytes: 1,
            maxBytes: 50 << 20,
            sessionID: sessionID,
            sessionEpoch: epoch,
            topics: partitions.isEmpty
                ? []
                : [
                    .init(
                        topic: Self.topic,
                        partitions: partitions.map {
                            .init(partition: $0.0, fetchOffset: $0.1, partitionMaxBytes: 1 << 20)
                        }
                    )
                ],
            forgottenTopicsData: forgotten.isEmpty ? [] : [.init(topic: Self.topic, partitions: forgotten)]
        )
    }

    /// The broker with partitions 0 and 1 led, and one connection to it.
    static func withSession(
        slots: Int = 1000,
        _ body: @Sendable (KafkaClientConnection, Int) async throws -> Void
    ) async throws {
        try await ProduceFetchTests.withBroker(sessionSlots: slots) { port, replicas in
            try await replicas.becomeLeader(topic: Self.topic, partition: 1, topicID: .zero, leaderEpoch: 1)
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                try await body(connection, port)
            }
        }
    }

    static func produce(_ values: [String], partition: Int32, on connection: KafkaClientConnection) async throws {
        let request = ProduceFetchTests.produceRequest(try ProduceFetchTests.batch(values), partition: partition)
        let response = try await connection.send(request, version: 9)
        #expect(response.responses.first?.partitionResponses.first?.errorCode == 0)
    }

    /// (partition, values, high watermark) of each partition in a response, in order.
    static func partitions(_ response: FetchResponse) throws -> [(Int32, [String], Int64)] {
        try response.responses.flatMap { topic in
            try topic.partitions.map {
                ($0.partitionIndex, try ProduceFetchTests.decode($0.records).values, $0.highWatermark)
            }
        }
    }

    @Test(arguments: [Int16(7), 12])
    func aFullFetchOpensASessionAndIncrementalFetchesCarryOnlyWhatChanged(version: Int16) async throws {
        try await Self.withSession { connection, _ in
            try await Self.produce(["a", "b", "c"], partition: 0, on: connection)
            let full = try await connection.send(Self.fetch([(0, 0), (1, 0)]), version: version)
            #expect(full.errorCode == 0)
            #expect(full.sessionID != 0, "a full fetch at epoch 0 opens a session")
            let fullParts = try Self.partitions(full)
            #expect(fullParts.map(\.0) == [0, 1])
            #expect(fullParts.first?.1 == ["a", "b", "c"])

            // Partition 0 moves on to offset 3; partition 1 is not named and keeps offset 0. Nothing is new.
            let quiet = try await connection.send(
                Self.fetch([(0, 3)], sessionID: full.sessionID, epoch: 1),
                version: version
            )
            #expect(quiet.errorCode == 0)
            #expect(quiet.sessionID == full.sessionID)
            #expect(try Self.partitions(quiet).isEmpty, "unchanged partitions are left out")

            // New records on partition 1 only: the answer carries partition 1 alone, read from its cached offset.
            try await Self.produce(["x", "y"], partition: 1, on: connection)
            let news = try await connection.send(Self.fetch([], sessionID: full.sessionID, epoch: 2), version: version)
            let newsParts = try Self.partitions(news)
            #expect(newsParts.map(\.0) == [1])
            #expect(newsParts.first?.1 == ["x", "y"])
            #expect(newsParts.first?.2 == 2)

            // Partition 0, not named this time, is read from its cached offset 3 and has news; partition 1 has none.
            try await Self.produce(["d"], partition: 0, on: connection)
            let moved = try await connection.send(
                Self.fetch([(1, 2)], sessionID: full.sessionID, epoch: 3),
                version: version
            )
            let movedParts = try Self.partitions(moved)
            #expect(movedParts.map(\.0) == [0])
            #expect(movedParts.first?.1 == ["d"])
            #expect(movedParts.first?.2 == 4)
        }
    }

    /// The incremental fetch waits up to 120 s; a produce wakes it long before (the 60 s bound tells the two apart
    /// however late the test's own tasks run on a loaded machine).
    @Test func anIncrementalFetchWaitsForNewRecordsAndWakesOnAProduce() async throws {
        try await ProduceFetchTests.withBroker { port, replicas in
            async let woken = KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let full = try await connection.send(Self.fetch([(0, 0)]), version: 12)
                #expect(full.sessionID != 0)
                let parked = Self.fetch([], sessionID: full.sessionID, epoch: 1, maxWaitMs: 120_000)
                let response = try await connection.send(parked, version: 12)
                return (response, ContinuousClock.now)
            }
            _ = try await ParkedFetchTests.eventually(within: .seconds(20)) { replicas.delayedFetches.parkedCount == 1 }
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { producer in
                try await Self.produce(["late"], partition: 0, on: producer)
            }
            let produced = ContinuousClock.now
            let (response, answered) = try await woken
            #expect(answered - produced < .seconds(60))
            #expect(try Self.partitions(response).map(\.1) == [["late"]])
        }
    }

    @Test func wrongEpochsAndUnknownSessionsAreRefused() async throws {
        try await Self.withSession { connection, _ in
            let full = try await connection.send(Self.fetch([(0, 0)]), version: 12)
            let id = full.sessionID
            #expect(id != 0)

            let wrong = try await connection.send(Self.fetch([], sessionID: id, epoch: 5), version: 12)
            #expect(wrong.errorCode == Self.invalidEpoch)
            #expect(wrong.responses.isEmpty)
            // A refused request does not move the session on: epoch 1 is still the next one.
            let right = try await connection.send(Self.fetch([], sessionID: id, epoch: 1), version: 12)
            #expect(right.errorCode == 0)
            #expect(right.sessionID == id)
            let replayed = try await connection.send(Self.fetch([], sessionID: id, epoch: 1), version: 12)
            #expect(replayed.errorCode == Self.invalidEpoch)

            let unknown = try await connection.send(Self.fetch([], sessionID: id &+ 1, epoch: 1), version: 12)
            #expect(unknown.errorCode == Self.sessionNotFound)
            let noSession = try await connection.send(Self.fetch([], sessionID: 0, epoch: 1), version: 12)
            #expect(noSession.errorCode == Self.sessionNotFound)
        }
    }

    @Test func aFullCacheAnswersSessionZeroAndABiggerSessionEvictsTheLeastUsedSmallOne() async throws {
        try await Self.withSession(slots: 2) { connection, _ in
            try await Self.produce(["a"], partition: 0, on: connection)
            let first = try await connection.send(Self.fetch([(0, 0)]), version: 12)
            let second = try await connection.send(Self.fetch([(1, 0)]), version: 12)
            #expect(first.sessionID != 0 && second.sessionID != 0 && first.sessionID != second.sessionID)
            // The second session is used again, so the first is the least recently used.
            let reused = try await connection.send(Self.fetch([], sessionID: second.sessionID, epoch: 1), version: 12)
            #expect(reused.errorCode == 0)

            // Full, and a session no bigger than the smallest: no session, but the fetch is answered.
            let refused = try await connection.send(Self.fetch([(0, 0)]), version: 12)
            #expect(refused.errorCode == 0)
            #expect(refused.sessionID == 0)
            #expect(try Self.partitions(refused).map(\.1) == [["a"]])

            // A session with more partitions takes the slot of the least recently used small one.
            let bigger = try await connection.send(Self.fetch([(0, 0), (1, 0)]), version: 12)
            #expect(bigger.sessionID != 0)
            let evicted = try await connection.send(Self.fetch([], sessionID: first.sessionID, epoch: 1), version: 12)
            #expect(evicted.errorCode == Self.sessionNotFound)
            let kept = try await connection.send(Self.fetch([], sessionID: second.sessionID, epoch: 2), version: 12)
            #expect(kept.errorCode == 0)
        }
    }

    @Test func forgottenPartitionsLeaveTheSessionAndEpochMinusOneClosesIt() async throws {
        try await Self.withSession { connection, _ in
            let full = try await connection.send(Self.fetch([(0, 0), (1, 0)]), version: 12)
            let id = full.sessionID
            let forget = try await connection.send(Self.fetch([], sessionID: id, epoch: 1, forgotten: [1]), version: 12)
            #expect(forget.errorCode == 0)
            try await Self.produce(["p0"], partition: 0, on: connection)
            try await Self.produce(["p1"], partition: 1, on: connection)
            let after = try await connection.send(Self.fetch([], sessionID: id, epoch: 2), version: 12)
            #expect(try Self.partitions(after).map(\.0) == [0], "partition 1 was forgotten")

            // Epoch -1 (FINAL_EPOCH) closes the named session and fetches without one.
            let final = try await connection.send(Self.fetch([(1, 0)], sessionID: id, epoch: -1), version: 12)
            #expect(final.errorCode == 0)
            #expect(final.sessionID == 0)
            #expect(try Self.partitions(final).map(\.1) == [["p1"]])
            let closed = try await connection.send(Self.fetch([], sessionID: id, epoch: 3), version: 12)
            #expect(closed.errorCode == Self.sessionNotFound)
        }
    }

    @Test func fetchesBelowVersion7NeverOpenSessions() async throws {
        try await Self.withSession { connection, _ in
            let response = try await connection.send(Self.fetch([(0, 0)]), version: 6)
            #expect(response.errorCode == 0)
            #expect(try Self.partitions(response).map(\.0) == [0])
        }
    }

    /// A full cache gives a new session the slot of one idle longer than the eviction time (Kafka: 120 s, here 0),
    /// whatever their sizes.
    @Test func aStaleSessionGivesWayToANewOneOfAnySize() {
        let cache = FetchSessionCache(capacity: 1, evictionAfter: .zero)
        let read = PartitionRead(topicPartition: TopicPartition(Self.topic, 0), fetchOffset: 0, maxBytes: 1 << 20)
        let results = [PartitionReadResult(error: .none)]
        let first = cache.createSession([read], results: results)
        let second = cache.createSession([read], results: results)
        #expect(first != 0 && second != 0 && first != second)
        #expect(cache.count == 1)

        let fresh = FetchSessionCache(capacity: 1)
        #expect(fresh.createSession([read], results: results) != 0)
        #expect(fresh.createSession([read], results: results) == 0, "not stale, not smaller: no eviction")
        #expect(fresh.count == 1)
    }

    @Test func epochsWrapToOneNeverToZeroOrMinusOne() {
        #expect(FetchSessionCache.nextEpoch(1) == 2)
        #expect(FetchSessionCache.nextEpoch(Int32.max) == 1)
    }
}
