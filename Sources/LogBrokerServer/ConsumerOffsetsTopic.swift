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
/// `OffsetCommitValue` v3 (offset, leader epoch, metadata, commit timestamp), each prefixed by its version. A
/// group's records go to partition `abs(groupID.hashCode) % offsets.topic.num.partitions`, Java's `String.hashCode`,
/// as Kafka places them. The topic is compacted and created on the first group lookup, as Kafka does.
///
/// Thread-safe: its members are.
public final class ConsumerOffsetsTopic: OffsetStore {
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

    /// Creates the topic if it does not exist yet; false when it cannot be created (the caller answers
    /// COORDINATOR_NOT_AVAILABLE, retriable). More replicas than live brokers are cut to the live count.
    public func ensureCreated() async -> Bool {
        if (try? await self.controller.image().topics[Self.name]) != nil { return true }
        let live = Int16(clamping: await self.controller.liveBrokers.count)
        do {
            try await self.controller.createTopic(
                Self.name,
                partitions: self.partitionCount,
                replicationFactor: max(1, min(self.replicationFactor, live)),
                configs: ["cleanup.policy": "compact", "segment.bytes": String(self.segmentBytes)]
            )
            return true
        } catch {
            return (try? await self.controller.image().topics[Self.name]) != nil
        }
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
            self.logger.warning("Offsets not committed", metadata: ["group": "\(groupID)", "error": "\(error)"])
            throw error
        }
    }

    /// Every offset commit the topic holds on this broker, in log order per partition (for
    /// `GroupCoordinator.load` at start). Records of other kinds (group metadata) are skipped.
    public func readAll() async throws -> [(groupID: String, partition: GroupTopicPartition, offset: CommittedOffset?)] {
        var entries: [(groupID: String, partition: GroupTopicPartition, offset: CommittedOffset?)] = []
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

    /// An offset commit record's group, partition and offset (nil offset: a tombstone); nil for other records.
    static func decode(_ record: Record) throws -> (groupID: String, partition: GroupTopicPartition, offset: CommittedOffset?)? {
        guard let keyBytes = record.key else { return nil }
        var key = WireReader(buffer: keyBytes)
        let keyVersion = try key.readInt16()
        guard keyVersion == 0 || keyVersion == 1 else { return nil }
        let commitKey = try OffsetCommitKey(from: &key, version: keyVersion)
        let partition = GroupTopicPartition(commitKey.topic, commitKey.partition)
        guard let valueBytes = record.value else { return (commitKey.group, partition, nil) }
        var value = WireReader(buffer: valueBytes)
        let valueVersion = try value.readInt16()
        let commit = try OffsetCommitValue(from: &value, version: valueVersion)
        return (
            commitKey.group,
            partition,
            CommittedOffset(
                offset: commit.offset,
                leaderEpoch: commit.leaderEpoch,
                metadata: commit.metadata,
                commitTimestamp: commit.commitTimestamp,
                expireTimestamp: valueVersion == 1 && commit.expireTimestamp >= 0 ? commit.expireTimestamp : nil
            )
        )
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
