import ClusterControl
import Foundation
import KafkaMessages
import KafkaNIO
import KafkaRecords
import KafkaWire
import NIOCore
import Replication
import SystemPackage
import Testing

@testable import LogBrokerServer
@testable import LogStorage

/// The followers' fetchers against a real leader: node 1, a broker in this process written to over the wire, whose
/// controller has broker 2 registered and the test topic's partitions placed on [1, 2]; broker 2 is played by a
/// `ReplicaFetcherManager` following those partitions into a `LogManager` of its own. What a user of replication
/// checks: the follower's segment files hold the leader's batches byte for byte, its high watermark and producer
/// state follow, a divergent tail is cut by leader epoch, `unfollow` stops the appends, and the fetcher rides out a
/// silent leader and backs off from a dead one.
@Suite(.timeLimit(.minutes(3))) struct ReplicaFetcherTests {
    static let topic = "replicated"

    /// The leader: the broker, its client port and log directory.
    struct Leader: Sendable {
        let broker: Broker
        let port: Int
        let logDirectory: URL

        /// Sets the ISR of every partition of the test topic as the controller would commit an AlterPartition (the
        /// standalone broker sends none), and waits until the broker applied it: with the ISR the leader alone, its
        /// high watermark is its log end.
        func setISR(_ isr: [Int32]) async throws {
            let controller = try #require(self.broker.controller.activeController)
            _ = try await controller.perform { image, _ throws(ClusterControlError) in
                var next = image
                for index in next.topics[ReplicaFetcherTests.topic]?.partitions.indices ?? 0..<0 {
                    next.topics[ReplicaFetcherTests.topic]?.partitions[index].isr = isr
                    next.topics[ReplicaFetcherTests.topic]?.partitions[index].partitionEpoch += 1
                }
                return ControllerResult(from: image, to: next, answer: ())
            }
            let replicas = try #require(self.broker.storage?.replicas)
            try await ReplicaFetcherTests.waitUntil("the broker applies the ISR \(isr)") {
                replicas.partition(TopicPartition(ReplicaFetcherTests.topic, 0))?.leaderState?.isr == isr
            }
        }
    }

    /// Runs `body` with node 1 in-process, broker 2 registered with its controller (in-process registrations are
    /// never fenced), so the test topic can be placed on [1, 2] and node 1 serves broker 2's replica fetches.
    static func withLeader(_ body: @Sendable (Leader) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("leader-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withInProcessBroker(logDirectory: directory.path) { broker in
            let controller = try #require(broker.controller.activeController)
            _ = try await controller.registerBroker(
                BrokerRegistration(
                    nodeID: 2,
                    endpoints: [BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: 19092)]
                )
            )
            let port = try #require(broker.localAddresses.first?.port)
            try await body(Leader(broker: broker, port: port, logDirectory: directory))
        }
    }

    /// The follower: a log manager on a temporary directory, and the fetchers.
    final class Follower {
        let directory: URL
        let pool = DiskIOPool(threadCount: 2)
        let logManager: LogManager
        let fetchers: ReplicaFetcherManager

        let logConfig: LogConfig

        init(
            configuration: ReplicaFetcherConfiguration = ReplicaFetcherConfiguration(brokerID: 2),
            logConfig: LogConfig = LogConfig()
        ) throws {
            self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("follower-\(UUID())")
            try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
            self.logConfig = logConfig
            self.logManager = try LogManager(
                config: LogManagerConfig(
                    logDirectories: [FilePath(self.directory.path)],
                    topicConfig: { _ in logConfig }
                ),
                ioPool: self.pool
            )
            self.fetchers = ReplicaFetcherManager(configuration: configuration, ioPool: self.pool)
        }

        func log(_ partition: Int32) throws -> ManagedLog {
            try self.logManager.getOrCreateLog(
                topic: ReplicaFetcherTests.topic,
                partition: partition,
                config: self.logConfig
            )
        }

        func close() async {
            await self.fetchers.shutdown()
            try? self.logManager.shutdown()
            self.pool.shutdown()
            try? FileManager.default.removeItem(at: self.directory)
        }
    }

    /// The leader's view of a partition: topic id and leader epoch from Metadata v12.
    static func leadership(on connection: KafkaClientConnection, partitions: Int32)
        async throws -> (topicID: KafkaUUID, epochs: [Int32])
    {
        let metadata = try await connection.send(
            MetadataRequest(topics: [.init(name: Self.topic)], allowAutoTopicCreation: false),
            version: 12
        )
        let topic = try #require(metadata.topics.first)
        let epochs = (0..<partitions).map { index in
            topic.partitions.first { $0.partitionIndex == index }?.leaderEpoch ?? -1
        }
        return (topic.topicID, epochs)
    }

    static func createTopic(on connection: KafkaClientConnection, partitions: Int32) async throws {
        let response = try await connection.send(
            CreateTopicsRequest(
                topics: [
                    .init(
                        name: Self.topic,
                        numPartitions: -1,
                        replicationFactor: -1,
                        assignments: (0..<partitions).map { .init(partitionIndex: $0, brokerIDs: [1, 2]) }
                    )
                ]
            ),
            version: 7
        )
        #expect(response.topics.first?.errorCode == 0)
    }

    /// Produces `records` to `partition` with acks=1 (acks=all would wait for the follower); returns the base
    /// offset.
    @discardableResult
    static func produce(_ records: ByteBuffer, to partition: Int32, on connection: KafkaClientConnection)
        async throws -> Int64
    {
        let response = try await connection.send(
            ProduceRequest(
                acks: 1,
                timeoutMs: 30_000,
                topicData: [.init(name: Self.topic, partitionData: [.init(index: partition, records: records)])]
            ),
            version: 9
        )
        let answer = try #require(response.responses.first?.partitionResponses.first)
        #expect(answer.errorCode == 0)
        return answer.baseOffset
    }

    /// One batch of `count` numbered records ("record-N"), compressed with `codec`, optionally idempotent.
    static func batch(
        from first: Int,
        count: Int,
        codec: CompressionCodec = .none,
        producer: (id: Int64, sequence: Int32)? = nil
    ) throws -> ByteBuffer {
        var builder = RecordBatchBuilder(
            codec: codec,
            producerID: producer?.id ?? -1,
            producerEpoch: producer == nil ? -1 : 0,
            baseSequence: producer?.sequence ?? -1
        )
        for number in first..<(first + count) {
            builder.append(
                timestamp: Int64(Date().timeIntervalSince1970 * 1000),
                key: ByteBuffer(string: "key-\(number % 7)"),
                value: ByteBuffer(string: "record-\(number)")
            )
        }
        return try builder.build().buffer
    }

    /// The batches in a partition directory's `.log` files, in offset order, each as its bytes.
    static func batches(in directory: URL) throws -> [[UInt8]] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".log") }
            .sorted()
        var batches: [[UInt8]] = []
        for name in names {
            let data = try Data(contentsOf: directory.appendingPathComponent(name))
            var splitter = RecordBatchSplitter(ByteBuffer(bytes: data))
            while let batch = try splitter.next() { batches.append(Array(batch.buffer.readableBytesView)) }
        }
        return batches
    }

    static func leaderDirectory(_ broker: Leader, _ partition: Int32) -> URL {
        broker.logDirectory.appendingPathComponent("\(Self.topic)-\(partition)")
    }

    static func followerDirectory(_ follower: Follower, _ partition: Int32) -> URL {
        follower.directory.appendingPathComponent("\(Self.topic)-\(partition)")
    }

    /// Polls `condition` every 20 ms until it holds; fails the test (with `what`) after `timeout`.
    static func waitUntil(
        _ what: String,
        timeout: Duration = .seconds(30),
        _ condition: () throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while try !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting until \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    static func leaderEndOffset(_ partition: Int32, on connection: KafkaClientConnection) async throws -> Int64 {
        let response = try await connection.send(
            ListOffsetsRequest(
                // As a debugging replica (-2): the log end, not the high watermark a consumer is told.
                replicaID: -2,
                topics: [.init(name: Self.topic, partitions: [.init(partitionIndex: partition, timestamp: -1)])]
            ),
            version: 7
        )
        return try #require(response.topics.first?.partitions.first?.offset)
    }

    /// Waits until the follower's log of `partition` ends where the leader's does, then checks that it holds the
    /// leader's batches byte for byte and that its high watermark is the leader's.
    static func expectCaughtUp(
        _ follower: Follower,
        _ broker: Leader,
        partition: Int32,
        on connection: KafkaClientConnection
    ) async throws {
        let end = try await Self.leaderEndOffset(partition, on: connection)
        let log = try follower.log(partition)
        try await Self.waitUntil("the follower of \(partition) reaches \(end)") {
            log.logEndOffset == end && log.highWatermark == end
        }
        let leaderBatches = try Self.batches(in: Self.leaderDirectory(broker, partition))
        let followerBatches = try Self.batches(in: Self.followerDirectory(follower, partition))
        #expect(followerBatches.count == leaderBatches.count)
        #expect(followerBatches == leaderBatches, "the follower's batches differ from the leader's")
    }

    // MARK: Tests

    @Test func aFollowerHoldsTheLeadersBatchesByteForByteAndKeepsItsProducerState() async throws {
        try await Self.withLeader { broker in
            let follower = try Follower(configuration: ReplicaFetcherConfiguration(brokerID: 2, fetchersPerLeader: 2))
            do {
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                    try await Self.createTopic(on: connection, partitions: 3)
                    // Plain batches, gzip batches and an idempotent producer's batches, before following.
                    var number = 0
                    for partition: Int32 in 0..<3 {
                        for round in 0..<4 {
                            let codec: CompressionCodec = round % 2 == 0 ? .none : .gzip
                            try await Self.produce(
                                Self.batch(from: number, count: 5 + round, codec: codec),
                                to: partition,
                                on: connection
                            )
                            number += 5 + round
                        }
                    }
                    let producerID = try await connection.send(InitProducerIdRequest(transactionalID: nil), version: 4)
                        .producerID
                    var idempotent: [ByteBuffer] = []
                    for sequence in stride(from: Int32(0), to: 12, by: 4) {
                        let batch = try Self.batch(
                            from: number,
                            count: 4,
                            codec: .gzip,
                            producer: (producerID, sequence)
                        )
                        idempotent.append(batch)
                        try await Self.produce(batch, to: 0, on: connection)
                        number += 4
                    }

                    let (topicID, epochs) = try await Self.leadership(on: connection, partitions: 3)
                    let leader = LeaderEndpoint(nodeID: 1, host: "127.0.0.1", port: broker.port)
                    await follower.fetchers.follow(
                        try (0..<3).map { partition in
                            FollowedPartition(
                                topicPartition: TopicPartition(Self.topic, partition),
                                topicID: topicID,
                                leaderEpoch: epochs[Int(partition)],
                                log: try follower.log(partition)
                            )
                        },
                        from: leader
                    )
                    // Kafka's hash puts the three partitions on both fetchers.
                    let ids = Set(
                        (0..<3).map { replicaFetcherID(for: TopicPartition(Self.topic, $0), fetchersPerLeader: 2) }
                    )
                    #expect(follower.fetchers.fetcherCount == ids.count)
                    for partition: Int32 in 0..<3 {
                        try await Self.expectCaughtUp(follower, broker, partition: partition, on: connection)
                    }

                    // Records produced while following arrive too (the fetchers long-poll).
                    for partition: Int32 in 0..<3 {
                        try await Self.produce(
                            Self.batch(from: number, count: 3, codec: .gzip),
                            to: partition,
                            on: connection
                        )
                        number += 3
                    }
                    for partition: Int32 in 0..<3 {
                        try await Self.expectCaughtUp(follower, broker, partition: partition, on: connection)
                    }

                    // The fetchers' sessions carried the later fetches.
                    #expect(follower.fetchers.statistics.incrementalFetches > 0)
                    #expect(follower.fetchers.statistics.incrementalFetches < follower.fetchers.statistics.fetches)

                    // Becoming leader, the follower deduplicates the producer's retry of its last batch as the
                    // leader did, and takes its next sequence.
                    await follower.fetchers.unfollow((0..<3).map { TopicPartition(Self.topic, $0) })
                    let log = try follower.log(0)
                    let producer = try #require(
                        try log.withLog { (partitionLog) throws(StorageError) in partitionLog.producerStates[producerID]
                        }
                    )
                    #expect(producer.lastSequence == 11)
                    let end = log.logEndOffset
                    let retry = try log.appendAsLeader(idempotent[2], leaderEpoch: epochs[0] + 1)
                    #expect(retry.isDuplicate)
                    #expect(log.logEndOffset == end)
                    let next = try Self.batch(from: number, count: 2, producer: (producerID, 12))
                    let appended = try log.appendAsLeader(next, leaderEpoch: epochs[0] + 1)
                    #expect(!appended.isDuplicate && appended.firstOffset == end)
                    let gap = try Self.batch(from: number, count: 2, producer: (producerID, 20))
                    #expect(throws: StorageError.self) { try log.appendAsLeader(gap, leaderEpoch: epochs[0] + 1) }
                }
            } catch {
                await follower.close()
                throw error
            }
            await follower.close()
        }
    }

    @Test func aTailAtAnEpochTheLeaderNeverHadIsCutByLeaderEpochBeforeFetching() async throws {
        try await Self.withLeader { broker in
            let follower = try Follower()
            do {
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                    try await Self.createTopic(on: connection, partitions: 1)
                    for round in 0..<3 {
                        try await Self.produce(Self.batch(from: round * 10, count: 10), to: 0, on: connection)
                    }
                    let (topicID, epochs) = try await Self.leadership(on: connection, partitions: 1)
                    let leader = LeaderEndpoint(nodeID: 1, host: "127.0.0.1", port: broker.port)
                    let log = try follower.log(0)
                    let followed = FollowedPartition(
                        topicPartition: TopicPartition(Self.topic, 0),
                        topicID: topicID,
                        leaderEpoch: epochs[0],
                        log: log
                    )
                    await follower.fetchers.follow([followed], from: leader)
                    try await Self.expectCaughtUp(follower, broker, partition: 0, on: connection)
                    await follower.fetchers.unfollow([followed.topicPartition])

                    // As if this broker had led at a later epoch and written a tail nobody copied; its high
                    // watermark is back at 0 (as after a restart without a checkpoint), so only the epochs say
                    // where the logs agree.
                    for round in 0..<2 {
                        _ = try log.appendAsLeader(Self.batch(from: 100 + round, count: 4), leaderEpoch: epochs[0] + 5)
                    }
                    log.highWatermark = 0
                    #expect(log.logEndOffset == 38)
                    // Meanwhile the leader went on in its own epoch.
                    try await Self.produce(Self.batch(from: 30, count: 6, codec: .gzip), to: 0, on: connection)

                    await follower.fetchers.follow([followed], from: leader)
                    try await Self.expectCaughtUp(follower, broker, partition: 0, on: connection)
                    #expect(
                        follower.fetchers.statistics.truncations(followed.topicPartition)
                            == [ReplicaFetcherStatistics.Truncation(from: 38, to: 30)]
                    )
                }
            } catch {
                await follower.close()
                throw error
            }
            await follower.close()
        }
    }

    @Test func aFollowerBelowTheLeadersLogStartStartsThere() async throws {
        try await Self.withLeader { broker in
            let follower = try Follower()
            do {
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                    try await Self.createTopic(on: connection, partitions: 1)
                    for round in 0..<10 {
                        try await Self.produce(Self.batch(from: round * 10, count: 10), to: 0, on: connection)
                    }
                    // DeleteRecords moves the leader's log start into the batch at 50 (below the high watermark,
                    // which the follower, out of the ISR meanwhile, does not hold back).
                    try await broker.setISR([1])
                    let deleted = try await connection.send(
                        DeleteRecordsRequest(
                            topics: [.init(name: Self.topic, partitions: [.init(partitionIndex: 0, offset: 55)])],
                            timeoutMs: 10_000
                        ),
                        version: 2
                    )
                    #expect(deleted.topics.first?.partitions.first?.lowWatermark == 55)
                    let (topicID, epochs) = try await Self.leadership(on: connection, partitions: 1)
                    let log = try follower.log(0)
                    // An empty follower fetching from 0 gets OFFSET_OUT_OF_RANGE, starts its log at the leader's log
                    // start, and takes the batch that holds it whole, as Kafka's follower does.
                    await follower.fetchers.follow(
                        [
                            FollowedPartition(
                                topicPartition: TopicPartition(Self.topic, 0),
                                topicID: topicID,
                                leaderEpoch: epochs[0],
                                log: log
                            )
                        ],
                        from: LeaderEndpoint(nodeID: 1, host: "127.0.0.1", port: broker.port)
                    )
                    try await Self.waitUntil("the follower reaches 100 with its log start at 55") {
                        log.logEndOffset == 100 && log.highWatermark == 100 && log.logStartOffset == 55
                    }
                    let leaderBatches = try Self.batches(in: Self.leaderDirectory(broker, 0))
                    #expect(try Self.batches(in: Self.followerDirectory(follower, 0)) == Array(leaderBatches.suffix(5)))
                }
            } catch {
                await follower.close()
                throw error
            }
            await follower.close()
        }
    }

    @Test func unfollowReturnsOnlyWhenNoMoreAppendsHappen() async throws {
        try await Self.withLeader { broker in
            let follower = try Follower()
            do {
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                    try await Self.createTopic(on: connection, partitions: 2)
                    let (topicID, epochs) = try await Self.leadership(on: connection, partitions: 2)
                    let leader = LeaderEndpoint(nodeID: 1, host: "127.0.0.1", port: broker.port)
                    let followed = try (0..<2).map { partition in
                        FollowedPartition(
                            topicPartition: TopicPartition(Self.topic, partition),
                            topicID: topicID,
                            leaderEpoch: epochs[Int(partition)],
                            log: try follower.log(partition)
                        )
                    }
                    await follower.fetchers.follow(followed, from: leader)
                    // Unfollow partition 0 while batches stream in: once it returns, its log end stays put and this
                    // broker can append as its leader.
                    for round in 0..<20 {
                        try await Self.produce(Self.batch(from: round * 5, count: 5), to: 0, on: connection)
                        try await Self.produce(Self.batch(from: round * 5, count: 5), to: 1, on: connection)
                    }
                    await follower.fetchers.unfollow([followed[0].topicPartition])
                    let log = try follower.log(0)
                    let end = log.logEndOffset
                    let appended = try log.appendAsLeader(Self.batch(from: 0, count: 3), leaderEpoch: epochs[0] + 1)
                    #expect(appended.firstOffset == end)
                    #expect(follower.fetchers.followedPartitions.keys.sorted() == [followed[1].topicPartition])
                    // More records on both: partition 1, fetched by the same fetcher, gets them; 0 does not.
                    for round in 20..<25 {
                        try await Self.produce(Self.batch(from: round * 5, count: 5), to: 0, on: connection)
                        try await Self.produce(Self.batch(from: round * 5, count: 5), to: 1, on: connection)
                    }
                    try await Self.expectCaughtUp(follower, broker, partition: 1, on: connection)
                    #expect(log.logEndOffset == end + 3)
                    // Its last partition gone, the fetcher stops.
                    await follower.fetchers.unfollow([followed[1].topicPartition])
                    #expect(follower.fetchers.fetcherCount == 0)
                }
            } catch {
                await follower.close()
                throw error
            }
            await follower.close()
        }
    }

    /// A partition the leader refuses (here UNKNOWN_LEADER_EPOCH: the follower was told an epoch the leader has not
    /// reached) pauses for the back-off; following it again at another epoch resumes it at once.
    @Test func aRefusedPartitionPausesUntilFollowedAtAnotherEpoch() async throws {
        try await Self.withLeader { broker in
            let follower = try Follower(configuration: ReplicaFetcherConfiguration(brokerID: 2, fetchBackoffMs: 60_000))
            do {
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                    try await Self.createTopic(on: connection, partitions: 1)
                    try await Self.produce(Self.batch(from: 0, count: 10, codec: .gzip), to: 0, on: connection)
                    let (topicID, epochs) = try await Self.leadership(on: connection, partitions: 1)
                    let partition = TopicPartition(Self.topic, 0)
                    let leader = LeaderEndpoint(nodeID: 1, host: "127.0.0.1", port: broker.port)
                    let log = try follower.log(0)
                    func followed(at epoch: Int32) -> FollowedPartition {
                        FollowedPartition(topicPartition: partition, topicID: topicID, leaderEpoch: epoch, log: log)
                    }
                    await follower.fetchers.follow([followed(at: epochs[0] + 1)], from: leader)
                    try await Self.waitUntil("the refused partition pauses") { follower.fetchers.isPaused(partition) }
                    #expect(log.logEndOffset == 0)
                    // Well within the minute of back-off.
                    await follower.fetchers.follow([followed(at: epochs[0])], from: leader)
                    #expect(!follower.fetchers.isPaused(partition))
                    try await Self.expectCaughtUp(follower, broker, partition: 0, on: connection)
                }
            } catch {
                await follower.close()
                throw error
            }
            await follower.close()
        }
    }

    /// A disk failure in one follower's log (EIO opening the segment a roll needs, injected for its directory)
    /// takes that log offline and stops fetching it; the other partition on the same fetcher goes on.
    @Test func aDiskFailureTakesOnlyThatPartitionOffline() async throws {
        try await Self.withLeader { broker in
            var logConfig = LogConfig()
            logConfig.segmentBytes = 2048
            let follower = try Follower(logConfig: logConfig)
            let failing = FilePath(Self.followerDirectory(follower, 0).path)
            defer { FileIO.injectOpenFault(under: failing, nil) }
            do {
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                    try await Self.createTopic(on: connection, partitions: 2)
                    let (topicID, epochs) = try await Self.leadership(on: connection, partitions: 2)
                    let logs = try (0..<2).map { try follower.log(Int32($0)) }
                    await follower.fetchers.follow(
                        (0..<2).map { partition in
                            FollowedPartition(
                                topicPartition: TopicPartition(Self.topic, Int32(partition)),
                                topicID: topicID,
                                leaderEpoch: epochs[partition],
                                log: logs[partition]
                            )
                        },
                        from: LeaderEndpoint(nodeID: 1, host: "127.0.0.1", port: broker.port)
                    )
                    try await Self.produce(Self.batch(from: 0, count: 5), to: 0, on: connection)
                    try await Self.waitUntil("partition 0 copies its first batch") { logs[0].logEndOffset == 5 }
                    FileIO.injectOpenFault(under: failing, .ioError)
                    // Enough for several segments of 2 KiB on each partition.
                    for round in 0..<20 {
                        try await Self.produce(Self.batch(from: round * 10, count: 10), to: 0, on: connection)
                        try await Self.produce(Self.batch(from: round * 10, count: 10), to: 1, on: connection)
                    }
                    try await Self.waitUntil("partition 0's log goes offline and out of fetching") {
                        logs[0].isOffline && follower.fetchers.isPaused(TopicPartition(Self.topic, 0))
                    }
                    #expect(follower.fetchers.statistics.failedPartitions == [TopicPartition(Self.topic, 0)])
                    try await Self.expectCaughtUp(follower, broker, partition: 1, on: connection)
                    #expect(logs[0].logEndOffset < 205)
                }
            } catch {
                await follower.close()
                throw error
            }
            await follower.close()
        }
    }

    /// A leader whose socket accepts and never answers (a paused process, a half-dead peer), then none at all.
    @Test func theFetcherGivesUpOnASilentLeaderAndBacksOffFromADeadOne() async throws {
        let backoffMs: Int64 = 200
        let follower = try Follower(
            configuration: ReplicaFetcherConfiguration(
                brokerID: 2,
                fetchWaitMaxMs: 200,
                fetchBackoffMs: backoffMs,
                socketTimeoutMs: 1000
            )
        )
        // Listening, never accepting: the kernel completes the connections, nothing ever answers on them.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(listener, socketAddress, length) == 0 && listen(listener, 16) == 0
                    && getsockname(listener, socketAddress, &length) == 0
            }
        }
        try #require(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        do {
            await follower.fetchers.follow(
                [
                    FollowedPartition(
                        topicPartition: TopicPartition(Self.topic, 0),
                        topicID: KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 1),
                        leaderEpoch: 0,
                        log: try follower.log(0)
                    )
                ],
                from: LeaderEndpoint(nodeID: 1, host: "127.0.0.1", port: port)
            )
            // Silent: the fetcher gives up on each connection after the socket timeout and tries again.
            try await Self.waitUntil("the fetcher gives up on the silent leader twice", timeout: .seconds(20)) {
                follower.fetchers.statistics.connectionAttempts >= 3
            }

            // Dead: every reconnect is refused at once; the fetcher waits the back-off between attempts.
            close(listener)
            let closedAt = ContinuousClock.now
            let attemptsAtClose = follower.fetchers.statistics.connectionAttempts
            try await Self.waitUntil("the fetcher retries five times", timeout: .seconds(20)) {
                follower.fetchers.statistics.connectionAttempts >= attemptsAtClose + 5
            }
            let elapsed = ContinuousClock.now - closedAt
            #expect(elapsed >= .milliseconds(4 * backoffMs), "5 reconnects in \(elapsed): no back-off")
            #expect(try follower.log(0).logEndOffset == 0)
        } catch {
            close(listener)
            await follower.close()
            throw error
        }
        await follower.close()
    }
}

@available(*, unavailable)
extension ReplicaFetcherTests.Follower: Sendable {}
