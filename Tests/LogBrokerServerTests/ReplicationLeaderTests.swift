import ClusterControl
import DelayedOperations
import Foundation
import KafkaMessages
import KafkaNIO
import KafkaWire
import LogBrokerServer
import LogStorage
import NIOCore
import Replication
import Testing

/// The leader's side of replication on a real broker: node 1 in-process, with broker 2 registered with its
/// controller and played by the test, which fetches with replica id 2 as a follower's fetcher would (raw Fetch
/// requests on a socket). The controller's ISR changes are made by hand through the in-process controller.
@Suite(.timeLimit(.minutes(3))) struct ReplicationLeaderTests {
    static let topic = "replicated"
    static let topicPartition = TopicPartition(Self.topic, 0)

    /// Runs `body` with a broker that leads (or, with `replicas` starting at 2, follows) partition `replicated-0`
    /// on `replicas`, broker 2 registered at `127.0.0.1:19092`.
    static func withPartition<Result: Sendable>(
        replicas: [Int32] = [1, 2],
        configs: [String: String] = [:],
        _ body: @Sendable (Broker, Int, ReplicaManager) async throws -> Result
    ) async throws -> Result {
        try await withInProcessBroker { broker in
            let controller = try #require(broker.controller.activeController)
            _ = try await controller.registerBroker(
                BrokerRegistration(
                    nodeID: 2,
                    endpoints: [BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: 19092)],
                    rack: "r2"
                )
            )
            try await broker.controller.createTopic(
                Self.topic,
                partitions: 1,
                replicationFactor: Int16(replicas.count),
                assignment: [replicas],
                configs: configs
            )
            let manager = try #require(broker.storage?.replicas)
            let leads = replicas.first == 1
            #expect(
                try await Self.eventually {
                    guard let partition = manager.partition(Self.topicPartition) else { return false }
                    return partition.isLeader == leads
                }
            )
            let port = try #require(broker.localAddresses.first?.port)
            return try await body(broker, port, manager)
        }
    }

    static func eventually(within timeout: Duration = .seconds(30), _ condition: () async -> Bool) async throws -> Bool
    {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return await condition()
    }

    static func connect<Result: Sendable>(
        _ port: Int,
        _ body: (KafkaClientConnection) async throws -> Result
    ) async throws -> Result {
        try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { try await body($0) }
    }

    static func produce(
        _ values: [String],
        acks: Int16,
        timeoutMs: Int32 = 30_000,
        on connection: KafkaClientConnection,
        version: Int16 = 9
    ) async throws -> ProduceResponse.PartitionProduceResponse {
        let request = ProduceRequest(
            acks: acks,
            timeoutMs: timeoutMs,
            topicData: [
                .init(name: Self.topic, partitionData: [.init(index: 0, records: try ProduceFetchTests.batch(values))])
            ]
        )
        let response = try await connection.send(request, version: version)
        return try #require(response.responses.first?.partitionResponses.first)
    }

    /// A Fetch of `replicated-0` at `offset`: a consumer's (replica id -1) or a follower's, answered at once unless
    /// `maxWaitMs` is given (then it waits for a byte).
    static func fetch(
        at offset: Int64,
        replicaID: Int32 = -1,
        currentLeaderEpoch: Int32 = -1,
        lastFetchedEpoch: Int32 = -1,
        maxWaitMs: Int32 = 0,
        on connection: KafkaClientConnection
    ) async throws -> FetchResponse.PartitionData {
        var request = FetchRequest(
            maxWaitMs: maxWaitMs,
            minBytes: maxWaitMs > 0 ? 1 : 0,
            maxBytes: 1 << 20,
            topics: [
                .init(
                    topic: Self.topic,
                    partitions: [
                        .init(
                            partition: 0,
                            currentLeaderEpoch: currentLeaderEpoch,
                            fetchOffset: offset,
                            lastFetchedEpoch: lastFetchedEpoch,
                            partitionMaxBytes: 1 << 20
                        )
                    ]
                )
            ]
        )
        request.replicaID = replicaID
        let response = try await connection.send(request, version: 12)
        return try #require(response.responses.first?.partitions.first)
    }

    /// Sets the partition's ISR (and bumps its partition epoch) as the controller would commit an AlterPartition,
    /// and waits until the broker applied it.
    static func setISR(_ isr: [Int32], on broker: Broker, _ manager: ReplicaManager) async throws {
        let controller = try #require(broker.controller.activeController)
        _ = try await controller.perform { image, _ throws(ClusterControlError) in
            var next = image
            next.topics[Self.topic]?.partitions[0].isr = isr
            next.topics[Self.topic]?.partitions[0].partitionEpoch += 1
            return ControllerResult(from: image, to: next, answer: ())
        }
        #expect(try await Self.eventually { manager.partition(Self.topicPartition)?.leaderState?.isr == isr })
    }

    @Test func theHighWatermarkAndWhatConsumersSeeFollowTheFollowersFetchOffset() async throws {
        try await Self.withPartition { _, port, manager in
            try await Self.connect(port) { connection in
                let produced = try await Self.produce(["a", "b", "c"], acks: 1, on: connection)
                #expect(produced.errorCode == 0)
                #expect(produced.baseOffset == 0)
                // The follower has not fetched: nothing is committed, a consumer sees nothing.
                let before = try await Self.fetch(at: 0, on: connection)
                #expect(before.errorCode == 0)
                #expect(before.highWatermark == 0)
                #expect(try ProduceFetchTests.decode(before.records).values.isEmpty)
                // Past the high watermark but within the log (a consumer of an earlier leader): empty, no error.
                let ahead = try await Self.fetch(at: 2, on: connection)
                #expect(ahead.errorCode == 0)
                #expect(try ProduceFetchTests.decode(ahead.records).values.isEmpty)
                // The follower reads past the high watermark, up to the log end; at offset 0 it holds nothing yet.
                let copied = try await Self.fetch(at: 0, replicaID: 2, on: connection)
                #expect(copied.errorCode == 0)
                #expect(try ProduceFetchTests.decode(copied.records).values == ["a", "b", "c"])
                #expect(copied.highWatermark == 0)
                // Its next fetch, at 3, says it has all three.
                let caughtUp = try await Self.fetch(at: 3, replicaID: 2, on: connection)
                #expect(caughtUp.errorCode == 0)
                #expect(caughtUp.highWatermark == 3)
                #expect(manager.partition(Self.topicPartition)?.highWatermark == 3)
                let after = try await Self.fetch(at: 0, on: connection)
                #expect(after.highWatermark == 3)
                #expect(try ProduceFetchTests.decode(after.records).values == ["a", "b", "c"])
            }
        }
    }

    @Test func parkedFetchesWakeAConsumerWhenTheHighWatermarkMovesAndAFollowerWhenRecordsArrive() async throws {
        try await Self.withPartition { _, port, manager in
            try await Self.connect(port) { connection in
                _ = try await Self.produce(["a", "b"], acks: 1, on: connection)
            }
            // A consumer waits at offset 0 for records: two are appended but none is committed.
            let consumer = Task {
                try await Self.connect(port) { connection in
                    try await Self.fetch(at: 0, maxWaitMs: 60_000, on: connection)
                }
            }
            #expect(try await Self.eventually { manager.delayedFetches.parkedCount == 1 })
            let clock = ContinuousClock()
            let moved = clock.now
            try await Self.connect(port) { follower in
                _ = try await Self.fetch(at: 2, replicaID: 2, on: follower)
            }
            let woken = try await consumer.value
            #expect(clock.now - moved < .seconds(30))
            #expect(woken.highWatermark == 2)
            #expect(try ProduceFetchTests.decode(woken.records).values == ["a", "b"])

            // A follower at the log end waits for the next append, and gets it past the high watermark.
            let follower = Task {
                try await Self.connect(port) { connection in
                    try await Self.fetch(at: 2, replicaID: 2, maxWaitMs: 60_000, on: connection)
                }
            }
            #expect(try await Self.eventually { manager.delayedFetches.parkedCount == 1 })
            try await Self.connect(port) { connection in
                _ = try await Self.produce(["c"], acks: 1, on: connection)
            }
            let copied = try await follower.value
            #expect(try ProduceFetchTests.decode(copied.records).values == ["c"])
            #expect(copied.highWatermark == 2)
        }
    }

    @Test func acksAllIsAnsweredOnlyOnceTheFollowerFetchedPastTheAppendAndTimesOutOtherwise() async throws {
        try await Self.withPartition { _, port, manager in
            let waiting = Task {
                try await Self.connect(port) { connection in
                    try await Self.produce(["x", "y"], acks: -1, on: connection)
                }
            }
            #expect(try await Self.eventually { manager.delayedProduces.parkedCount == 1 })
            try await Self.connect(port) { follower in
                // A fetch that does not reach the end of the append leaves the produce waiting.
                _ = try await Self.fetch(at: 0, replicaID: 2, on: follower)
                _ = try await Self.fetch(at: 1, replicaID: 2, on: follower)
                #expect(manager.delayedProduces.parkedCount == 1)
                _ = try await Self.fetch(at: 2, replicaID: 2, on: follower)
            }
            let answered = try await waiting.value
            #expect(answered.errorCode == 0)
            #expect(answered.baseOffset == 0)

            // Without the follower, acks=all times out after the request's timeout; the records stay appended.
            try await Self.connect(port) { connection in
                let clock = ContinuousClock()
                let started = clock.now
                let timedOut = try await Self.produce(["z"], acks: -1, timeoutMs: 300, on: connection)
                #expect(timedOut.errorCode == ErrorCode.requestTimedOut.rawValue)
                #expect(clock.now - started >= .milliseconds(300))
                #expect(manager.partition(Self.topicPartition)?.logEndOffset == 3)
                #expect(manager.partition(Self.topicPartition)?.highWatermark == 2)
                // acks=1 answers after the leader's append, whatever the follower does.
                let leaderOnly = try await Self.produce(["w"], acks: 1, on: connection)
                #expect(leaderOnly.errorCode == 0)
                #expect(leaderOnly.baseOffset == 3)
            }
        }
    }

    @Test func acksAllIsRefusedWhenTheISRIsSmallerThanMinInsyncReplicas() async throws {
        try await Self.withPartition(configs: ["min.insync.replicas": "2"]) { broker, port, manager in
            try await Self.setISR([1], on: broker, manager)
            try await Self.connect(port) { connection in
                let refused = try await Self.produce(["a"], acks: -1, on: connection)
                #expect(refused.errorCode == ErrorCode.notEnoughReplicas.rawValue)
                #expect(manager.partition(Self.topicPartition)?.logEndOffset == 0)
                // acks=1 is not held to the minimum.
                let accepted = try await Self.produce(["b"], acks: 1, on: connection)
                #expect(accepted.errorCode == 0)
                // With the ISR alone, the high watermark is the leader's log end.
                #expect(manager.partition(Self.topicPartition)?.highWatermark == 1)
            }
        }
    }

    @Test func anISRThatShrinksWhileAnAcksAllProduceWaitsAnswersNotEnoughReplicasAfterAppend() async throws {
        try await Self.withPartition(configs: ["min.insync.replicas": "2"]) { broker, port, manager in
            let waiting = Task {
                try await Self.connect(port) { connection in
                    try await Self.produce(["x"], acks: -1, on: connection)
                }
            }
            #expect(try await Self.eventually { manager.delayedProduces.parkedCount == 1 })
            try await Self.setISR([1], on: broker, manager)
            let answered = try await waiting.value
            #expect(answered.errorCode == ErrorCode.notEnoughReplicasAfterAppend.rawValue)
        }
    }

    @Test func aFollowerRefusesClientsWithNotLeaderOrFollowerAndTheCurrentLeader() async throws {
        try await Self.withPartition(replicas: [2, 1]) { broker, port, manager in
            let leaderEpoch = try #require(await broker.controller.follower.image?.topics[Self.topic]?.partitions[0])
                .leaderEpoch
            #expect(manager.partition(Self.topicPartition)?.leaderEpoch == leaderEpoch)
            try await Self.connect(port) { connection in
                // Produce v11 names the leader and its endpoint on this listener (KIP-951).
                let request = ProduceRequest(
                    acks: 1,
                    timeoutMs: 30_000,
                    topicData: [
                        .init(
                            name: Self.topic,
                            partitionData: [.init(index: 0, records: try ProduceFetchTests.batch(["a"]))]
                        )
                    ]
                )
                let response = try await connection.send(request, version: 11)
                let partition = try #require(response.responses.first?.partitionResponses.first)
                #expect(partition.errorCode == ErrorCode.notLeaderOrFollower.rawValue)
                #expect(partition.currentLeader == .init(leaderID: 2, leaderEpoch: leaderEpoch))
                #expect(response.nodeEndpoints == [.init(nodeID: 2, host: "127.0.0.1", port: 19092, rack: "r2")])
                // Before v10 the error alone.
                let old = try await connection.send(request, version: 9)
                #expect(
                    old.responses.first?.partitionResponses.first?.errorCode == ErrorCode.notLeaderOrFollower.rawValue
                )
                // Fetch v12 is refused too (Kafka sends the hint in Fetch from v16 only).
                let fetched = try await Self.fetch(at: 0, on: connection)
                #expect(fetched.errorCode == ErrorCode.notLeaderOrFollower.rawValue)
                #expect(fetched.currentLeader == .init())
            }
            #expect(manager.partition(Self.topicPartition)?.logEndOffset == 0)
        }
    }

    @Test func aFetchFromABrokerThatIsNotAReplicaIsRefusedAndChangesNothing() async throws {
        try await Self.withPartition { broker, port, manager in
            let controller = try #require(broker.controller.activeController)
            _ = try await controller.registerBroker(
                BrokerRegistration(
                    nodeID: 3,
                    endpoints: [BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: 19093)]
                )
            )
            let leaderEpoch = try #require(manager.partition(Self.topicPartition)).leaderEpoch
            try await Self.connect(port) { connection in
                _ = try await Self.produce(["a", "b"], acks: 1, on: connection)
                let stateBefore = manager.partition(Self.topicPartition)?.leaderState
                // Kafka's `followerReplicaOrThrow`: without a leader epoch NOT_LEADER_OR_FOLLOWER, with the current
                // one UNKNOWN_LEADER_EPOCH.
                let withoutEpoch = try await Self.fetch(at: 2, replicaID: 3, on: connection)
                #expect(withoutEpoch.errorCode == ErrorCode.notLeaderOrFollower.rawValue)
                #expect(withoutEpoch.records == nil || withoutEpoch.records?.readableBytes == 0)
                let withEpoch = try await Self.fetch(
                    at: 2,
                    replicaID: 3,
                    currentLeaderEpoch: leaderEpoch,
                    on: connection
                )
                #expect(withEpoch.errorCode == ErrorCode.unknownLeaderEpoch.rawValue)
                #expect(manager.partition(Self.topicPartition)?.leaderState == stateBefore)
                #expect(manager.partition(Self.topicPartition)?.highWatermark == 0)
            }
        }
    }

    @Test func aFollowerWhoseLastFetchedEpochEndsEarlierHereIsToldWhereItDiverges() async throws {
        try await Self.withPartition { broker, port, manager in
            let firstEpoch = try #require(manager.partition(Self.topicPartition)).leaderEpoch
            try await Self.connect(port) { connection in
                _ = try await Self.produce(["a", "b", "c"], acks: 1, on: connection)
                // A new leader epoch on the same leader (as after a re-election), then two more records.
                let controller = try #require(broker.controller.activeController)
                _ = try await controller.perform { image, _ throws(ClusterControlError) in
                    var next = image
                    next.topics[Self.topic]?.partitions[0].leaderEpoch += 1
                    next.topics[Self.topic]?.partitions[0].partitionEpoch += 1
                    return ControllerResult(from: image, to: next, answer: ())
                }
                #expect(
                    try await Self.eventually { manager.partition(Self.topicPartition)?.leaderEpoch == firstEpoch + 1 }
                )
                _ = try await Self.produce(["d", "e"], acks: 1, on: connection)
                // The follower holds offsets 0-3, offset 3 from the first epoch (a tail the leader never had):
                // epoch `firstEpoch` ends at 3 here, below its fetch offset 4.
                let diverging = try await Self.fetch(at: 4, replicaID: 2, lastFetchedEpoch: firstEpoch, on: connection)
                #expect(diverging.errorCode == 0)
                #expect(diverging.divergingEpoch == .init(epoch: firstEpoch, endOffset: 3))
                #expect(diverging.records == nil || diverging.records?.readableBytes == 0)
                // Nothing recorded: the follower's log end is still unknown.
                #expect(manager.partition(Self.topicPartition)?.leaderState?.followers[2]?.logEndOffset == -1)
                // A follower that agrees reads on.
                let agreeing = try await Self.fetch(at: 3, replicaID: 2, lastFetchedEpoch: firstEpoch, on: connection)
                #expect(agreeing.errorCode == 0)
                #expect(agreeing.divergingEpoch == .init())
                #expect(try ProduceFetchTests.decode(agreeing.records).values == ["d", "e"])
                #expect(manager.partition(Self.topicPartition)?.leaderState?.followers[2]?.logEndOffset == 3)
            }
        }
    }
}
