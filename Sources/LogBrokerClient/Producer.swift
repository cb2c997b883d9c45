import KafkaMessages
import KafkaRecords
import KafkaWire
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// One record to produce.
public struct ProducerRecord: Sendable {
    public var topic: String
    /// nil: the partitioner chooses (murmur2 of the key, else the sticky partition).
    public var partition: Int32?
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [(String, [UInt8]?)]
    /// Milliseconds since the epoch; nil: the producer's clock when the record is sent.
    public var timestamp: Int64?

    public init(
        topic: String,
        partition: Int32? = nil,
        key: [UInt8]? = nil,
        value: [UInt8]?,
        headers: [(String, [UInt8]?)] = [],
        timestamp: Int64? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    /// Bytes it takes in `buffer.memory` (key, value and headers, plus a record's overhead).
    var size: Int {
        (self.key?.count ?? 0) + (self.value?.count ?? 0) + 24
            + self.headers.reduce(0) { $0 + $1.0.utf8.count + ($1.1?.count ?? 0) }
    }
}

/// Where a record was written.
public struct RecordMetadata: Hashable, Sendable {
    public var topic: String
    public var partition: Int32
    /// -1 with acks=0 (the broker does not answer).
    public var offset: Int64
    /// The record's timestamp (the broker's for LogAppendTime topics).
    public var timestamp: Int64
}

/// A producer with Kafka's client behaviour: records are batched per partition (`batch.size`, `linger.ms`), placed
/// by Kafka's partitioners, compressed with any codec, sent with acks 0, 1 or all, retried after a pause on
/// retriable errors (with a metadata refresh when leadership may have moved) until `delivery.timeout.ms`, and
/// idempotent by default (InitProducerId, one sequence per partition; one batch in flight per partition, so
/// retries keep order and the broker drops duplicates). Without idempotence a partition keeps up to
/// `max.in.flight.requests.per.connection` batches awaiting their answers, written in order on the pipelined
/// connection, so the next batch is on its way while the broker writes the last; as with Kafka's producer, a
/// retry can then put a batch after later ones. Delivery callbacks run in each partition's record order. Memory is
/// bounded: `send` waits while `buffer.memory` is full instead of growing.
///
/// Thread safety: an actor; each partition's batches go out from their own task.
public actor Producer {
    public struct Configuration: Sendable {
        /// `acks`: 0, 1 or -1 (all). Default -1.
        public var acks: Int16 = -1
        /// `batch.size`: bytes of records per batch. Default 16 KiB, the Java client's.
        public var batchSize = 16_384
        /// `linger.ms`: how long a batch waits for more records. Default 5 ms, Kafka 4's.
        public var lingerMs: Int64 = 5
        /// `compression.type`.
        public var compression: CompressionCodec = .none
        /// `enable.idempotence`. Default true; needs acks=all.
        public var enableIdempotence = true
        /// `retry.backoff.ms`.
        public var retryBackoffMs: Int64 = 100
        /// `delivery.timeout.ms`: how long a record may take, retries included.
        public var deliveryTimeoutMs: Int64 = 120_000
        /// `buffer.memory`: bytes of records waiting to be sent; `send` waits beyond it.
        public var bufferMemory = 32 * 1024 * 1024
        /// `request.timeout.ms`: the Produce timeout the broker is given.
        public var requestTimeoutMs: Int32 = 30_000
        /// `max.in.flight.requests.per.connection`: batches of one partition awaiting their answers at once when
        /// idempotence is off (an idempotent producer keeps one). Default 5, Kafka's.
        public var maxInFlightRequestsPerConnection = 5

        public init() {}
    }

    private struct Pending {
        var record: ProducerRecord
        var timestamp: Int64
        var enqueuedAt: ContinuousClock.Instant
        var onDelivery: @Sendable (Result<RecordMetadata, ClientError>) -> Void
    }

    /// A partition's records waiting to be sent, oldest first. Batches are taken from the front by moving `head`,
    /// so taking one costs its own records, not the whole queue.
    private struct PartitionQueue {
        private var records: [Pending] = []
        private var head = 0
        /// The sizes of the waiting records.
        private(set) var bytes = 0

        var first: Pending? { self.head < self.records.count ? self.records[self.head] : nil }
        var isEmpty: Bool { self.head == self.records.count }

        mutating func append(_ pending: Pending) {
            self.records.append(pending)
            self.bytes += pending.record.size
        }

        /// Up to `maxBytes` of records from the front (at least one).
        mutating func takeBatch(maxBytes: Int) -> [Pending] {
            var end = self.head
            var taken = 0
            while end < self.records.count && (end == self.head || taken + self.records[end].record.size <= maxBytes) {
                taken += self.records[end].record.size
                end += 1
            }
            let batch = Array(self.records[self.head..<end])
            self.head = end
            self.bytes -= taken
            // Drop the taken prefix once it is most of the storage: amortized O(1) per record.
            if self.head > 1_024 && self.head * 2 > self.records.count {
                self.records.removeFirst(self.head)
                self.head = 0
            }
            return batch
        }
    }

    private struct TopicPartitionKey: Hashable {
        var topic: String
        var partition: Int32
    }

    public let configuration: Configuration
    private let client: LogBrokerClient
    private var queues: [TopicPartitionKey: PartitionQueue] = [:]
    private var draining: Set<TopicPartitionKey> = []
    private var sequences: [TopicPartitionKey: Int32] = [:]
    private var sticky: [String: Int32] = [:]
    /// Each topic's partition count and when it was read from the client, so a record costs no hop to the
    /// client's actor (see `partitionCount`).
    private var partitionCounts: [String: (count: Int, read: ContinuousClock.Instant)] = [:]
    private var buffered = 0
    private var outstanding = 0
    private var spaceWaiters: [CheckedContinuation<Void, Never>] = []
    private var flushWaiters: [CheckedContinuation<Void, Never>] = []
    private var flushing = 0
    private var producerID: (id: Int64, epoch: Int16)?
    private let compression = CompressionContext()

    /// - Throws: `ClientError` for idempotence without acks=all, as Kafka's producer refuses it.
    public init(client: LogBrokerClient, configuration: Configuration = Configuration()) throws {
        if configuration.enableIdempotence && configuration.acks != -1 {
            throw ClientError("enable.idempotence needs acks=all (-1), not acks=\(configuration.acks)")
        }
        guard [0, 1, -1].contains(configuration.acks) else { throw ClientError("acks must be 0, 1 or -1") }
        guard configuration.maxInFlightRequestsPerConnection >= 1 else {
            throw ClientError("max.in.flight.requests.per.connection must be at least 1")
        }
        self.client = client
        self.configuration = configuration
    }

    /// Bytes of records queued and not yet written or failed (at most `buffer.memory`).
    public var bufferedBytes: Int { self.buffered }

    // MARK: Sending

    /// Queues `record` once there is room in `buffer.memory` (waiting meanwhile) and calls `onDelivery` when it
    /// is written or has failed for good.
    public func send(
        _ record: ProducerRecord,
        onDelivery: @escaping @Sendable (Result<RecordMetadata, ClientError>) -> Void
    ) async throws {
        let size = record.size
        guard size <= self.configuration.bufferMemory else {
            throw ClientError("a record of \(size) bytes is larger than buffer.memory \(self.configuration.bufferMemory)")
        }
        while self.buffered > 0 && self.buffered + size > self.configuration.bufferMemory {
            await withCheckedContinuation { self.spaceWaiters.append($0) }
        }
        let now = ContinuousClock.now
        let partition = try await self.choosePartition(record, now: now)
        let key = TopicPartitionKey(topic: record.topic, partition: partition)
        self.buffered += size
        self.outstanding += 1
        let timestamp = record.timestamp ?? Self.nowMs()
        self.queues[key, default: PartitionQueue()].append(
            Pending(record: record, timestamp: timestamp, enqueuedAt: now, onDelivery: onDelivery)
        )
        if !self.draining.contains(key) {
            self.draining.insert(key)
            Task { await self.drain(key) }
        }
    }

    /// Sends `record` and waits until it is written.
    public func send(_ record: ProducerRecord) async throws -> RecordMetadata {
        let (stream, continuation) = AsyncStream.makeStream(of: Result<RecordMetadata, ClientError>.self)
        try await self.send(record) { result in
            continuation.yield(result)
            continuation.finish()
        }
        for await result in stream { return try result.get() }
        throw ClientError("the producer stopped")
    }

    /// Waits until every queued record is written or has failed, ignoring `linger.ms` meanwhile.
    public func flush() async {
        guard self.outstanding > 0 else { return }
        self.flushing += 1
        defer { self.flushing -= 1 }
        await withCheckedContinuation { self.flushWaiters.append($0) }
    }

    /// Appends `batch` (whole record batches, as a mirror copies them) to `partition` of `topic` as they are, and
    /// returns the base offset the broker gave them.
    public func send(batch: ByteBuffer, topic: String, partition: Int32) async throws -> Int64 {
        let answer = try await self.produce(batch, topic: topic, partition: partition, acks: self.configuration.acks)
        return try await answer.get().baseOffset
    }

    // MARK: Partitions

    /// How long a topic's partition count is reused before it is asked of the client again (which may have
    /// refreshed it after an error, or because partitions were added).
    private static let partitionCountReuse = Duration.seconds(1)

    private func partitionCount(_ topic: String, now: ContinuousClock.Instant, atLeast: Int = 0) async throws -> Int {
        if let known = self.partitionCounts[topic], now - known.read < Self.partitionCountReuse, known.count >= atLeast {
            return known.count
        }
        let count = try await self.client.topic(topic, allowAutoCreation: true).partitions.count
        self.partitionCounts[topic] = (count, now)
        return count
    }

    private func choosePartition(_ record: ProducerRecord, now: ContinuousClock.Instant) async throws -> Int32 {
        // An explicit partition past the count known here is checked against the client's metadata.
        let count = try await self.partitionCount(record.topic, now: now, atLeast: Int(record.partition ?? 0) + 1)
        guard count > 0 else { throw ClientError("topic \(record.topic) has no partitions") }
        if let partition = record.partition {
            guard partition >= 0, Int(partition) < count else {
                throw ClientError("partition \(partition) of topic \(record.topic) does not exist",
                                  code: .unknownTopicOrPartition)
            }
            return partition
        }
        if let key = record.key { return Partitioner.partition(forKey: key, count: count) }
        if let current = self.sticky[record.topic], Int(current) < count { return current }
        let chosen = Int32.random(in: 0..<Int32(count))
        self.sticky[record.topic] = chosen
        return chosen
    }

    // MARK: The partition senders

    /// Sends the partition's queued records, a batch at a time, until its queue is empty and every batch is
    /// answered. A batch's first request is written before the next batch is taken, so they reach the broker in
    /// order; each then awaits its answer in its own task, which runs the batch's callbacks after the previous
    /// batch's.
    private func drain(_ key: TopicPartitionKey) async {
        let window = self.configuration.enableIdempotence ? 1 : self.configuration.maxInFlightRequestsPerConnection
        var inFlight: [Task<Void, Never>] = []
        while true {
            guard let first = self.queues[key]?.first else {
                guard !inFlight.isEmpty else { break }
                await inFlight.removeFirst().value
                continue
            }
            if self.flushing == 0 {
                let deadline = first.enqueuedAt + .milliseconds(self.configuration.lingerMs)
                while self.flushing == 0, self.queuedBytes(key) < self.configuration.batchSize, deadline > .now {
                    try? await Task.sleep(until: deadline, tolerance: .milliseconds(1))
                }
            }
            if inFlight.count == window { await inFlight.removeFirst().value }
            let batch = self.takeBatch(key)
            // The sticky partition moves on once its batch is on its way (KIP-480).
            if self.sticky[key.topic] == key.partition { self.sticky[key.topic] = nil }
            let attempt = await self.attempt(batch, to: key, built: nil)
            let previous = inFlight.last
            inFlight.append(Task {
                let result = await self.deliver(batch, to: key, first: attempt)
                await previous?.value
                self.complete(batch, to: key, result)
            })
        }
        self.draining.remove(key)
    }

    /// Calls the callbacks of `batch` with where its records were written, or why not, and frees their memory.
    private func complete(_ batch: [Pending], to key: TopicPartitionKey, _ result: Result<Written, ClientError>) {
        for (index, pending) in batch.enumerated() {
            pending.onDelivery(
                result.map {
                    RecordMetadata(
                        topic: key.topic,
                        partition: key.partition,
                        offset: $0.baseOffset < 0 ? -1 : $0.baseOffset + Int64(index),
                        timestamp: $0.logAppendTime >= 0 ? $0.logAppendTime : pending.timestamp
                    )
                }
            )
            self.buffered -= pending.record.size
            self.outstanding -= 1
        }
        self.resumeWaiters()
    }

    private func queuedBytes(_ key: TopicPartitionKey) -> Int { self.queues[key]?.bytes ?? 0 }

    /// Up to `batch.size` bytes of the queue (at least one record).
    private func takeBatch(_ key: TopicPartitionKey) -> [Pending] {
        let batch = self.queues[key]?.takeBatch(maxBytes: self.configuration.batchSize) ?? []
        if self.queues[key]?.isEmpty == true { self.queues[key] = nil }
        return batch
    }

    private func resumeWaiters() {
        let waiters = self.spaceWaiters
        self.spaceWaiters = []
        for waiter in waiters { waiter.resume() }
        if self.outstanding == 0 {
            let flushed = self.flushWaiters
            self.flushWaiters = []
            for waiter in flushed { waiter.resume() }
        }
    }

    private struct Written {
        var baseOffset: Int64
        var logAppendTime: Int64
    }

    /// One try at writing a batch: its bytes (built once, when the producer id is known, so every retry resends
    /// the same bytes and sequence) and its request written, or why either failed.
    private struct Attempt {
        var built: (batch: ByteBuffer, sequence: Int32?)?
        var sent: Result<ProduceAnswer, any Error>
    }

    /// Builds the batch of `records` unless `built`, and writes its Produce request to the partition's leader.
    private func attempt(
        _ records: [Pending],
        to key: TopicPartitionKey,
        built: (batch: ByteBuffer, sequence: Int32?)?
    ) async -> Attempt {
        var built = built
        do {
            if built == nil {
                let producer = try await self.idempotentProducer()
                let sequence = producer.map { _ in self.sequences[key] ?? 0 }
                built = (try self.build(records, producer: producer, sequence: sequence), sequence)
            }
            let answer = try await self.produce(built!.batch, topic: key.topic, partition: key.partition,
                                                acks: self.configuration.acks)
            return Attempt(built: built, sent: .success(answer))
        } catch {
            return Attempt(built: built, sent: .failure(error))
        }
    }

    /// Awaits the answer to `first` and writes the batch again after retriable errors, until
    /// `delivery.timeout.ms` from its oldest record.
    private func deliver(
        _ records: [Pending],
        to key: TopicPartitionKey,
        first: Attempt
    ) async -> Result<Written, ClientError> {
        let deadline = (records.first?.enqueuedAt ?? .now) + .milliseconds(self.configuration.deliveryTimeoutMs)
        var attempt = first
        while true {
            do {
                let written = try await attempt.sent.get().get()
                if let sequence = attempt.built?.sequence {
                    self.sequences[key] = Self.sequence(sequence, plus: Int32(records.count))
                }
                return .success(Written(baseOffset: written.baseOffset, logAppendTime: written.logAppendTimeMs))
            } catch let error as ClientError where error.isRetriable {
                if error.invalidatesMetadata { await self.client.invalidate(key.topic) }
                guard ContinuousClock.now + .milliseconds(self.configuration.retryBackoffMs) < deadline else {
                    return .failure(ClientError("\(error) (delivery.timeout.ms passed)", code: error.code))
                }
                try? await Task.sleep(for: .milliseconds(self.configuration.retryBackoffMs))
                attempt = await self.attempt(records, to: key, built: attempt.built)
            } catch let error as ClientError {
                return .failure(error)
            } catch {
                return .failure(ClientError("\(key.topic)-\(key.partition): \(error)"))
            }
        }
    }

    /// One record batch of `records`, with the producer's id, epoch and first sequence when idempotent.
    private func build(
        _ records: [Pending],
        producer: (id: Int64, epoch: Int16)?,
        sequence: Int32?
    ) throws -> ByteBuffer {
        var builder = RecordBatchBuilder(
            codec: self.configuration.compression,
            producerID: producer?.id ?? -1,
            producerEpoch: producer?.epoch ?? -1,
            baseSequence: sequence ?? -1
        )
        for pending in records {
            let headers = pending.record.headers.map { RecordHeader(key: $0.0, value: $0.1.map { ByteBuffer(bytes: $0) }) }
            // Straight from the caller's arrays into the batch: no buffer per key or value.
            Self.withBytes(pending.record.key) { key in
                Self.withBytes(pending.record.value) { value in
                    builder.append(timestamp: pending.timestamp, key: key, value: value, headers: headers)
                }
            }
        }
        return try builder.build(compression: self.compression).buffer
    }

    private static func withBytes<Result>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> Result) -> Result {
        guard let bytes else { return body(nil) }
        return bytes.withUnsafeBytes { body($0) }
    }

    /// The producer id and epoch, asked for once when idempotence is on.
    private func idempotentProducer() async throws -> (id: Int64, epoch: Int16)? {
        guard self.configuration.enableIdempotence else { return nil }
        if let producerID = self.producerID { return producerID }
        let (response, _) = try await self.client.sendToAny(supported: 0...4) { _ in
            InitProducerIdRequest(transactionalID: nil, transactionTimeoutMs: -1)
        }
        guard response.errorCode == 0 else { throw ClientError.kafka(response.errorCode, "InitProducerId") }
        if let producerID = self.producerID { return producerID }
        self.producerID = (response.producerID, response.producerEpoch)
        return self.producerID
    }

    /// The answer to come to one Produce of a batch to one partition.
    private struct ProduceAnswer: Sendable {
        /// nil with acks=0: the broker does not answer.
        let pending: BrokerConnection.PendingResponse<ProduceRequest>?
        let topic: String
        let partition: Int32

        /// The partition's answer, or its error thrown.
        func get() async throws -> ProduceResponse.PartitionProduceResponse {
            guard let pending else { return .init(index: self.partition, errorCode: 0, baseOffset: -1) }
            let response = try await pending.response()
            guard let answer = response.responses.first?.partitionResponses.first else {
                throw ClientError("\(self.topic)-\(self.partition): the broker's Produce answer names no partition")
            }
            guard answer.errorCode == 0 else {
                throw ClientError.kafka(answer.errorCode, "\(self.topic)-\(self.partition)", message: answer.errorMessage)
            }
            return answer
        }
    }

    /// Writes one Produce of `batch` to the partition's leader and returns its answer to come.
    private func produce(
        _ batch: ByteBuffer,
        topic: String,
        partition: Int32,
        acks: Int16
    ) async throws -> ProduceAnswer {
        let leader = try await self.client.leader(of: topic, partition: partition)
        let timeout = self.configuration.requestTimeoutMs
        let request = ProduceRequest(
            transactionalID: nil,
            acks: acks,
            timeoutMs: timeout,
            topicData: [.init(name: topic, partitionData: [.init(index: partition, records: batch)])]
        )
        if acks == 0 {
            try await leader.sendWithoutResponse(supported: 3...9) { _ in request }
            return ProduceAnswer(pending: nil, topic: topic, partition: partition)
        }
        let pending = try await leader.write(supported: 3...9) { _ in request }
        return ProduceAnswer(pending: pending, topic: topic, partition: partition)
    }

    /// `sequence + increment`, wrapping past Int32.max to 0 as Kafka's producer does.
    static func sequence(_ sequence: Int32, plus increment: Int32) -> Int32 {
        sequence > Int32.max - increment ? increment - (Int32.max - sequence) - 1 : sequence + increment
    }

    /// The wall clock in milliseconds.
    static func nowMs() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }
}
