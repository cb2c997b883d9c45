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
    /// `replica.lag.time.max.ms`: an ISR member not caught up for this long leaves the ISR. Default 30,000.
    public var replicaLagTimeMaxMs: Int64

    public init(brokerID: Int32, maxDecompressedBytes: Int = 64 * 1024 * 1024, replicaLagTimeMaxMs: Int64 = 30_000) {
        self.brokerID = brokerID
        self.maxDecompressedBytes = maxDecompressedBytes
        self.replicaLagTimeMaxMs = replicaLagTimeMaxMs
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
    /// The offset the high watermark must reach for an acks=all produce of these records to be answered (the
    /// last offset appended + 1); -1 on error.
    public var requiredOffset: Int64 = -1
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
    /// The epoch of the last batch the fetcher holds (Fetch v12+), -1 for none: the leader checks that its log
    /// agrees up to the fetch offset (KIP-595's diverging epoch).
    public var lastFetchedEpoch: Int32

    public init(
        topicPartition: TopicPartition,
        fetchOffset: Int64,
        maxBytes: Int,
        currentLeaderEpoch: Int32 = -1,
        lastFetchedEpoch: Int32 = -1
    ) {
        self.topicPartition = topicPartition
        self.fetchOffset = fetchOffset
        self.maxBytes = maxBytes
        self.currentLeaderEpoch = currentLeaderEpoch
        self.lastFetchedEpoch = lastFetchedEpoch
    }
}

/// Who reads: a consumer (up to the high watermark) or a follower broker of the partition (up to the log end, its
/// fetch offset recorded as its log end).
public enum FetchOrigin: Sendable, Hashable {
    case consumer
    /// A broker's replica fetcher: its node id and, from Fetch v15, its broker epoch (-1 when not sent).
    case follower(replicaID: Int32, brokerEpoch: Int64)

    /// Kafka's reading of a Fetch: replica id >= 0 (v0-14) or `ReplicaState.ReplicaId` (v15+) is a follower.
    public init(replicaID: Int32, replicaStateID: Int32, replicaEpoch: Int64, version: Int16) {
        let id = version >= 15 ? replicaStateID : replicaID
        self = id >= 0 ? .follower(replicaID: id, brokerEpoch: version >= 15 ? replicaEpoch : -1) : .consumer
    }

    public var isFollower: Bool {
        if case .follower = self { return true }
        return false
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
    /// `Partition.bytesAppended` (a follower's read) or `bytesCommitted` (a consumer's) when read, for a delayed
    /// fetch's condition.
    public var bytesAppended: Int64 = 0
    /// The leader's end offset of the fetch's last fetched epoch, when it is below the fetch offset or the epoch is
    /// unknown here: the fetcher truncates to it (KIP-595); nothing is read then.
    public var divergingEpoch: (epoch: Int32, endOffset: Int64)?

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
/// appended as leader with the partition's leader epoch; reads return file ranges, bounded by the high watermark
/// (a follower broker's by the log end). Each partition is leader or follower as the controller's image says
/// (`becomeLeader`, `becomeFollower`); the followers' fetchers (`ReplicaFetching`) are told what to follow, and a
/// leader's ISR changes go to the controller (`ISRChangeSending`), both in `ReplicaManager+Replication.swift`.
///
/// Disk work (appends, reads, look-ups, creating a log) runs on the `DiskIOPool`, never on an event loop or the
/// cooperative pool; batch validation (CPU: CRC, decompression) runs on the caller's task. `delayedFetches` is
/// notified after every append and high-watermark move, so parked fetches wake; `delayedProduces` (acks=all) on
/// every high-watermark move and change of ISR or role.
///
/// Thread-safe: the partition map is behind a `Mutex`; `Partition` and `LogManager` are thread-safe.
public final class ReplicaManager: Sendable {
    public let logManager: LogManager
    /// Where disk work runs; the Fetch handler also reads file ranges into memory here.
    public let ioPool: DiskIOPool
    public let configuration: ReplicaManagerConfiguration
    /// Fetches waiting for min.bytes, keyed by partition, woken by appends and high-watermark moves.
    public let delayedFetches = DelayedOperationQueue<TopicPartition>()
    /// acks=all produces waiting for the ISR, keyed by partition, woken by high-watermark moves and by changes of
    /// the ISR or the leadership.
    public let delayedProduces = DelayedOperationQueue<TopicPartition>()
    private let partitions = Mutex<[TopicPartition: Partition]>([:])
    /// The topics and brokers of the newest cluster image this broker applied, with its revision; nil until one is
    /// given (`applyImage`). Kafka's metadata cache, as far as the replica layer asks it who leads a partition.
    private let image = Mutex<(topics: [String: TopicImage], brokers: [Int32: BrokerRegistration], revision: Int64)?>(
        nil
    )
    /// The followers' fetchers; nil where nothing is followed (the standalone broker).
    let fetching: (any ReplicaFetching)?
    /// Where ISR changes go (AlterPartition to the active controller); nil where the ISR never changes (the
    /// standalone broker's partitions have one replica).
    let isrChanges: (any ISRChangeSending)?
    /// Validators keep their decompression contexts and scratch buffer, so a produce does not build them anew.
    private let validators = ReusablePool { RecordBatchValidator() }
    /// The same for Produce v0-2's message-set conversions.
    private let legacyConverters = ReusablePool {
        LegacyMessageSetConverter(options: LegacyMessageSetConversionOptions(maxMessageBytes: 0))
    }
    let logger: Logger

    /// - Parameters:
    ///   - fetching: the followers' fetchers, told which partitions to follow from which leader.
    ///   - isrChanges: where the leader's ISR changes go.
    public init(
        logManager: LogManager,
        ioPool: DiskIOPool,
        configuration: ReplicaManagerConfiguration,
        fetching: (any ReplicaFetching)? = nil,
        isrChanges: (any ISRChangeSending)? = nil,
        logger: Logger = Logger(label: "Replication.ReplicaManager")
    ) {
        self.logManager = logManager
        self.ioPool = ioPool
        self.configuration = configuration
        self.fetching = fetching
        self.isrChanges = isrChanges
        self.logger = logger
    }

    /// Milliseconds since the epoch, the clock follower fetch times are kept in.
    static func nowMs() -> Int64 { PartitionLog.nowMs() }

    // MARK: Leadership

    /// Makes this broker the partition's leader at `leaderEpoch`, creating its log (with the topic's config from
    /// the log manager) if it has none. Called by the controller's image follower; idempotent for the same epoch, and
    /// an epoch older than the partition's current one is ignored (epochs never go backwards). At the same leader
    /// epoch a newer `partitionEpoch` updates the ISR and replicas. Replicas and ISR not given are the image's (the
    /// broker alone when the image does not have the partition). A partition followed until now stops being fetched
    /// first. Parked fetches and produces on the partition are woken, so they re-check their leader epoch.
    @discardableResult
    public func becomeLeader(
        topic: String,
        partition: Int32,
        topicID: KafkaUUID,
        leaderEpoch: Int32,
        partitionEpoch: Int32? = nil,
        replicas: [Int32]? = nil,
        isr: [Int32]? = nil
    ) async throws -> Partition {
        let topicPartition = TopicPartition(topic, partition)
        let leadership = self.resolved(
            Leadership(
                topic: topic,
                partition: partition,
                topicID: topicID,
                leaderEpoch: leaderEpoch,
                partitionEpoch: partitionEpoch,
                replicas: replicas,
                isr: isr
            )
        )
        await self.stopFollowing([topicPartition])
        if let existing = self.partition(topicPartition) {
            if self.apply(leadership, to: existing) == .newEpoch {
                try await self.assignEpochStart(leaderEpoch, in: existing.log)
            }
            self.wakeParked(topicPartition)
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
        let hosted = self.host(topicPartition, log: log, topicID: topicID)
        if self.apply(leadership, to: hosted) == .newEpoch {
            try await self.assignEpochStart(leaderEpoch, in: hosted.log)
        }
        self.wakeParked(topicPartition)
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
        /// nil: the image's (see `becomeLeader`).
        public var partitionEpoch: Int32?
        public var replicas: [Int32]?
        public var isr: [Int32]?

        public init(
            topic: String,
            partition: Int32,
            topicID: KafkaUUID,
            leaderEpoch: Int32,
            partitionEpoch: Int32? = nil,
            replicas: [Int32]? = nil,
            isr: [Int32]? = nil
        ) {
            self.topic = topic
            self.partition = partition
            self.topicID = topicID
            self.leaderEpoch = leaderEpoch
            self.partitionEpoch = partitionEpoch
            self.replicas = replicas
            self.isr = isr
        }
    }

    /// `leadership` with what it leaves out taken from the image, or this broker alone.
    private func resolved(_ leadership: Leadership) -> Leadership {
        guard leadership.replicas == nil || leadership.isr == nil || leadership.partitionEpoch == nil else {
            return leadership
        }
        var resolved = leadership
        let state = self.imagePartition(TopicPartition(leadership.topic, leadership.partition))
        let known = state.flatMap { $0.leaderEpoch == leadership.leaderEpoch ? $0 : nil }
        resolved.replicas = leadership.replicas ?? known?.replicas ?? [self.configuration.brokerID]
        resolved.isr = leadership.isr ?? known?.isr ?? [self.configuration.brokerID]
        resolved.partitionEpoch = leadership.partitionEpoch ?? known?.partitionEpoch ?? 0
        return resolved
    }

    private func apply(_ leadership: Leadership, to partition: Partition) -> Partition.LeaderChange {
        let brokerID = self.configuration.brokerID
        var replicas = leadership.replicas ?? [brokerID]
        if !replicas.contains(brokerID) { replicas.append(brokerID) }
        var isr = leadership.isr ?? [brokerID]
        if !isr.contains(brokerID) { isr.append(brokerID) }
        return partition.becomeLeader(
            topicID: leadership.topicID,
            leaderID: brokerID,
            leaderEpoch: leadership.leaderEpoch,
            partitionEpoch: leadership.partitionEpoch ?? 0,
            replicas: replicas,
            isr: isr,
            nowMs: Self.nowMs()
        )
    }

    /// The hosted partition of `topicPartition`, hosted now over `log` (as a follower of nobody until a role is
    /// applied) unless another task hosted it first.
    func host(_ topicPartition: TopicPartition, log: ManagedLog, topicID: KafkaUUID) -> Partition {
        self.partitions.withLock { partitions in
            if let raced = partitions[topicPartition] { return raced }
            let created = Partition(
                topicPartition: topicPartition,
                log: log,
                topicID: topicID,
                leaderEpoch: -1,
                partitionEpoch: -1,
                role: .follower(leaderID: nil)
            )
            partitions[topicPartition] = created
            return created
        }
    }

    /// Stops the fetchers of those of `topicPartitions` this broker follows now (before it leads them).
    func stopFollowing(_ topicPartitions: [TopicPartition]) async {
        guard let fetching = self.fetching else { return }
        let followed = topicPartitions.filter { self.partition($0).map { !$0.isLeader } ?? false }
        guard !followed.isEmpty else { return }
        await fetching.unfollow(followed)
    }

    /// Wakes what is parked on `topicPartition`: fetches and acks=all produces re-check their condition.
    func wakeParked(_ topicPartition: TopicPartition) {
        self.delayedFetches.notify(topicPartition)
        self.delayedProduces.notify(topicPartition)
    }

    /// `becomeLeader` for many partitions at once (the elections of a start, or of a new topic): the work runs in
    /// chunks spread over the disk pool's threads, and each new epoch's `leader-epoch-checkpoint` is written without
    /// fsync, then all of them are made durable by one sync of the log directories' file systems before this
    /// returns, instead of one fsync and one directory fsync per partition. A crash before that sync loses nothing:
    /// the epochs are in the controller's store, and a flush syncs an unsynced checkpoint before its recovery point
    /// moves, so recovery finds every batch of the new epoch it might miss in the checkpoint past the recovery point.
    /// Partitions followed until now stop being fetched first.
    /// - Returns: per leadership, in order, nil or why that partition could not become leader (it is then not
    ///   hosted, or keeps its earlier epoch in the checkpoint).
    public func becomeLeader(_ leaderships: [Leadership]) async -> [(any Error)?] {
        guard !leaderships.isEmpty else { return [] }
        let leaderships = leaderships.map(self.resolved)
        await self.stopFollowing(leaderships.map { TopicPartition($0.topic, $0.partition) })
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
            self.wakeParked(TopicPartition(leadership.topic, leadership.partition))
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
                    hosted = self.host(topicPartition, log: log, topicID: leadership.topicID)
                }
                if self.apply(leadership, to: hosted) == .newEpoch,
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
        self.wakeParked(topicPartition)
        return (.none, "")
    }

    /// Stops hosting the partition (its topic was deleted): from now on appends and reads answer
    /// UNKNOWN_TOPIC_OR_PARTITION, and its parked fetches are woken to answer so. The log is the caller's to delete.
    @discardableResult
    public func removePartition(_ topicPartition: TopicPartition) -> Partition? {
        let removed = self.partitions.withLock { $0.removeValue(forKey: topicPartition) }
        self.wakeParked(topicPartition)
        return removed
    }

    /// The hosted partitions `isIncluded` keeps.
    func partitions(matching isIncluded: (Partition) -> Bool) -> [Partition] {
        self.partitions.withLock { $0.values.filter(isIncluded) }
    }

    /// The hosted partition, nil if this broker does not host it.
    public func partition(_ topicPartition: TopicPartition) -> Partition? {
        self.partitions.withLock { $0[topicPartition] }
    }

    /// Takes the topics and brokers of the cluster image at `revision`, unless an image at least as new was given
    /// already: from then on a partition the image gives another leader (or none) is not served here.
    public func applyImage(
        topics: [String: TopicImage],
        brokers: [Int32: BrokerRegistration] = [:],
        revision: Int64
    ) {
        self.image.withLock { image in
            guard revision > image?.revision ?? Int64.min else { return }
            image = (topics, brokers, revision)
        }
    }

    /// The partition's state in the image; nil when the image does not have it (or none was given).
    func imagePartition(_ topicPartition: TopicPartition) -> PartitionState? {
        self.image.withLock { image in
            guard let partitions = image?.topics[topicPartition.topic]?.partitions,
                partitions.indices.contains(Int(topicPartition.partition))
            else { return nil }
            return partitions[Int(topicPartition.partition)]
        }
    }

    /// Kafka's `isReplicaIsrEligible`: the image has the broker registered and not fenced, and (KIP-903) at the broker
    /// epoch it fetched with, when both are known; the controller would refuse it otherwise (INELIGIBLE_REPLICA).
    func isEligibleForISR(_ replicaID: Int32, brokerEpoch: Int64) -> Bool {
        self.image.withLock { image in
            guard let image else { return true }
            guard let registration = image.brokers[replicaID], !registration.fenced else { return false }
            return brokerEpoch < 0 || registration.brokerEpoch <= 0 || registration.brokerEpoch == brokerEpoch
        }
    }

    /// Kafka's current-leader hint for a client this broker refused with NOT_LEADER_OR_FOLLOWER: the leader and
    /// leader epoch the image gives the partition (-1 and -1 when it has none or does not know the partition), and
    /// the leader's endpoint on `listener` and rack when the image has them and the leader is not fenced.
    public func currentLeader(of topicPartition: TopicPartition, listener: String) -> LeaderHint {
        guard let state = self.imagePartition(topicPartition), let leader = state.leader else {
            return LeaderHint(leaderID: -1, leaderEpoch: -1)
        }
        // Kafka's `getAliveBrokerNode`: a fenced leader's endpoint is not handed out.
        let registration = self.image.withLock { $0?.brokers[leader] }.flatMap { $0.fenced ? nil : $0 }
        return LeaderHint(
            leaderID: leader,
            leaderEpoch: state.leaderEpoch,
            endpoint: registration?.endpoints.first { $0.listener == listener },
            rack: registration?.rack
        )
    }

    /// The partition if this broker serves it as leader; otherwise the error Kafka's `getPartitionOrError` gives
    /// Produce, Fetch, ListOffsets and OffsetForLeaderEpoch: NOT_LEADER_OR_FOLLOWER for a partition the image has
    /// but this broker does not lead (another broker leads it, none does, this broker follows it, or its log is not
    /// open here yet), and UNKNOWN_TOPIC_OR_PARTITION for one the image does not have. A hosted partition the image
    /// does not have yet (no image was given, or the image is a moment behind a creation) is served if it leads.
    public func leaderPartition(_ topicPartition: TopicPartition) -> LeaderLookup {
        let hosted = self.partition(topicPartition)
        guard let state = self.imagePartition(topicPartition) else {
            guard let hosted else { return .refused(.unknownTopicOrPartition) }
            return hosted.isLeader ? .leading(hosted) : .refused(.notLeaderOrFollower)
        }
        guard let hosted, state.leader == self.configuration.brokerID, hosted.isLeader else {
            return .refused(.notLeaderOrFollower)
        }
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
    /// (INVALID_TIMESTAMP). Nothing is written unless every batch passes. With acks=-1 an ISR smaller than
    /// `min.insync.replicas` (topic config, never more than the replicas) refuses the records before all that
    /// (NOT_ENOUGH_REPLICAS), as Kafka's `appendRecordsToLeader` does.
    ///
    /// An acks=-1 append is answered once the high watermark reaches `requiredOffset` (`awaitReplication`); with the
    /// ISR being this broker alone that is as soon as the append returns.
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
        if requiredAcks == -1, let leader = hosted.leaderState, leader.isUnderMinISR(Int(config.minInSyncReplicas)) {
            return AppendResult(
                error: .notEnoughReplicas,
                errorMessage: "The size of the current ISR \(leader.isr) is insufficient to satisfy the min.isr "
                    + "requirement of \(leader.effectiveMinISR(Int(config.minInSyncReplicas))) for partition "
                    + "\(topicPartition)"
            )
        }
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
        let appended: LogAppendInfo?
        do {
            appended = try await self.ioPool.run { () throws -> LogAppendInfo? in
                // The partition may have become a follower while the records were checked: its fetchers own the
                // log now (Kafka holds the leader-and-ISR lock across the append instead).
                guard hosted.isLeader, hosted.leaderEpoch == leaderEpoch else { return nil }
                return try hosted.log.appendAsLeader(records, leaderEpoch: leaderEpoch)
            }
        } catch let error as StorageError {
            return AppendResult(error: error.kafkaErrorCode, errorMessage: "\(error)")
        } catch {
            return AppendResult(error: .unknownServerError, errorMessage: "\(error)")
        }
        guard let info = appended else { return AppendResult(error: .notLeaderOrFollower) }
        if !info.isDuplicate {
            let committed = hosted.recordAppend(bytes: records.readableBytes, endOffset: info.lastOffset + 1)
            self.delayedFetches.notify(topicPartition)
            if committed { self.delayedProduces.notify(topicPartition) }
        }
        var result = AppendResult(error: .none)
        result.baseOffset = info.firstOffset
        result.requiredOffset = info.lastOffset + 1
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
    /// the limits (so a batch larger than the limits cannot stall a consumer), later ones only what fits. A
    /// consumer's reads stop at the high watermark, a follower's at the log end. An offset equal to that bound is
    /// not an error: it reads nothing. OFFSET_OUT_OF_RANGE is only for offsets below the log start or above the log
    /// end.
    ///
    /// A follower (`origin`) must be a replica of each partition (Kafka's `followerReplicaOrThrow`: otherwise
    /// UNKNOWN_LEADER_EPOCH when the fetch names a current leader epoch, else NOT_LEADER_OR_FOLLOWER, and nothing
    /// is recorded); its fetch offset is recorded as its log end, which may move the high watermark (parked
    /// consumer fetches and acks=all produces are then woken) and let it rejoin the ISR. A read with a last fetched
    /// epoch (Fetch v12+) whose epoch ends below the fetch offset here, or is unknown here, answers the diverging
    /// epoch and reads nothing (KIP-595), and records nothing.
    ///
    /// Runs as one job on the disk pool (the index look-ups may fault pages in).
    public func read(
        _ reads: [PartitionRead],
        maxBytes: Int,
        origin: FetchOrigin = .consumer
    ) async -> [PartitionReadResult] {
        let hosted = reads.map { self.leaderPartition($0.topicPartition) }
        let nowMs = Self.nowMs()
        let outcomes: [(PartitionReadResult, Partition.FollowerFetchOutcome?)]
        do {
            outcomes = try await self.ioPool.run {
                var remaining = max(0, maxBytes)
                var minOneBatch = true
                var outcomes: [(PartitionReadResult, Partition.FollowerFetchOutcome?)] = []
                outcomes.reserveCapacity(reads.count)
                for (read, partition) in zip(reads, hosted) {
                    let outcome = Self.read(
                        read,
                        from: partition,
                        origin: origin,
                        nowMs: nowMs,
                        remaining: remaining,
                        minOneBatch: minOneBatch
                    )
                    if outcome.0.byteCount > 0 {
                        minOneBatch = false
                        remaining = max(0, remaining - outcome.0.byteCount)
                    }
                    outcomes.append(outcome)
                }
                return outcomes
            }
        } catch {
            return reads.map { _ in PartitionReadResult(error: .kafkaStorageError) }
        }
        for ((_, outcome), (read, lookup)) in zip(outcomes, zip(reads, hosted)) {
            guard case .recorded(let moved, let expansion) = outcome, case .leading(let partition) = lookup else {
                continue
            }
            if moved { self.wakeParked(read.topicPartition) }
            if let expansion, case .follower(let replicaID, let brokerEpoch) = origin,
                self.isEligibleForISR(replicaID, brokerEpoch: brokerEpoch)
            {
                self.proposeISRChange(expansion, for: partition)
            }
        }
        return outcomes.map(\.0)
    }

    private static func read(
        _ read: PartitionRead,
        from leader: LeaderLookup,
        origin: FetchOrigin,
        nowMs: Int64,
        remaining: Int,
        minOneBatch: Bool
    ) -> (PartitionReadResult, Partition.FollowerFetchOutcome?) {
        let partition: Partition
        switch leader {
        case .leading(let leading): partition = leading
        case .refused(let error): return (PartitionReadResult(error: error), nil)
        }
        let epochError = partition.checkLeaderEpoch(read.currentLeaderEpoch)
        var result = PartitionReadResult(error: epochError)
        result.bytesAppended = origin.isFollower ? partition.bytesAppended : partition.bytesCommitted
        // As Kafka, offsets as they were before the read: appends that follow cannot keep a follower out of sync.
        let logEndOffset = partition.logEndOffset
        let highWatermark = partition.highWatermark
        result.highWatermark = highWatermark
        result.lastStableOffset = partition.lastStableOffset
        result.logStartOffset = partition.logStartOffset
        guard epochError == .none else { return (result, nil) }
        if case .follower(let replicaID, _) = origin, !partition.isFollower(replicaID) {
            result.error = read.currentLeaderEpoch >= 0 ? .unknownLeaderEpoch : .notLeaderOrFollower
            return (result, nil)
        }
        let limit = min(max(0, read.maxBytes), remaining)
        do {
            let info = try partition.log.withLog { (log) throws(StorageError) -> LogReadInfo? in
                if read.lastFetchedEpoch >= 0 {
                    let found = log.endOffset(forEpoch: read.lastFetchedEpoch)
                    guard found.epoch >= 0, found.endOffset >= 0, read.fetchOffset >= log.logStartOffset else {
                        throw .offsetOutOfRange(
                            "\(read.topicPartition)",
                            offset: read.fetchOffset,
                            logStartOffset: log.logStartOffset,
                            logEndOffset: logEndOffset
                        )
                    }
                    if found.epoch < read.lastFetchedEpoch || found.endOffset < read.fetchOffset {
                        result.divergingEpoch = (found.epoch, found.endOffset)
                        return nil
                    }
                }
                return try log.read(
                    from: read.fetchOffset,
                    maxBytes: limit,
                    maxOffset: origin.isFollower ? logEndOffset : highWatermark,
                    minOneBatch: minOneBatch
                )
            }
            guard let info else { return (result, nil) }
            result.range = info.range
            result.logStartOffset = info.logStartOffset
        } catch {
            result.error = error.kafkaErrorCode
            return (result, nil)
        }
        guard case .follower(let replicaID, let brokerEpoch) = origin else { return (result, nil) }
        let outcome = partition.recordFollowerFetch(
            from: replicaID,
            fetchOffset: read.fetchOffset,
            brokerEpoch: brokerEpoch,
            leaderLogEndOffset: logEndOffset,
            nowMs: nowMs
        )
        result.highWatermark = partition.highWatermark
        result.lastStableOffset = result.highWatermark
        return (result, outcome)
    }

    // MARK: ListOffsets

    /// ListOffsets for one partition: earliest is the log start, latest the high watermark (= last stable offset
    /// without transactions, so both isolation levels agree), max timestamp and by-timestamp only among offsets
    /// below the high watermark. Nothing found gives offset and timestamp -1 with no error, as Kafka answers.
    public func offset(
        for spec: OffsetSpec,
        topic: String,
        partition: Int32,
        currentLeaderEpoch: Int32 = -1,
        isFromConsumer: Bool = true
    ) async -> OffsetLookupResult {
        let hosted: Partition
        switch self.leaderPartition(TopicPartition(topic, partition)) {
        case .leading(let leading): hosted = leading
        case .refused(let error): return OffsetLookupResult(error: error)
        }
        let epochError = hosted.checkLeaderEpoch(currentLeaderEpoch)
        guard epochError == .none else { return OffsetLookupResult(error: epochError) }
        // Consumers see up to the high watermark; a replica or a debugging tool (Kafka's isolation level None), up
        // to the log end.
        let highWatermark = isFromConsumer ? hosted.highWatermark : hosted.logEndOffset
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

/// Who leads a partition as far as this broker's image knows (`ReplicaManager.currentLeader`).
public struct LeaderHint: Sendable, Hashable {
    public var leaderID: Int32
    public var leaderEpoch: Int32
    public var endpoint: BrokerEndpoint?
    public var rack: String?

    public init(leaderID: Int32, leaderEpoch: Int32, endpoint: BrokerEndpoint? = nil, rack: String? = nil) {
        self.leaderID = leaderID
        self.leaderEpoch = leaderEpoch
        self.endpoint = endpoint
        self.rack = rack
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
