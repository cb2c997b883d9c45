import Foundation
import KafkaRecords
import KafkaWire
import LogBrokerClient
import NIOCore
import NIOPosix
import Testing

/// The client library (`LogBrokerClient`) against the real `logbroker-server`: Kafka's partitioner, every codec
/// through the producer and the consumer, idempotence across a broker crash, and `buffer.memory` under a stalled
/// broker. (In this target to share `BrokerProcess`.)
@Suite(.timeLimit(.minutes(3))) struct ClientLibraryTests {
    @Test func keysLandWhereKafkaPythonPutsThem() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/murmur2-kafka-python.txt")
        let lines = try String(contentsOf: fixture, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: true)
        #expect(lines.count > 700)
        for line in lines {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            let hex = Array(fields[0].utf8)
            let key = stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<($0 + 2)], as: UTF8.self), radix: 16)! }
            let count = try #require(Int(fields[1]))
            let expected = try #require(Int32(fields[2]))
            #expect(Partitioner.partition(forKey: key, count: count) == expected, "key \(fields[0]) among \(count)")
        }
    }

    /// A port nothing listens on, so a restarted broker comes back on the same address.
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }

    static func consumeAll(_ client: LogBrokerClient, _ partitions: [TopicPartition], count: Int) async throws
        -> [ConsumerRecord]
    {
        let consumer = Consumer(client: client)
        await consumer.assign(partitions)
        var records: [ConsumerRecord] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while records.count < count, ContinuousClock.now < deadline {
            records += try await consumer.poll()
        }
        return records
    }

    @Test func everyCodecRoundTripsThroughTheProducerAndTheConsumer() async throws {
        try await BrokerProcess.withBroker { broker in
            let client = try LogBrokerClient(bootstrapServers: broker.bootstrap)
            let admin = Admin(client: client)
            for codec in CompressionCodec.allCases {
                let topic = "codec-\(codec)"
                try await admin.createTopic(topic, partitions: 3, replicationFactor: 1)
                var configuration = Producer.Configuration()
                configuration.compression = codec
                let producer = try Producer(client: client, configuration: configuration)
                let failures = Failures()
                for index in 0..<600 {
                    let key = Array("key-\(index % 40)".utf8)
                    try await producer.send(
                        ProducerRecord(topic: topic, key: key, value: Array("value-\(index)".utf8),
                                       headers: [("h", Array("\(index)".utf8))])
                    ) { result in if case .failure(let error) = result { failures.add(error) } }
                }
                await producer.flush()
                #expect(failures.all.isEmpty, "\(codec): \(failures.all)")
                let records = try await Self.consumeAll(client, (0..<3).map { TopicPartition(topic, $0) }, count: 600)
                #expect(records.count == 600, "\(codec)")
                for record in records {
                    let key = try #require(record.key)
                    #expect(record.partition == Partitioner.partition(forKey: key, count: 3))
                    #expect(record.headers.first?.key == "h")
                }
                // Per key, values come back in send order.
                let byKey = Dictionary(grouping: records) { String(decoding: $0.key ?? [], as: UTF8.self) }
                for (_, values) in byKey {
                    let indexes = values.map { Int(String(decoding: $0.value ?? [], as: UTF8.self).dropFirst(6))! }
                    #expect(indexes == indexes.sorted())
                }
            }
            // acks=1 and acks=0 without idempotence; an explicit partition.
            for acks: Int16 in [1, 0] {
                var configuration = Producer.Configuration()
                configuration.acks = acks
                configuration.enableIdempotence = false
                let producer = try Producer(client: client, configuration: configuration)
                let metadata = try await producer.send(ProducerRecord(topic: "codec-none", partition: 2, value: [1, 2, 3]))
                #expect(metadata.partition == 2 && (acks == 0 ? metadata.offset == -1 : metadata.offset >= 0))
            }
            #expect(throws: ClientError.self) {
                var configuration = Producer.Configuration()
                configuration.acks = 1
                _ = try Producer(client: client, configuration: configuration)
            }
        }
    }

    /// A partition holding several fetches' worth (max.partition.fetch.bytes is 1 MiB) is read to its end: the
    /// incremental fetch session keeps the offset the client last sent, so each fetch names the new position.
    @Test func aPartitionLargerThanOneFetchIsReadToTheEnd() async throws {
        try await BrokerProcess.withBroker { broker in
            let client = try LogBrokerClient(bootstrapServers: broker.bootstrap)
            try await Admin(client: client).createTopic("long", partitions: 1, replicationFactor: 1)
            let producer = try Producer(client: client)
            let value = [UInt8](repeating: 7, count: 1_000)
            for _ in 0..<4_000 { try await producer.send(ProducerRecord(topic: "long", value: value)) { _ in } }
            await producer.flush()
            let records = try await Self.consumeAll(client, [TopicPartition("long", 0)], count: 4_000)
            #expect(records.map(\.offset) == Array(0..<4_000))
        }
    }

    /// Without idempotence up to 5 batches of a partition await their answers at once: the log still holds the
    /// records in send order, and the callbacks come in that order with consecutive offsets.
    @Test func batchesInFlightKeepThePartitionsOrder() async throws {
        try await BrokerProcess.withBroker { broker in
            let client = try LogBrokerClient(bootstrapServers: broker.bootstrap)
            try await Admin(client: client).createTopic("window", partitions: 1, replicationFactor: 1)
            var configuration = Producer.Configuration()
            configuration.acks = 1
            configuration.enableIdempotence = false
            configuration.batchSize = 2_000
            configuration.lingerMs = 0
            let producer = try Producer(client: client, configuration: configuration)
            let offsets = Collected()
            let failures = Failures()
            for index in 0..<5_000 {
                var value = [UInt8](repeating: 0, count: 100)
                value.replaceSubrange(0..<4, with: withUnsafeBytes(of: UInt32(index).bigEndian, Array.init))
                try await producer.send(ProducerRecord(topic: "window", value: value)) { result in
                    switch result {
                    case .success(let metadata): offsets.add([Int(metadata.offset)])
                    case .failure(let error): failures.add(error)
                    }
                }
            }
            await producer.flush()
            #expect(failures.all.isEmpty)
            #expect(offsets.all == Array(0..<5_000))
            let records = try await Self.consumeAll(client, [TopicPartition("window", 0)], count: 5_000)
            let sent = records.map { record in record.value!.prefix(4).reduce(0) { $0 << 8 | Int($1) } }
            #expect(sent == Array(0..<5_000))

            configuration.maxInFlightRequestsPerConnection = 0
            #expect(throws: ClientError.self) { _ = try Producer(client: client, configuration: configuration) }
        }
    }

    @Test func seeksAndPreBuiltBatches() async throws {
        try await BrokerProcess.withBroker { broker in
            let client = try LogBrokerClient(bootstrapServers: broker.bootstrap)
            try await Admin(client: client).createTopic("seek", partitions: 1, replicationFactor: 1)
            var configuration = Producer.Configuration()
            configuration.enableIdempotence = false
            let producer = try Producer(client: client, configuration: configuration)
            // A batch built elsewhere (as a mirror copies one) goes in as it is.
            var builder = RecordBatchBuilder()
            for index in 0..<5 {
                builder.append(timestamp: 1_000 + Int64(index), key: nil, value: ByteBuffer(string: "batch-\(index)"))
            }
            #expect(try await producer.send(batch: builder.build().buffer, topic: "seek", partition: 0) == 0)
            for index in 5..<10 {
                _ = try await producer.send(
                    ProducerRecord(topic: "seek", partition: 0, value: Array("record-\(index)".utf8), timestamp: 1_000 + Int64(index))
                )
            }
            let partition = TopicPartition("seek", 0)
            let consumer = Consumer(client: client)
            await consumer.assign([partition])
            var offsets: [Int64] = []
            while offsets.count < 10 { offsets += try await consumer.poll().map(\.offset) }
            #expect(offsets == Array(0..<10))
            #expect(await consumer.isAtEnd)
            // A seek discards the fetch already on its way (prefetch) and reads from the new position.
            await consumer.seek(partition, to: .offset(7))
            var again: [Int64] = []
            while again.count < 3 { again += try await consumer.poll().map(\.offset) }
            #expect(again == [7, 8, 9])
            await consumer.seek(partition, to: .timestamp(1_004))
            #expect(try await consumer.poll().first?.offset == 4)
            await consumer.seek(partition, to: .end)
            #expect(try await consumer.poll().isEmpty)
            #expect(await consumer.position(of: partition) == 10)
        }
    }

    @Test func theIdempotentProducerNeitherLosesNorDuplicatesAcrossABrokerCrash() async throws {
        let port = try await Self.freePort()
        try await BrokerProcess.withBroker([("listeners", "PLAINTEXT://127.0.0.1:\(port)")]) { broker in
            let client = try LogBrokerClient(bootstrapServers: broker.bootstrap)
            try await Admin(client: client).createTopic("crash", partitions: 2, replicationFactor: 1)
            let producer = try Producer(client: client)
            let delivered = Failures()
            let total = 20_000
            for index in 0..<total {
                if index == total / 2 {
                    _ = try await broker.kill()
                    try await broker.start()
                }
                try await producer.send(
                    ProducerRecord(topic: "crash", key: Array("k\(index % 10)".utf8), value: Array("\(index)".utf8))
                ) { result in if case .failure(let error) = result { delivered.add(error) } }
            }
            await producer.flush()
            #expect(delivered.all.isEmpty, "\(delivered.all.prefix(3))")
            let records = try await Self.consumeAll(client, [TopicPartition("crash", 0), TopicPartition("crash", 1)], count: total)
            let values = records.map { Int(String(decoding: $0.value ?? [], as: UTF8.self))! }
            #expect(values.count == total, "every record once: \(values.count) of \(total)")
            #expect(Set(values).count == values.count, "no duplicates")
        }
    }

    @Test func rangeAndRoundRobinDealPartitionsAsKafkasAssignors() {
        let subscriptions: [String: Set<String>] = ["a": ["t", "u"], "b": ["t"], "c": ["t", "u"]]
        let counts = ["t": 5, "u": 2]
        let range = GroupConsumer.plan(subscriptions: subscriptions, partitionCounts: counts, assignor: .range)
        #expect(range["a"] == [TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0)])
        #expect(range["b"] == [TopicPartition("t", 2), TopicPartition("t", 3)])
        #expect(range["c"] == [TopicPartition("t", 4), TopicPartition("u", 1)])
        let roundRobin = GroupConsumer.plan(subscriptions: subscriptions, partitionCounts: counts, assignor: .roundRobin)
        #expect(roundRobin["a"] == [TopicPartition("t", 0), TopicPartition("t", 3), TopicPartition("u", 1)])
        #expect(roundRobin["b"] == [TopicPartition("t", 1), TopicPartition("t", 4)])
        #expect(roundRobin["c"] == [TopicPartition("t", 2), TopicPartition("u", 0)])
    }

    @Test func twoGroupConsumersShareATopicAndANewMemberResumesFromTheirCommits() async throws {
        try await BrokerProcess.withBroker([("group.initial.rebalance.delay.ms", "0")]) { broker in
            let client = try LogBrokerClient(bootstrapServers: broker.bootstrap)
            try await Admin(client: client).createTopic("shared", partitions: 4, replicationFactor: 1)
            let producer = try Producer(client: client)
            for index in 0..<200 {
                try await producer.send(ProducerRecord(topic: "shared", key: Array("k\(index)".utf8), value: Array("\(index)".utf8))) { _ in }
            }
            await producer.flush()
            var configuration = GroupConsumer.Configuration()
            configuration.heartbeatIntervalMs = 100
            // Each member has its own client, as each consumer has its own connections: the coordinator holds a
            // JoinGroup during a rebalance, and the connection carrying it waits meanwhile.
            let members = try (0..<2).map { _ in
                GroupConsumer(client: try LogBrokerClient(bootstrapServers: broker.bootstrap), groupID: "pair",
                              topics: ["shared"], configuration: configuration)
            }
            let values = Collected()
            let deadline = ContinuousClock.now + .seconds(60)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for member in members {
                    group.addTask {
                        while ContinuousClock.now < deadline {
                            values.add(try await member.poll().map { Int(String(decoding: $0.value ?? [], as: UTF8.self))! })
                            try? await member.commit()
                            if values.count >= 200, await member.assignedPartitions.count == 2 { return }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let shares = [await members[0].assignedPartitions, await members[1].assignedPartitions]
            #expect(shares.map(\.count) == [2, 2] && Set(shares[0]).isDisjoint(with: shares[1]))
            #expect(values.all.sorted() == Array(0..<200), "every record once across the pair")
            for member in members {
                try await member.commit()
                await member.close()
            }
            // A new member of the group starts from the commits: nothing left to read.
            let late = GroupConsumer(client: client, groupID: "pair", topics: ["shared"], configuration: configuration)
            var leftover: [ConsumerRecord] = []
            for _ in 0..<5 { leftover += try await late.poll() }
            #expect(leftover.isEmpty)
            await late.close()
        }
    }

    @Test func bufferMemoryHoldsUnderAStalledBroker() async throws {
        try await BrokerProcess.withBroker { broker in
            let client = try LogBrokerClient(bootstrapServers: broker.bootstrap)
            try await Admin(client: client).createTopic("stalled", partitions: 1, replicationFactor: 1)
            var configuration = Producer.Configuration()
            configuration.bufferMemory = 64 * 1024
            configuration.deliveryTimeoutMs = 60_000
            let producer = try Producer(client: client, configuration: configuration)
            _ = try await producer.send(ProducerRecord(topic: "stalled", value: [0]))
            let pid = try #require(broker.processIdentifier)
            kill(pid, SIGSTOP)
            let sent = Counter()
            let sender = Task {
                for index in 0..<2_000 {
                    try await producer.send(ProducerRecord(topic: "stalled", value: Array(repeating: UInt8(index % 256), count: 1_000))) { _ in }
                    sent.increment()
                }
            }
            try await Task.sleep(for: .seconds(2))
            // The sender waits: about 64 records of 1 KB fit, not 2,000.
            let queued = await producer.bufferedBytes
            #expect(queued <= 64 * 1024)
            #expect(sent.value < 100, "send did not wait: \(sent.value) records queued")
            kill(pid, SIGCONT)
            try await sender.value
            await producer.flush()
            #expect(sent.value == 2_000)
            #expect(await producer.bufferedBytes == 0)
        }
    }
}

/// Errors collected from delivery callbacks. Thread-safe.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [ClientError] = []
    func add(_ error: ClientError) { self.lock.withLock { self.errors.append(error) } }
    var all: [ClientError] { self.lock.withLock { self.errors } }
}

/// Values collected by several tasks. Thread-safe.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int] = []
    func add(_ more: [Int]) { self.lock.withLock { self.values += more } }
    var all: [Int] { self.lock.withLock { self.values } }
    var count: Int { self.lock.withLock { self.values.count } }
}

/// A counter shared with a task. Thread-safe.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { self.lock.withLock { self.count += 1 } }
    var value: Int { self.lock.withLock { self.count } }
}
