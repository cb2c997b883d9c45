import KafkaWire
import LogStorage

/// One partition's answer to ListOffsets v0: the old-style offsets, descending, or an error (then none).
public struct LegacyOffsetsResult: Sendable, Hashable {
    public var error: ErrorCode
    public var offsets: [Int64]

    public init(error: ErrorCode, offsets: [Int64] = []) {
        self.error = error
        self.offsets = offsets
    }
}

extension ReplicaManager {
    /// ListOffsets v0 for one partition, as Kafka's `Partition.legacyFetchOffsetsForTimestamp` answers it: the
    /// log's segment offsets (`PartitionLog.legacyOffsets`), and for a consumer (replica id -1) any offset above the
    /// high watermark replaced by the high watermark, so a consumer is never told of uncommitted records. No leader
    /// epoch is checked (v0 has none). A negative `maxNumOffsets` fails as Kafka's array allocation does
    /// (UNKNOWN_SERVER_ERROR).
    public func legacyOffsets(
        before timestamp: Int64,
        maxNumOffsets: Int32,
        topic: String,
        partition: Int32,
        isFromConsumer: Bool
    ) async -> LegacyOffsetsResult {
        let hosted: Partition
        switch self.leaderPartition(TopicPartition(topic, partition)) {
        case .leading(let leading): hosted = leading
        case .refused(let error): return LegacyOffsetsResult(error: error)
        }
        guard maxNumOffsets >= 0 else { return LegacyOffsetsResult(error: .unknownServerError) }
        let highWatermark = hosted.highWatermark
        let offsets: [Int64]
        do {
            // Reading the segments' modification times (and reopening a closed log) touches the disk.
            offsets = try await self.ioPool.run {
                try hosted.log.withLog { (log) throws(StorageError) in
                    try log.legacyOffsets(before: timestamp, maxCount: Int(maxNumOffsets))
                }
            }
        } catch let error as StorageError {
            return LegacyOffsetsResult(error: error.kafkaErrorCode)
        } catch {
            return LegacyOffsetsResult(error: .unknownServerError)
        }
        guard isFromConsumer, offsets.contains(where: { $0 > highWatermark }) else {
            return LegacyOffsetsResult(error: .none, offsets: offsets)
        }
        return LegacyOffsetsResult(error: .none, offsets: [highWatermark] + offsets.drop { $0 > highWatermark })
    }
}
