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

/// `__consumer_offsets`, where the group coordinator keeps committed offsets in Kafka's record layouts, so tools
/// that read the topic (Burrow) understand it: key `OffsetCommitKey` v1 (group, topic, partition) and value
/// `OffsetCommitValue` v3 (offset, leader epoch, metadata, commit timestamp), each prefixed by its version, and the
/// groups' state as key `GroupMetadataKey` v2 and value `GroupMetadataValue` v3 (what Kafka 2.3 to 3.x write). A
/// group's records go to partition `abs(groupID.hashCode) % offsets.topic.num.partitions`, Java's `String.hashCode`,
/// as Kafka places them. The topic is compacted and created on the first group lookup, as Kafka does.
///
/// Thread-safe: its members are.
public final class ConsumerOffsetsTopic: GroupStore {
    public static let name = "__consumer_offsets"

    let controller: Controller
    let replicas: ReplicaManager
    let partitionCount: Int32
    let replicationFactor: Int16
    let segmentBytes: Int32
    let logger: Logger

    public init(controller: Controller, replicas: ReplicaManager, configuration: BrokerConfiguration, logger: Logger) {
        self.controller = controller
        self.logger = logger
        self.replicas = replicas
        self.partitionCount = configuration.settings.int("offsets.topic.num.partitions")
        self.replicationFactor = Int16(configuration.settings.int("offsets.topic.replication.factor"))
        self.segmentBytes = configuration.settings.int("offsets.topic.segment.bytes")
    }

    /// Creates the topic if it does not exist yet and waits (up to 5 s) until this broker serves its partitions, so
    /// the first group records can be appended; false when it is not ready (the caller answers
    /// COORDINATOR_NOT_AVAILABLE, retriable). More replicas than live brokers are cut to the live count.
    public func ensureCreated() async -> Bool {
        if (try? await self.controller.image().topics[Self.name]) == nil {
            let live = Int16(clamping: await self.controller.liveBrokers.count)
            do {
                try await self.controller.createTopic(
                    Self.name,
                    partitions: self.partitionCount,
                    replicationFactor: max(1, min(self.replicationFactor, live)),
                    configs: ["cleanup.policy": "compact", "segment.bytes": String(self.segmentBytes)]
                )
            } catch {
                guard (try? await self.controller.image().topics[Self.name]) != nil else { return false }
            }
        }
        // The controller's listener opens the new partitions' logs after the commit.
        let deadline = ContinuousClock.now + .seconds(5)
        while (0..<self.partitionCount).contains(where: { self.replicas.partition(TopicPartition(Self.name, $0)) == nil }) {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
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

    public func persist(groupID: String, offsets: [(GroupTopicPartition, CommittedOffset?)]) async throws {
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
                    memberID: $0.memberID, groupInstanceID: $0.instanceID, clientID: $0.clientID,
                    clientHost: $0.clientHost, rebalanceTimeout: $0.rebalanceTimeoutMs,
                    sessionTimeout: $0.sessionTimeoutMs, subscription: ByteBuffer(bytes: $0.subscription),
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
    /// `GroupCoordinator.load` at start).
    public func readAll() async throws -> [StoredRecord] {
        var entries: [StoredRecord] = []
        let compression = CompressionContext()
        for index in 0..<self.partitionCount {
            guard let partition = self.replicas.partition(TopicPartition(Self.name, index)) else { continue }
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
            let partition = GroupTopicPartition(commitKey.topic, commitKey.partition)
            guard var value, let valueVersion else { return .offset(groupID: commitKey.group, partition: partition, offset: nil) }
            let commit = try OffsetCommitValue(from: &value, version: valueVersion)
            return .offset(groupID: commitKey.group, partition: partition, offset: CommittedOffset(
                offset: commit.offset,
                leaderEpoch: commit.leaderEpoch,
                metadata: commit.metadata,
                commitTimestamp: commit.commitTimestamp,
                expireTimestamp: valueVersion == 1 && commit.expireTimestamp >= 0 ? commit.expireTimestamp : nil
            ))
        case 2:
            let groupID = try GroupMetadataKey(from: &key, version: keyVersion).group
            guard var value, let valueVersion else { return .group(groupID: groupID, nil) }
            let group = try GroupMetadataValue(from: &value, version: valueVersion)
            return .group(groupID: groupID, StoredGroup(
                protocolType: group.protocolType,
                generation: group.generation,
                protocolName: group.protocol,
                leader: group.leader,
                stateTimestamp: group.currentStateTimestamp,
                members: group.members.map {
                    StoredMember(
                        memberID: $0.memberID, instanceID: $0.groupInstanceID, clientID: $0.clientID,
                        clientHost: $0.clientHost, rebalanceTimeoutMs: $0.rebalanceTimeout,
                        sessionTimeoutMs: $0.sessionTimeout, subscription: Array($0.subscription.readableBytesView),
                        assignment: Array($0.assignment.readableBytesView)
                    )
                }
            ))
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
