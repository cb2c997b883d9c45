import ClusterControl
import DelayedOperations
import KafkaRecords
import KafkaWire
import LogStorage
import Logging
import NIOCore
import Synchronization

/// Settings of the replica layer that are not per-topic `LogConfig`.
public struct ReplicaManagerConfiguration: Sendable {
    /// This broker's node id (the leader id in responses).
    public var brokerID: Int32
    /// The most bytes one compressed batch may inflate to while it is validated.
    public var maxDecompressedBytes: Int

    public init(brokerID: Int32, maxDecompressedBytes: Int = 64 * 1024 * 1024) {
        self.brokerID = brokerID
        self.maxDecompressedBytes = maxDecompressedBytes
    }
}

/// Who sends an append, which decides the checks Kafka applies before it (`ProduceRequest.validateRecords`,
/// `LogValidator` with `AppendOrigin`).
public enum AppendOrigin: Sendable, Hashable {
    /// A producer's Produce request at `produceVersion`, with its transactional id.
    case client(produceVersion: Int16, transactionalID: String?)
    /// The broker itself (the group coordinator's own records): control batches and several batches allowed.
    case coordinator
}

/// One record Kafka refused inside a batch (Produce v8+ `record_errors`): its index in the batch and why.
public struct RecordError: Sendable, Hashable {
    public var batchIndex: Int32
    public var message: String?

    public init(batchIndex: Int32, message: String?) {
        self.batchIndex = batchIndex
        self.message = message
    }
}

/// One partition's answer to an append, in Produce's terms.
public struct AppendResult: Sendable, Hashable {
    public var error: ErrorCode
    public var errorMessage: String?
    /// The records that failed a per-record check (INVALID_TIMESTAMP, or INVALID_RECORD for a missing key), as
    /// Kafka's `RecordValidationException` reports them; empty for batch-level refusals.
    public var recordErrors: [RecordError] = []
    /// The first offset assigned, -1 on error.
    public var baseOffset: Int64 = -1
    /// The LogAppendTime stamped on the batch, -1 for CreateTime topics and on error.
    public var logAppendTime: Int64 = -1
    /// The log start offset after the append, -1 on error.
    public var logStartOffset: Int64 = -1

    public init(error: ErrorCode, errorMessage: String? = nil) {
        self.error = error
        self.errorMessage = errorMessage
    }
}

/// One partition of a read (a Fetch).
public struct PartitionRead: Sendable, Hashable {
    public var topicPartition: TopicPartition
    public var fetchOffset: Int64
    /// The partition's own limit (partition_max_bytes).
    public var maxBytes: Int
    /// The leader epoch the client believes current, -1 for none.
    public var currentLeaderEpoch: Int32

    public init(topicPartition: TopicPartition, fetchOffset: Int64, maxBytes: Int, currentLeaderEpoch: Int32 = -1) {
        self.topicPartition = topicPartition
        self.fetchOffset = fetchOffset
        self.maxBytes = maxBytes
        self.currentLeaderEpoch = currentLeaderEpoch
    }
}

/// What a read of one partition found: whole batches as a file range (nil when there is nothing to send) and the
/// partition's offsets at the time, or an error (offsets -1 unless the partition is hosted).
public struct PartitionReadResult: Sendable {
    public var error: ErrorCode
    public var range: FileRange?
    public var highWatermark: Int64 = -1
    public var lastStableOffset: Int64 = -1
    public var logStartOffset: Int64 = -1
    /// `Partition.bytesAppended` when read, for a delayed fetch's condition.
    public var bytesAppended: Int64 = 0

    public init(error: ErrorCode) {
        self.error = error
    }

    public var byteCount: Int { self.range?.length ?? 0 }
}

/// One partition's answer to a ListOffsets look-up: offset and timestamp -1 when nothing matched.
public struct OffsetLookupResult: Sendable, Hashable {
    public var error: ErrorCode
    public var timestamp: Int64 = -1
    public var offset: Int64 = -1
    public var leaderEpoch: Int32 = -1

    public init(error: ErrorCode) {
        self.error = error
    }
}

/// The partitions this broker hosts and the one place where Produce, Fetch and ListOffsets touch them: batches are
/// split and checked as Kafka checks them (DESIGN.md principle 2: a walk over raw bytes, nothing per record), then
/// appended as leader with the partition's leader epoch; reads return file ranges, bounded by the high watermark.
///
/// Disk work (appends, reads, look-ups, creating a log) runs on the `DiskIOPool`, never on an event loop or the
/// cooperative pool; batch validation (CPU: CRC, decompression) runs on the caller's task. `delayedFetches` is
/// notified after every append, so parked fetches wake.
///
/// Thread-safe: the partition map is behind a `Mutex`; `Partition` and `LogManager` are thread-safe.
public final class ReplicaManager: Sendable {
    public let logManager: LogManager
    /// Where disk work runs; the Fetch handler also reads file ranges into memory here.
    public let ioPool: DiskIOPool
    public let configuration: ReplicaManagerConfiguration
    /// Fetches waiting for min.bytes, keyed by partition, woken by appends.
    public let delayedFetches = DelayedOperationQueue<TopicPartition>()
    private let partitions = Mutex<[TopicPartition: Partition]>([:])
    /// The topics of the newest cluster image this broker applied, with its revision; nil until one is given
    /// (`applyImage`). Kafka's metadata cache, as far as the replica layer asks it who leads a partition.
    private let image = Mutex<(topics: [String: TopicImage], revision: Int64)?>(nil)
    /// Validators keep their decompression contexts and scratch buffer, so a produce does not build them anew.
    private let validators = ReusablePool { RecordBatchValidator() }
    /// The same for Produce v0-2's message-set conversions.
    private let legacyConverters = ReusablePool {
        LegacyMessageSetConverter(options: LegacyMessageSetConversionOptions(maxMessageBytes: 0))
    }
    private let logger: Logger

    public init(
        logManager: LogManager,
        ioPool: DiskIOPool,
        configuration: ReplicaManagerConfiguration,
        logger: Logger = Logger(label: "Replication.ReplicaManager")
    ) {
        self.logManager = logManager
        self.ioPool = ioPool
        self.configuration = configuration
        self.logger = logger
    }

    // MARK: Leadership

    /// Makes this broker the partition's leader at `leaderEpoch`, creating its log (with the topic's config from
    /// the log manager) if it has none. Called by the controller's image follower; idempotent for the same epoch, and
    /// an epoch older than the partition's current one is ignored (epochs never go backwards).
    /// Parked fetches on the partition are woken, so they re-check their leader epoch.
    @discardableResult
    public func becomeLeader(
        topic: String,
        partition: Int32,
        topicID: KafkaUUID,
        leaderEpoch: Int32
    ) async throws -> Partition {
        let topicPartition = TopicPartition(topic, partition)
        if let existing = self.partition(topicPartition) {
            if existing.update(topicID: topicID, leaderEpoch: leaderEpoch) {
                try await self.assignEpochStart(leaderEpoch, in: existing.log)
            }
            self.delayedFetches.notify(topicPartition)
            return existing
        }
        let logManager = self.logManager
        let log = try await self.ioPool.run { () throws -> ManagedLog in
            let config = logManager.config.topicConfig(topic)
            let log = try logManager.getOrCreateLog(topic: topic, partition: partition, config: config)
            // `partition.metadata`: a directory left by another topic of the same name is refused, not appended to.
            try log.assignTopicID(topicID)
            return log
        }
        let hosted = self.partitions.withLock { partitions in
            if let raced = partitions[topicPartition] { return raced }
            let created = Partition(
                topicPartition: topicPartition,
                log: log,
                topicID: topicID,
                leaderEpoch: leaderEpoch
            )
            partitions[topicPartition] = created
            return created
        }
        if hosted.update(topicID: topicID, leaderEpoch: leaderEpoch) {
            try await self.assignEpochStart(leaderEpoch, in: hosted.log)
        }
        self.logger.info(
            "became leader",
            metadata: ["partition": "\(topicPartition)", "leaderEpoch": "\(leaderEpoch)"]
        )
        return hosted
    }

    /// One partition of a batch of elections (`becomeLeader(_:)`).
    public struct Leadership: Sendable, Hashable {
        public var topic: String
        public var partition: Int32
        public var topicID: KafkaUUID
        public var leaderEpoch: Int32

        public init(topic: String, partition: Int32, topicID: KafkaUUID, leaderEpoch: Int32) {
            self.topic = topic
            self.partition = partition
            self.topicID = topicID
            self.leaderEpoch = leaderEpoch
        }
    }

    /// `becomeLeader` for many partitions at once (the elections of a start, or of a new topic): the work runs in
    /// chunks spread over the disk pool's threads, and each new epoch's `leader-epoch-checkpoint` is written without
    /// fsync, then all of them are made durable by one sync of the log directories' file systems before this
    /// returns, instead of one fsync and one directory fsync per partition. A crash before that sync loses nothing:
    /// the epochs are in the controller's store, and a flush syncs an unsynced checkpoint before its recovery point
    /// moves, so recovery finds every batch of the new epoch it might miss in the checkpoint past the recovery point.
    /// - Returns: per leadership, in order, nil or why that partition could not become leader (it is then not
    ///   hosted, or keeps its earlier epoch in the checkpoint).
    public func becomeLeader(_ leaderships: [Leadership]) async -> [(any Error)?] {
        guard !leaderships.isEmpty else { return [] }
        let chunkSize = max(64, leaderships.count / (self.ioPool.threadCount * 8) + 1)
        var results = [(any Error)?](repeating: nil, count: leaderships.count)
        var awaitingSync: [(ManagedLog, UInt64)] = []
        await withTaskGroup(of: (Int, [(any Error)?], [(ManagedLog, UInt64)]).self) { group in
            for start in stride(from: 0, to: leaderships.count, by: chunkSize) {
                let chunk = Array(leaderships[start..<min(start + chunkSize, leaderships.count)])
                group.addTask {
                    do {
                        let (errors, pending) = try await self.ioPool.run { self.becomeLeaderOnDiskPool(chunk) }
                        return (start, errors, pending)
                    } catch {
                        return (start, chunk.map { _ in error }, [])
                    }
                }
            }
            for await (start, errors, pending) in group {
                for (offset, error) in errors.enumerated() { results[start + offset] = error }
                awaitingSync += pending
            }
        }
        if !awaitingSync.isEmpty {
            let logManager = self.logManager
            let pending = awaitingSync
            let failures: [(TopicPartition, any Error)]
            do {
                failures = try await self.ioPool.run { () -> [(TopicPartition, any Error)] in
                    do {
                        try logManager.syncLogDirectories()
                        for (log, token) in pending { log.confirmLeaderEpochSynced(token) }
                        return []
                    } catch {
                        // One fsync per file then, so the error lands on the partitions it concerns.
                        var failures: [(TopicPartition, any Error)] = []
                        for (log, _) in pending {
                            do {
                                try log.syncLeaderEpochCheckpoint()
                            } catch {
                                failures.append((log.topicPartition, error))
                            }
                        }
                        return failures
                    }
                }
            } catch {
                failures = pending.map { ($0.0.topicPartition, error) }
            }
            if !failures.isEmpty {
                let failed = Dictionary(failures, uniquingKeysWith: { first, _ in first })
                for (index, leadership) in leaderships.enumerated() {
                    if let error = failed[TopicPartition(leadership.topic, leadership.partition)] {
                        results[index] = results[index] ?? error
                    }
                }
            }
        }
        for leadership in leaderships {
            self.delayedFetches.notify(TopicPartition(leadership.topic, leadership.partition))
        }
        self.logger.info(
            "became leader of partitions",
            metadata: [
                "partitions": "\(leaderships.count)", "failed": "\(results.count { $0 != nil })",
                "leaderEpochs": "\(Set(leaderships.map(\.leaderEpoch)).sorted().prefix(8))",
            ]
        )
        return results
    }

    /// One chunk of `becomeLeader(_:)`, on a disk pool thread: hosts each partition (its log opened or created) at
    /// its new epoch and writes the epoch's start without fsync. Returns the errors in order and the logs whose
    /// checkpoint awaits the sync.
    private func becomeLeaderOnDiskPool(_ chunk: [Leadership]) -> ([(any Error)?], [(ManagedLog, UInt64)]) {
        var errors: [(any Error)?] = []
        var pending: [(ManagedLog, UInt64)] = []
        errors.reserveCapacity(chunk.count)
        for leadership in chunk {
            do {
                let topicPartition = TopicPartition(leadership.topic, leadership.partition)
                let hosted: Partition
                if let existing = self.partition(topicPartition) {
                    hosted = existing
                } else {
                    let config = self.logManager.config.topicConfig(leadership.topic)
                    let log = try self.logManager.getOrCreateLog(
                        topic: leadership.topic,
                        partition: leadership.partition,
                        config: config
                    )
                    try log.assignTopicID(leadership.topicID)
                    hosted = self.partitions.withLock { partitions in
                        if let raced = partitions[topicPartition] { return raced }
                        let created = Partition(
                            topicPartition: topicPartition,
                            log: log,
                            topicID: leadership.topicID,
                            leaderEpoch: leadership.leaderEpoch
                        )
                        partitions[topicPartition] = created
                        return created
                    }
                }
                if hosted.update(topicID: leadership.topicID, leaderEpoch: leadership.leaderEpoch),
                    let token = try hosted.log.assignLeaderEpochAwaitingSync(leadership.leaderEpoch)
                {
                    pending.append((hosted.log, token))
                }
                errors.append(nil)
            } catch {
                errors.append(error)
            }
        }
        return (errors, pending)
    }

    /// Writes the new leader epoch's start (the log end) into the partition's epoch cache, on the disk pool.
    private func assignEpochStart(_ leaderEpoch: Int32, in log: ManagedLog) async throws {
        try await self.ioPool.run {
            try log.withLog { (log) throws(StorageError) in try log.assignLeaderEpoch(leaderEpoch) }
        }
    }

    /// Brings back a hosted partition whose log went offline (`ManagedLog.reopenIfOffline`: opened anew as after an
    /// unclean stop), for ElectLeaders on it; an online or unknown partition is left as it is.
    /// - Returns: nil when nothing needed doing, `.none` when the partition came back, else why it is still offline.
    public func reopenIfOffline(_ topicPartition: TopicPartition) async -> (error: ErrorCode, message: String)? {
        guard let hosted = self.partition(topicPartition), hosted.log.isOffline else { return nil }
        do {
            _ = try await self.ioPool.run { try hosted.log.reopenIfOffline() }
        } catch let error as StorageError {
            self.logger.error(
                "An offline partition could not be reopened",
                metadata: ["partition": "\(topicPartition)", "error": "\(error)"]
            )
            return (error.kafkaErrorCode, "\(error)")
        } catch {
            return (.kafkaStorageError, "\(error)")
        }
        self.delayedFetches.notify(topicPartition)
        return (.none, "")
    }

    /// Stops hosting the partition (its topic was deleted): from now on appends and reads answer
    /// UNKNOWN_TOPIC_OR_PARTITION, and its parked fetches are woken to answer so. The log is the caller's to delete.
    @discardableResult
    public func removePartition(_ topicPartition: TopicPartition) -> Partition? {
        let removed = self.partitions.withLock { $0.removeValue(forKey: topicPartition) }
        self.delayedFetches.notify(topicPartition)
        return removed
    }

    /// The hosted partition, nil if this broker does not host it.
    public func partition(_ topicPartition: TopicPartition) -> Partition? {
        self.partitions.withLock { $0[topicPartition] }
    }

    /// Takes the topics of the cluster image at `revision`, unless an image at least as new was given already:
    /// from then on a partition the image gives another leader (or none) is not served here.
    public func applyImage(topics: [String: TopicImage], revision: Int64) {
        self.image.withLock { image in
            guard revision > image?.revision ?? Int64.min else { return }
            image = (topics, revision)
        }
    }

    /// The partition if this broker serves it as leader; otherwise the error Kafka's `getPartitionOrError` gives
    /// Produce, Fetch, ListOffsets and OffsetForLeaderEpoch: NOT_LEADER_OR_FOLLOWER for a partition the image has
    /// but this broker does not lead (another broker leads it, none does, or its log is not open here yet), and
    /// UNKNOWN_TOPIC_OR_PARTITION for one the image does not have. A hosted partition the image does not have yet
    /// (no image was given, or the image is a moment behind a creation) is served.
    public func leaderPartition(_ topicPartition: TopicPartition) -> LeaderLookup {
        let hosted = self.partition(topicPartition)
        let state: PartitionState? = self.image.withLock { image in
            guard let partitions = image?.topics[topicPartition.topic]?.partitions,
                partitions.indices.contains(Int(topicPartition.partition))
            else { return nil }
            return partitions[Int(topicPartition.partition)]
        }
        guard let state else { return hosted.map { .leading($0) } ?? .refused(.unknownTopicOrPartition) }
        guard let hosted, state.leader == self.configuration.brokerID else { return .refused(.notLeaderOrFollower) }
        return .leading(hosted)
    }

    // MARK: Produce

    /// Checks `records` (one partition's Produce records field) and appends them as leader.
    ///
    /// The checks, in Kafka's order: acks in {0, 1, -1} (INVALID_REQUIRED_ACKS); this broker leads the partition
    /// (`leaderPartition`: NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION); a magic 0/1 message set from Produce v0-2 is checked and converted into one v2
    /// batch (`LegacyMessageSetConverter`; from Produce v3 such a set is INVALID_RECORD), which then takes the same
    /// checks as a producer's v2 batch; from a client exactly one magic-2 batch (INVALID_RECORD), zstd only from
    /// Produce v7 (UNSUPPORTED_COMPRESSION_TYPE), transactional batches refused until transactions exist
    /// (TRANSACTIONAL_ID_AUTHORIZATION_FAILED without a transactional id, INVALID_TXN_STATE with one: no
    /// transaction can have begun); each batch at most max.message.bytes (MESSAGE_TOO_LARGE); then the validator:
    /// CRC (CORRUPT_MESSAGE), codec (UNSUPPORTED_COMPRESSION_TYPE), control batches and record structure
    /// (INVALID_RECORD), CreateTime timestamps within log.message.timestamp.{before,after}.max.ms
    /// (INVALID_TIMESTAMP). Nothing is written unless every batch passes.
    ///
    /// With the ISR being this broker alone, acks=-1 is satisfied as soon as the append returns.
    public func append(
        topic: String,
        partition: Int32,
        records: ByteBuffer?,
        requiredAcks: Int16,
        origin: AppendOrigin = .coordinator
    ) async -> AppendResult {
        guard requiredAcks == 0 || requiredAcks == 1 || requiredAcks == -1 else {
            return AppendResult(error: .invalidRequiredAcks)
        }
        let topicPartition = TopicPartition(topic, partition)
        let hosted: Partition
        switch self.leaderPartition(topicPartition) {
        case .leading(let leading): hosted = leading
        case .refused(let error): return AppendResult(error: error)
        }
        let config = hosted.log.config
        var received = records ?? ByteBuffer()
        if case .client(let version, _) = origin, LegacyMessageSet.legacyMagic(of: received) != nil {
            // Kafka's `ProduceRequest.validateRecords`: from v3 only magic 2 batches.
            guard version < 3 else {
                return AppendResult(
                    error: .invalidRecord,
                    errorMessage: "Produce requests with version \(version) are only allowed to contain record "
                        + "batches with magic version 2"
                )
            }
            do {
                received = try self.convertMessageSet(received, config: config)
            } catch {
                return Self.refusal(error)
            }
        }
        let records = received
        if let refusal = self.validate(records, config: config, origin: origin) { return refusal }
        let leaderEpoch = hosted.leaderEpoch
        let info: LogAppendInfo
        do {
            info = try await self.ioPool.run { try hosted.log.appendAsLeader(records, leaderEpoch: leaderEpoch) }
        } catch let error as StorageError {
            return AppendResult(error: error.kafkaErrorCode, errorMessage: "\(error)")
        } catch {
            return AppendResult(error: .unknownServerError, errorMessage: "\(error)")
        }
        if !info.isDuplicate {
            hosted.recordAppend(bytes: records.readableBytes)
            self.delayedFetches.notify(topicPartition)
        }
        var result = AppendResult(error: .none)
        result.baseOffset = info.firstOffset
        result.logAppendTime = info.logAppendTime
        result.logStartOffset = hosted.logStartOffset
        return result
    }

    /// A Produce v0-2 message set (magic 0/1) checked and converted into the one v2 batch Kafka's `LogValidator`
    /// would build from it, for the v2 checks and append that follow.
    private func convertMessageSet(_ messageSet: ByteBuffer, config: LogConfig) throws(RecordBatchError) -> ByteBuffer {
        var converter = self.legacyConverters.take()
        defer { if converter.retainedBytes <= 1 << 20 { self.legacyConverters.give(converter) } }
        converter.options = LegacyMessageSetConversionOptions(
            maxMessageBytes: config.maxMessageBytes,
            maxDecompressedBytes: self.configuration.maxDecompressedBytes,
            logAppendTimeTopic: config.logAppendTime
        )
        return try converter.convert(messageSet).batch.buffer
    }

    /// The refusal of `records`, nil if they may be appended. Walks raw bytes: the batches are slices of `records`.
    private func validate(_ records: ByteBuffer, config: LogConfig, origin: AppendOrigin) -> AppendResult? {
        var options = RecordBatchValidationOptions(maxDecompressedBytes: self.configuration.maxDecompressedBytes)
        if !config.logAppendTime {
            options.timestampBounds = TimestampBounds(
                now: PartitionLog.nowMs(),
                maxBefore: config.timestampBeforeMaxMs,
                maxAfter: config.timestampAfterMaxMs
            )
        }
        if case .coordinator = origin { options.refuseControlBatches = false }
        // A compacted topic keeps the latest record per key, so every record needs one (Kafka's `LogValidator`).
        options.requireKeys = config.compacts
        var validator = self.validators.take()
        var largestInflated = 0
        defer { if largestInflated <= 1 << 20 { self.validators.give(validator) } }
        validator.options = options
        var splitter = RecordBatchSplitter(records)
        var count = 0
        do {
            while let batch = try splitter.next() {
                count += 1
                if case .client(let version, let transactionalID) = origin {
                    guard count == 1, batch.magic == 2 else {
                        return AppendResult(
                            error: .invalidRecord,
                            errorMessage: "Produce v3 and later must carry exactly one record batch of magic 2"
                        )
                    }
                    if batch.attributes.compressionCodec == .zstd, version < 7 {
                        return AppendResult(
                            error: .unsupportedCompressionType,
                            errorMessage: "zstd needs Produce v7 or later"
                        )
                    }
                    if batch.attributes.isTransactional, !batch.attributes.isControl {
                        return transactionalID == nil
                            ? AppendResult(error: .transactionalIDAuthorizationFailed)
                            : AppendResult(
                                error: .invalidTxnState,
                                errorMessage: "transactions are not supported yet: no transaction has begun"
                            )
                    }
                }
                guard batch.sizeInBytes <= config.maxMessageBytes else {
                    return AppendResult(
                        error: .messageTooLarge,
                        errorMessage: "batch of \(batch.sizeInBytes) bytes exceeds max.message.bytes "
                            + "\(config.maxMessageBytes)"
                    )
                }
                let summary = try validator.validate(batch)
                if batch.attributes.compressionCodec != CompressionCodec.none {
                    largestInflated = max(largestInflated, summary.uncompressedRecordsSize)
                }
            }
        } catch {
            return Self.refusal(error)
        }
        guard splitter.remainingBytes == 0 else {
            return AppendResult(
                error: .corruptMessage,
                errorMessage: "\(splitter.remainingBytes) bytes after the last whole batch"
            )
        }
        guard count > 0 else {
            return AppendResult(error: .invalidRecord, errorMessage: "the records field holds no record batch")
        }
        return nil
    }

    /// The answer to a batch the validator refused. A per-record failure is reported as Kafka's `LogValidator`
    /// does: the record's index and reason in `record_errors`, and Kafka's summary as the error message
    /// (`processRecordErrors`). Kafka lists every failing record of the batch; the validator stops at the first, so
    /// there is one entry.
    static func refusal(_ error: RecordBatchError) -> AppendResult {
        guard let index = error.recordIndex else {
            return AppendResult(error: error.kafkaErrorCode, errorMessage: "\(error)")
        }
        let code = error.kafkaErrorCode
        let summary =
            code == .invalidTimestamp
            ? "One or more records have been rejected due to invalid timestamp"
            : "One or more records have been rejected due to 1 record errors in total, and only showing the first "
                + "three errors at most: [\(error)]"
        var result = AppendResult(error: code, errorMessage: summary)
        result.recordErrors = [RecordError(batchIndex: Int32(index), message: "\(error)")]
        return result
    }

    // MARK: Fetch

    /// Reads whole batches for each partition, as Kafka's `readFromLog`: each partition up to its own limit and
    /// what is left of `maxBytes`; the first partition that has data returns at least one whole batch even past
    /// the limits (so a batch larger than the limits cannot stall a consumer), later ones only what fits. Reads
    /// stop at the high watermark. An offset equal to the high watermark is not an error: it reads nothing.
    /// OFFSET_OUT_OF_RANGE is only for offsets below the log start or above the log end.
    ///
    /// Runs as one job on the disk pool (the index look-ups may fault pages in).
    public func read(_ reads: [PartitionRead], maxBytes: Int) async -> [PartitionReadResult] {
        let hosted = reads.map { self.leaderPartition($0.topicPartition) }
        do {
            return try await self.ioPool.run {
                var remaining = max(0, maxBytes)
                var minOneBatch = true
                var results: [PartitionReadResult] = []
                results.reserveCapacity(reads.count)
                for (read, partition) in zip(reads, hosted) {
                    let result = Self.read(read, from: partition, remaining: remaining, minOneBatch: minOneBatch)
                    if result.byteCount > 0 {
                        minOneBatch = false
                        remaining = max(0, remaining - result.byteCount)
                    }
                    results.append(result)
                }
                return results
            }
        } catch {
            return reads.map { _ in PartitionReadResult(error: .kafkaStorageError) }
        }
    }

    private static func read(
        _ read: PartitionRead,
        from leader: LeaderLookup,
        remaining: Int,
        minOneBatch: Bool
    ) -> PartitionReadResult {
        let partition: Partition
        switch leader {
        case .leading(let leading): partition = leading
        case .refused(let error): return PartitionReadResult(error: error)
        }
        let epochError = partition.checkLeaderEpoch(read.currentLeaderEpoch)
        var result = PartitionReadResult(error: epochError)
        result.bytesAppended = partition.bytesAppended
        let highWatermark = partition.highWatermark
        result.highWatermark = highWatermark
        result.lastStableOffset = partition.lastStableOffset
        result.logStartOffset = partition.logStartOffset
        guard epochError == .none else { return result }
        let limit = min(max(0, read.maxBytes), remaining)
        do {
            let info = try partition.log.withLog { (log) throws(StorageError) in
                try log.read(
                    from: read.fetchOffset,
                    maxBytes: limit,
                    maxOffset: highWatermark,
                    minOneBatch: minOneBatch
                )
            }
            result.range = info.range
            result.logStartOffset = info.logStartOffset
        } catch {
            result.error = error.kafkaErrorCode
        }
        return result
    }

    // MARK: ListOffsets

    /// ListOffsets for one partition: earliest is the log start, latest the high watermark (= last stable offset
    /// without transactions, so both isolation levels agree), max timestamp and by-timestamp only among offsets
    /// below the high watermark. Nothing found gives offset and timestamp -1 with no error, as Kafka answers.
    public func offset(
        for spec: OffsetSpec,
        topic: String,
        partition: Int32,
        currentLeaderEpoch: Int32 = -1
    ) async -> OffsetLookupResult {
        let hosted: Partition
        switch self.leaderPartition(TopicPartition(topic, partition)) {
        case .leading(let leading): hosted = leading
        case .refused(let error): return OffsetLookupResult(error: error)
        }
        let epochError = hosted.checkLeaderEpoch(currentLeaderEpoch)
        guard epochError == .none else { return OffsetLookupResult(error: epochError) }
        let highWatermark = hosted.highWatermark
        let found: TimestampAndOffset?
        do {
            found = try await self.ioPool.run {
                try hosted.log.withLog { (log) throws(StorageError) in
                    try log.offset(for: spec)
                }
            }
        } catch let error as StorageError {
            return OffsetLookupResult(error: error.kafkaErrorCode)
        } catch {
            return OffsetLookupResult(error: .unknownServerError)
        }
        var result = OffsetLookupResult(error: .none)
        guard var found else { return result }
        if case .latest = spec { found.offset = highWatermark }
        guard found.offset <= highWatermark else { return result }
        if case .timestamp = spec, found.offset == highWatermark { return result }
        if case .maxTimestamp = spec, found.offset == highWatermark { return result }
        result.timestamp = found.timestamp
        result.offset = found.offset
        result.leaderEpoch = found.leaderEpoch ?? -1
        return result
    }
}

/// What `ReplicaManager.leaderPartition` found: the partition this broker leads, or the error a request for it gets.
public enum LeaderLookup: Sendable {
    case leading(Partition)
    case refused(ErrorCode)
}

/// Idle values worth reusing (a `RecordBatchValidator` or a `LegacyMessageSetConverter` owns a `CompressionContext`
/// and scratch buffers), handed out to one append at a time. At most `limit` are kept; the caller gives back only
/// what it wants kept (not one whose buffers grew past 1 MiB, so one huge batch does not pin memory).
///
/// Thread-safe: `@unchecked Sendable` because the elements are not Sendable, but each is used by one task between
/// `take` and `give`, and the idle list is only touched under the `Mutex`.
final class ReusablePool<Element>: @unchecked Sendable {
    private struct Idle: @unchecked Sendable {
        var elements: [Element] = []
    }

    private let idle = Mutex(Idle())
    private let limit = 16
    private let make: () -> Element

    init(make: @escaping () -> Element) {
        self.make = make
    }

    func take() -> Element {
        let reused: Idle = self.idle.withLock { idle in
            guard let element = idle.elements.popLast() else { return Idle() }
            return Idle(elements: [element])
        }
        return reused.elements.first ?? self.make()
    }

    /// Returns `element` for reuse.
    func give(_ element: Element) {
        let box = Idle(elements: [element])
        self.idle.withLock { idle in
            if idle.elements.count < self.limit { idle.elements.append(contentsOf: box.elements) }
        }
    }
}
