import ClusterControl
import GroupCoordinator
import KafkaMessages
import KafkaProperties
import KafkaRecords
import KafkaWire
import LogStorage
import Logging
import NIOCore
import Replication
import Synchronization

/// `__consumer_offsets`, where the group coordinator keeps committed offsets in Kafka's record layouts, so tools
/// that read the topic (Burrow) understand it: key `OffsetCommitKey` v1 (group, topic, partition) and value
/// `OffsetCommitValue` v3 (offset, leader epoch, metadata, commit timestamp), each prefixed by its version, and the
/// groups' state as key `GroupMetadataKey` v2 and value `GroupMetadataValue` v3 (what Kafka 2.3 to 3.x write). A
/// group's records go to partition `abs(groupID.hashCode) % offsets.topic.num.partitions`, Java's `String.hashCode`,
/// as Kafka places them. The topic is compacted and created on the first group lookup, as Kafka does.
///
/// Each group depends on its own partition only: one that cannot be opened (or is offline) makes its groups'
/// coordinator unavailable, and no other group's; opening it is retried by later lookups, at most once per
/// `retryIntervalMs`. A partition whose records were not read at start (it opened later) is read then, and its
/// records handed to `whenPartitionLoadsLate`, before its groups are served.
///
/// Thread-safe: its members are, and its own state is behind a `Mutex`.
public final class ConsumerOffsetsTopic: GroupStore {
    public static let name = "__consumer_offsets"
    /// The least time between two attempts to open (or read) one unavailable partition.
    static let retryIntervalMs: Int64 = 1_000

    let controller: Controller
    /// Creates the topic: on the active controller, wherever it runs.
    private let topicCreator: TopicCreator
    let replicas: ReplicaManager
    let nodeID: Int32
    let partitionCount: Int32
    let replicationFactor: Int16
    let segmentBytes: Int32
    let logger: Logger
    private let state = Mutex(State())

    private struct State {
        /// Partitions whose records the group coordinator has (read at start, or late).
        var loaded: Set<Int32> = []
        /// Partitions being read late by one lookup; others answer unavailable meanwhile.
        var loading: Set<Int32> = []
        /// When opening or reading each unavailable partition was last tried.
        var lastAttemptMs: [Int32: Int64] = [:]
        /// Whether the start-up read (`readAll`) ran: only after it are partitions read late.
        var startupReadDone = false
        var lateLoader: (@Sendable ([StoredRecord]) async -> Void)?
    }

    public convenience init(
        controller: Controller,
        replicas: ReplicaManager,
        configuration: BrokerConfiguration,
        logger: Logger
    ) {
        self.init(
            controller: controller,
            replicas: replicas,
            configuration: configuration,
            forwarding: nil,
            logger: logger
        )
    }

    /// A broker of a cluster: the topic is created by the active controller, wherever it runs.
    init(
        controller: Controller,
        replicas: ReplicaManager,
        configuration: BrokerConfiguration,
        forwarding: ControllerForwarding?,
        logger: Logger
    ) {
        self.topicCreator = TopicCreator(controller: controller, forwarding: forwarding)
        self.controller = controller
        self.logger = logger
        self.replicas = replicas
        self.nodeID = configuration.nodeID
        self.partitionCount = configuration.settings.int("offsets.topic.num.partitions")
        self.replicationFactor = Int16(configuration.settings.int("offsets.topic.replication.factor"))
        self.segmentBytes = configuration.settings.int("offsets.topic.segment.bytes")
    }

    /// Where the records of a partition read after start-up go (the group coordinator's `load`).
    public func whenPartitionLoadsLate(_ loader: @escaping @Sendable ([StoredRecord]) async -> Void) {
        self.state.withLock { $0.lateLoader = loader }
    }

    /// Whether this broker can coordinate `groupID` now: creates the topic if it does not exist yet (more replicas
    /// than live brokers are cut to the live count), then checks the group's own partition only. A partition that
    /// is not open is opened again (at most once per `retryIntervalMs`), and one opened after start-up is read
    /// before its groups are served. False at once when it is not ready (the caller answers
    /// COORDINATOR_NOT_AVAILABLE, retriable); never waits for other partitions.
    public func isAvailable(forGroup groupID: String) async -> Bool {
        guard await self.ensureCreated() else { return false }
        let index = Self.partition(of: groupID, count: self.partitionCount)
        let topicPartition = TopicPartition(Self.name, index)
        var hosted = self.replicas.partition(topicPartition)
        if hosted == nil {
            guard self.claimAttempt(index) else { return false }
            hosted = await self.reopen(index)
        }
        guard let hosted, !hosted.log.isOffline else { return false }
        return await self.loadIfNeeded(index, hosted)
    }

    /// Whether a retry of partition `index` is due now; records the attempt when it is.
    private func claimAttempt(_ index: Int32) -> Bool {
        let now = PartitionLog.nowMs()
        return self.state.withLock { state in
            if let last = state.lastAttemptMs[index], now - last < Self.retryIntervalMs { return false }
            state.lastAttemptMs[index] = now
            return true
        }
    }

    /// Opens partition `index` again as the controller's image says this broker leads it; nil when it cannot.
    private func reopen(_ index: Int32) async -> Partition? {
        guard let topic = try? await self.controller.image().topics[Self.name], Int(index) < topic.partitions.count,
            topic.partitions[Int(index)].leader == self.nodeID
        else { return nil }
        do {
            let partition = try await self.replicas.becomeLeader(
                topic: Self.name,
                partition: index,
                topicID: topic.id,
                leaderEpoch: topic.partitions[Int(index)].leaderEpoch
            )
            self.logger.info(
                "Opened an offsets partition on retry",
                metadata: ["partition": "\(partition.topicPartition)"]
            )
            return partition
        } catch {
            self.logger.warning(
                "An offsets partition cannot be opened; its groups have no coordinator",
                metadata: ["partition": "\(Self.name)-\(index)", "error": "\(error)"]
            )
            return self.replicas.partition(TopicPartition(Self.name, index))
        }
    }

    /// Reads partition `index` for the group coordinator if the start-up read did not; whether its groups can be
    /// served now.
    private func loadIfNeeded(_ index: Int32, _ partition: Partition) async -> Bool {
        enum Step { case ready, busy, load((@Sendable ([StoredRecord]) async -> Void)?) }
        let deadline = ContinuousClock.now + .seconds(2)
        var step = Step.busy
        while true {
            step = self.state.withLock { state in
                guard state.startupReadDone, !state.loaded.contains(index) else { return .ready }
                guard !state.loading.contains(index) else { return .busy }
                state.loading.insert(index)
                return .load(state.lateLoader)
            }
            // Another lookup is reading it (a few milliseconds for a new, empty partition).
            guard case .busy = step, ContinuousClock.now < deadline else { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
        let loader: (@Sendable ([StoredRecord]) async -> Void)?
        switch step {
        case .ready: return true
        case .busy: return false
        case .load(let late): loader = late
        }
        var loaded = false
        defer {
            self.state.withLock { state in
                state.loading.remove(index)
                if loaded { state.loaded.insert(index) }
            }
        }
        do {
            let records = try await self.read(partition)
            if !records.isEmpty { await loader?(records) }
            loaded = true
        } catch {
            self.logger.warning(
                "An offsets partition cannot be read; its groups have no coordinator",
                metadata: ["partition": "\(partition.topicPartition)", "error": "\(error)"]
            )
        }
        return loaded
    }

    /// Creates the topic if it does not exist yet; false when it could not be.
    private func ensureCreated() async -> Bool {
        if (try? await self.controller.image().topics[Self.name]) == nil {
            let live = Int16(clamping: await self.controller.liveBrokers.count)
            do {
                _ = try await self.topicCreator.createTopic(
                    Self.name,
                    partitions: self.partitionCount,
                    replicationFactor: max(1, min(self.replicationFactor, live)),
                    configs: ["cleanup.policy": "compact", "segment.bytes": String(self.segmentBytes)]
                )
            } catch {
                guard (try? await self.controller.image().topics[Self.name]) != nil else { return false }
            }
        }
        return true
    }

    /// Kafka's partition of a group: `Utils.abs(groupId.hashCode) % partitions`.
    static func partition(of groupID: String, count: Int32) -> Int32 {
        var hash: Int32 = 0
        for unit in groupID.utf16 { hash = hash &* 31 &+ Int32(unit) }
        let positive = hash == Int32.min ? 0 : abs(hash)
        return positive % max(count, 1)
    }

    public func persist(groupID: String, offsets: [(TopicPartition, CommittedOffset?)]) async throws {
        var builder = RecordBatchBuilder()
        let now = PartitionLog.nowMs()
        for (partition, committed) in offsets {
            var key = WireWriter()
            key.writeInt16(1)
            OffsetCommitKey(group: groupID, topic: partition.topic, partition: partition.partition)
                .encode(into: &key, version: 1)
            // A deleted offset is a tombstone: the cleaner removes the key.
            guard let committed else {
                builder.append(timestamp: now, key: key.buffer, value: nil)
                continue
            }
            // v3, which Burrow and Kafka's tools read; v1 when an expire timestamp must be kept (v3 has none).
            let version: Int16 = committed.expireTimestamp == nil ? 3 : 1
            var value = WireWriter()
            value.writeInt16(version)
            OffsetCommitValue(
                offset: committed.offset,
                leaderEpoch: committed.leaderEpoch,
                metadata: committed.metadata ?? "",
                commitTimestamp: committed.commitTimestamp,
                expireTimestamp: committed.expireTimestamp ?? -1
            ).encode(into: &value, version: version)
            builder.append(timestamp: committed.commitTimestamp, key: key.buffer, value: value.buffer)
        }
        try await self.append(builder, of: groupID)
    }

    public func persist(groupID: String, group: StoredGroup?) async throws {
        var key = WireWriter()
        key.writeInt16(2)
        GroupMetadataKey(group: groupID).encode(into: &key, version: 2)
        var builder = RecordBatchBuilder()
        guard let group else {
            builder.append(timestamp: PartitionLog.nowMs(), key: key.buffer, value: nil)
            return try await self.append(builder, of: groupID)
        }
        var value = WireWriter()
        value.writeInt16(3)
        GroupMetadataValue(
            protocolType: group.protocolType,
            generation: group.generation,
            protocol: group.protocolName,
            leader: group.leader,
            currentStateTimestamp: group.stateTimestamp,
            members: group.members.map {
                .init(
                    memberID: $0.memberID,
                    groupInstanceID: $0.instanceID,
                    clientID: $0.clientID,
                    clientHost: $0.clientHost,
                    rebalanceTimeout: $0.rebalanceTimeoutMs,
                    sessionTimeout: $0.sessionTimeoutMs,
                    subscription: ByteBuffer(bytes: $0.subscription),
                    assignment: ByteBuffer(bytes: $0.assignment)
                )
            }
        ).encode(into: &value, version: 3)
        builder.append(timestamp: group.stateTimestamp, key: key.buffer, value: value.buffer)
        try await self.append(builder, of: groupID)
    }

    /// Appends the group's records to its partition with acks=all; throws (and logs) when they were not kept.
    private func append(_ builder: RecordBatchBuilder, of groupID: String) async throws {
        let result = await self.replicas.append(
            topic: Self.name,
            partition: Self.partition(of: groupID, count: self.partitionCount),
            records: try builder.build().buffer,
            requiredAcks: -1,
            origin: .coordinator
        )
        guard result.error == .none else {
            let error = ConsumerOffsetsError(
                description: "appending to \(Self.name): \(result.error) \(result.errorMessage ?? "")"
            )
            self.logger.warning("Group records not kept", metadata: ["group": "\(groupID)", "error": "\(error)"])
            throw error
        }
    }

    /// Every offset commit and group state the topic holds on this broker, in log order per partition (for
    /// `GroupCoordinator.load` at start). A partition that is offline or cannot be read is left out, with a
    /// warning: its groups have no coordinator until a lookup reads it.
    public func readAll() async throws -> [StoredRecord] {
        var entries: [StoredRecord] = []
        var loaded: Set<Int32> = []
        for index in 0..<self.partitionCount {
            guard let partition = self.replicas.partition(TopicPartition(Self.name, index)) else { continue }
            guard !partition.log.isOffline else { continue }
            do {
                entries += try await self.read(partition)
                loaded.insert(index)
            } catch {
                self.logger.warning(
                    "An offsets partition cannot be read; its groups have no coordinator",
                    metadata: ["partition": "\(partition.topicPartition)", "error": "\(error)"]
                )
            }
        }
        self.state.withLock { state in
            state.loaded.formUnion(loaded)
            state.startupReadDone = true
        }
        return entries
    }

    /// The offset commits and group states in one partition, in log order.
    private func read(_ partition: Partition) async throws -> [StoredRecord] {
        var entries: [StoredRecord] = []
        let compression = CompressionContext()
        var offset = partition.logStartOffset
        while offset < partition.logEndOffset {
            let start = offset
            let bytes = try await self.replicas.ioPool.run {
                try partition.log.withLog { (log) throws(StorageError) in
                    try log.read(from: start, maxBytes: 1 << 20).range?.readBytes()
                }
            }
            guard let bytes else { break }
            var splitter = RecordBatchSplitter(ByteBuffer(bytes: bytes))
            while let batch = try splitter.next() {
                offset = batch.lastOffset + 1
                guard !batch.attributes.isControl else { continue }
                var records = try batch.makeRecordIterator(compression: compression, maxDecompressedBytes: 64 << 20)
                while let record = try records.next() {
                    if let entry = try Self.decode(record) { entries.append(entry) }
                }
            }
        }
        return entries
    }

    /// An offset commit or group state record (a nil value: a tombstone); nil for records of other kinds.
    static func decode(_ record: Record) throws -> StoredRecord? {
        guard let keyBytes = record.key else { return nil }
        var key = WireReader(buffer: keyBytes)
        let keyVersion = try key.readInt16()
        var value = record.value.map { WireReader(buffer: $0) }
        let valueVersion = try value?.readInt16()
        switch keyVersion {
        case 0, 1:
            let commitKey = try OffsetCommitKey(from: &key, version: keyVersion)
            let partition = TopicPartition(commitKey.topic, commitKey.partition)
            guard var value, let valueVersion else {
                return .offset(groupID: commitKey.group, partition: partition, offset: nil)
            }
            let commit = try OffsetCommitValue(from: &value, version: valueVersion)
            return .offset(
                groupID: commitKey.group,
                partition: partition,
                offset: CommittedOffset(
                    offset: commit.offset,
                    leaderEpoch: commit.leaderEpoch,
                    metadata: commit.metadata,
                    commitTimestamp: commit.commitTimestamp,
                    expireTimestamp: valueVersion == 1 && commit.expireTimestamp >= 0 ? commit.expireTimestamp : nil
                )
            )
        case 2:
            let groupID = try GroupMetadataKey(from: &key, version: keyVersion).group
            guard var value, let valueVersion else { return .group(groupID: groupID, nil) }
            let group = try GroupMetadataValue(from: &value, version: valueVersion)
            return .group(
                groupID: groupID,
                StoredGroup(
                    protocolType: group.protocolType,
                    generation: group.generation,
                    protocolName: group.protocol,
                    leader: group.leader,
                    stateTimestamp: group.currentStateTimestamp,
                    members: group.members.map {
                        StoredMember(
                            memberID: $0.memberID,
                            instanceID: $0.groupInstanceID,
                            clientID: $0.clientID,
                            clientHost: $0.clientHost,
                            rebalanceTimeoutMs: $0.rebalanceTimeout,
                            sessionTimeoutMs: $0.sessionTimeout,
                            subscription: Array($0.subscription.readableBytesView),
                            assignment: Array($0.assignment.readableBytesView)
                        )
                    }
                )
            )
        default:
            return nil
        }
    }
}

/// A commit the topic could not keep.
struct ConsumerOffsetsError: Error, CustomStringConvertible {
    let description: String
}

extension GroupCoordinator {
    /// Drops the offsets of topics the cluster deleted (Kafka's `cleanupGroupMetadata`): of those deleted while this
    /// broker was down at once, of later ones as they go. Call after `load`.
    public func follow(_ controller: Controller) async throws {
        await controller.addListener { change in
            guard case .topicDeleted(let topic) = change else { return }
            // Not awaited: the controller's listeners must return quickly.
            Task { await self.removeOffsets(ofTopics: [topic.name]) }
        }
        let existing = Set(try await controller.image().topics.keys)
        await self.removeOffsets(ofTopics: self.topicsWithOffsets().subtracting(existing))
    }
}
