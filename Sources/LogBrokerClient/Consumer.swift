import KafkaMessages
import KafkaRecords
import KafkaWire
import NIOCore

/// One record a consumer read.
public struct ConsumerRecord: Hashable, Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var timestamp: Int64
    /// Whose clock `timestamp` is: the producer's (CreateTime) or the broker's (LogAppendTime), from the batch.
    public var timestampType: TimestampType
    /// The node id of the broker the record was fetched from.
    public var broker: Int32
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [Header]

    public struct Header: Hashable, Sendable {
        public var key: String
        public var value: [UInt8]?
    }
}

/// A consumer without a group: it reads the partitions it is assigned from the positions it is told (an offset,
/// the beginning, the end, or the first record at or after a timestamp), with an incremental fetch session
/// (KIP-227) per leader, and the next fetch already on its way while the caller handles the records of the last one
/// (prefetch; a seek or a new assignment discards what it brings).
///
/// Thread safety: an actor.
public actor Consumer {
    public enum Position: Hashable, Sendable {
        case offset(Int64)
        case beginning
        case end
        /// The first record whose timestamp is at or after this many milliseconds since the epoch.
        case timestamp(Int64)
    }

    public struct Configuration: Sendable {
        /// `fetch.max.wait.ms`: how long the broker may hold a fetch while no data has come.
        public var fetchMaxWaitMs: Int32 = 500
        /// `fetch.min.bytes`.
        public var fetchMinBytes: Int32 = 1
        /// `fetch.max.bytes` per fetch.
        public var fetchMaxBytes: Int32 = 52_428_800
        /// `max.partition.fetch.bytes`.
        public var maxPartitionFetchBytes: Int32 = 1_048_576

        public init() {}
    }

    /// One leader's incremental fetch session: the offsets the broker holds for each partition.
    private struct Session {
        var id: Int32 = 0
        var epoch: Int32 = 0
        var sent: [TopicPartition: Int64] = [:]
    }

    public let configuration: Configuration
    private let client: LogBrokerClient
    private var wanted: [TopicPartition: Position] = [:]
    private var positions: [TopicPartition: Int64] = [:]
    /// High watermarks from the last fetches, for "at the end" checks.
    private var highWatermarks: [TopicPartition: Int64] = [:]
    private var sessions: [Int32: Session] = [:]
    private let compression = CompressionContext()
    /// The fetch started when the last poll returned.
    private var prefetch: Task<Fetched, any Error>?
    /// Positions and high watermarks as of the records the caller has had (a prefetch runs ahead of them).
    private var delivered = Fetched(records: [], positions: [:], highWatermarks: [:])

    /// What one round of fetches brought, and where it left the partitions.
    private struct Fetched: Sendable {
        var records: [ConsumerRecord]
        var positions: [TopicPartition: Int64]
        var highWatermarks: [TopicPartition: Int64]
    }
    /// Bumped by every assign and seek: a fetch sent before answers for positions that no longer hold.
    private var generation = 0

    public init(client: LogBrokerClient, configuration: Configuration = Configuration()) {
        self.client = client
        self.configuration = configuration
    }

    /// Reads `partitions` from now on, each from `position`.
    public func assign(_ partitions: [TopicPartition], from position: Position = .beginning) {
        self.discardFetches()
        self.wanted = [:]
        self.positions = [:]
        self.sessions = [:]
        for partition in partitions { self.wanted[partition] = position }
    }

    /// Moves `partition` to `position`; the next poll reads from there.
    public func seek(_ partition: TopicPartition, to position: Position) {
        self.discardFetches()
        self.positions[partition] = nil
        self.wanted[partition] = position
    }

    /// The offset the next poll reads `partition` from, once resolved.
    public func position(of partition: TopicPartition) -> Int64? { self.positions[partition] }

    /// The offset after the records polls have returned, per partition (its starting offset while none came),
    /// unlike `position(of:)` not moved by a fetch running ahead: the offsets to commit once those records are
    /// handled.
    public var deliveredPositions: [TopicPartition: Int64] { self.delivered.positions }

    /// Whether the records returned so far reach the high watermark of every assigned partition (as of the fetch
    /// that brought them).
    public var isAtEnd: Bool {
        self.wanted.keys.allSatisfy { partition in
            guard let position = self.delivered.positions[partition],
                let end = self.delivered.highWatermarks[partition]
            else { return false }
            return position >= end
        }
    }

    /// The offsets of `position` for `partitions` (ListOffsets; -1 when nothing matches a timestamp).
    public func offsets(_ partitions: [TopicPartition], at position: Position) async throws -> [TopicPartition: Int64] {
        let spec: Int64 =
            switch position {
            case .beginning: -2
            case .end: -1
            case .timestamp(let ms): ms
            case .offset(let offset): offset
            }
        var result: [TopicPartition: Int64] = [:]
        if case .offset(let offset) = position {
            for partition in partitions { result[partition] = offset }
            return result
        }
        for partition in partitions {
            let leader = try await self.client.leader(of: partition.topic, partition: partition.partition)
            let (response, _) = try await leader.send(supported: 1...7) { _ in
                ListOffsetsRequest(
                    replicaID: -1,
                    topics: [.init(name: partition.topic, partitions: [.init(partitionIndex: partition.partition, timestamp: spec)])]
                )
            }
            guard let answer = response.topics.first?.partitions.first else {
                throw ClientError("\(partition): the ListOffsets answer names no partition")
            }
            guard answer.errorCode == 0 else { throw ClientError.kafka(answer.errorCode, "\(partition)") }
            result[partition] = answer.offset
        }
        return result
    }

    /// The records fetched next: waits up to `fetch.max.wait.ms` for some, then returns what came (maybe none).
    /// - Throws: `ClientError` naming the partition for an offset out of range or another refusal.
    public func poll() async throws -> [ConsumerRecord] {
        let fetched: Fetched
        if let prefetch = self.prefetch {
            self.prefetch = nil
            fetched = try await prefetch.value
        } else {
            fetched = try await self.fetchAll(generation: self.generation)
        }
        self.delivered = fetched
        let generation = self.generation
        self.prefetch = Task { try await self.fetchAll(generation: generation) }
        return fetched.records
    }

    private func discardFetches() {
        self.generation += 1
        self.prefetch?.cancel()
        self.prefetch = nil
        self.sessions = [:]
        self.delivered = Fetched(records: [], positions: [:], highWatermarks: [:])
    }

    /// One fetch from every leader of the assigned partitions.
    private func fetchAll(generation: Int) async throws -> Fetched {
        try await self.resolvePositions()
        var byLeader: [Int32: [TopicPartition]] = [:]
        for partition in self.wanted.keys.sorted(by: { ($0.topic, $0.partition) < ($1.topic, $1.partition) }) {
            let topic = try await self.client.topic(partition.topic)
            guard Int(partition.partition) < topic.partitions.count else {
                throw ClientError("partition \(partition.partition) of topic \(partition.topic) does not exist")
            }
            byLeader[topic.partitions[Int(partition.partition)].leader, default: []].append(partition)
        }
        var records: [ConsumerRecord] = []
        for (leader, partitions) in byLeader.sorted(by: { $0.key < $1.key }) {
            records += try await self.fetch(partitions, from: leader, generation: generation)
        }
        return Fetched(records: records, positions: self.positions, highWatermarks: self.highWatermarks)
    }

    private func resolvePositions() async throws {
        for (partition, position) in self.wanted where self.positions[partition] == nil {
            var offset = try await self.offsets([partition], at: position)[partition] ?? -1
            // A timestamp after every record: read from the end, as Kafka's consumers do.
            if offset < 0 { offset = try await self.offsets([partition], at: .end)[partition] ?? 0 }
            self.positions[partition] = offset
        }
    }

    /// One Fetch to `leader` in its session: a full fetch when the session is new, else only the partitions whose
    /// position the broker does not hold.
    private func fetch(
        _ partitions: [TopicPartition],
        from leader: Int32,
        generation: Int
    ) async throws -> [ConsumerRecord] {
        guard generation == self.generation else { return [] }
        guard leader >= 0 else {
            for partition in partitions { await self.client.invalidate(partition.topic) }
            return []
        }
        let connection = try await self.client.connection(to: leader)
        var session = self.sessions[leader] ?? Session()
        let full = session.id == 0
        let changed = partitions.filter { full || session.sent[$0] != self.positions[$0] }
        let forgotten = session.sent.keys.filter { !partitions.contains($0) }
        let positions = self.positions
        let configuration = self.configuration
        let request = FetchRequest(
            replicaID: -1,
            maxWaitMs: configuration.fetchMaxWaitMs,
            minBytes: configuration.fetchMinBytes,
            maxBytes: configuration.fetchMaxBytes,
            sessionID: session.id,
            sessionEpoch: session.epoch,
            topics: Dictionary(grouping: changed, by: \.topic).sorted { $0.key < $1.key }.map { topic, partitions in
                .init(
                    topic: topic,
                    partitions: partitions.map {
                        .init(partition: $0.partition, fetchOffset: positions[$0] ?? 0,
                              partitionMaxBytes: configuration.maxPartitionFetchBytes)
                    }
                )
            },
            forgottenTopicsData: Dictionary(grouping: forgotten, by: \.topic).map {
                .init(topic: $0.key, partitions: $0.value.map(\.partition))
            }
        )
        let (response, _) = try await connection.send(supported: 4...12) { _ in request }
        // A seek or assignment meanwhile: these records answer positions that no longer hold.
        guard generation == self.generation else { return [] }
        if response.errorCode == ErrorCode.fetchSessionIDNotFound.rawValue
            || response.errorCode == ErrorCode.invalidFetchSessionEpoch.rawValue
        {
            self.sessions[leader] = nil
            return []
        }
        guard response.errorCode == 0 else { throw ClientError.kafka(response.errorCode, "Fetch from broker \(leader)") }
        if response.sessionID != 0 {
            if full { session = Session(id: response.sessionID) }
            session.epoch = session.epoch == Int32.max ? 1 : session.epoch + 1
            for partition in changed { session.sent[partition] = positions[partition] }
            for partition in forgotten { session.sent[partition] = nil }
            self.sessions[leader] = session
        } else {
            self.sessions[leader] = nil
        }
        var records: [ConsumerRecord] = []
        for topic in response.responses {
            for data in topic.partitions {
                let partition = TopicPartition(topic.topic, data.partitionIndex)
                guard self.wanted[partition] != nil, let position = self.positions[partition] else { continue }
                guard data.errorCode == 0 else {
                    let error = ClientError.kafka(data.errorCode, "\(partition)")
                    if error.invalidatesMetadata {
                        await self.client.invalidate(partition.topic)
                        self.sessions[leader] = nil
                        continue
                    }
                    throw error
                }
                self.highWatermarks[partition] = data.highWatermark
                guard let bytes = data.records else { continue }
                let (decoded, next) = try self.decode(bytes, partition: partition, from: position, broker: leader)
                records += decoded
                // The session keeps the offset this client last sent (as Kafka's does), so the next incremental
                // fetch names the partition again with its new position.
                if next > position { self.positions[partition] = next }
            }
        }
        return records
    }

    /// The records at or after `position` in `bytes` (whole batches; a batch cut short at the end is read next
    /// time), and the offset after the last batch.
    private func decode(
        _ bytes: ByteBuffer,
        partition: TopicPartition,
        from position: Int64,
        broker: Int32
    ) throws -> ([ConsumerRecord], Int64) {
        var splitter = RecordBatchSplitter(bytes)
        var records: [ConsumerRecord] = []
        var next = position
        while true {
            let batch: RecordBatch?
            do {
                batch = try splitter.next()
            } catch {
                if records.isEmpty && next == position { throw ClientError("\(partition): \(error)") }
                break
            }
            guard let batch else { break }
            next = max(next, batch.lastOffset + 1)
            guard !batch.attributes.isControl else { continue }
            var iterator = try batch.makeRecordIterator(compression: self.compression, maxDecompressedBytes: 256 << 20)
            while let record = try iterator.next() {
                guard record.offset >= position else { continue }
                records.append(
                    ConsumerRecord(
                        topic: partition.topic,
                        partition: partition.partition,
                        offset: record.offset,
                        timestamp: record.timestamp,
                        timestampType: batch.attributes.timestampType,
                        broker: broker,
                        key: record.key.map { Array($0.readableBytesView) },
                        value: record.value.map { Array($0.readableBytesView) },
                        headers: record.headers.map { .init(key: $0.key, value: $0.value.map { Array($0.readableBytesView) }) }
                    )
                )
            }
        }
        return (records, next)
    }
}
