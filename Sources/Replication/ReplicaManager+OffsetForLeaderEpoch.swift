import KafkaWire
import LogStorage

/// One partition's answer to OffsetForLeaderEpoch: the epoch found and where it ends, both -1 (Kafka's
/// UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET) when the log cannot say, or an error.
public struct EpochEndOffsetResult: Sendable, Hashable {
    public var error: ErrorCode
    public var leaderEpoch: Int32 = -1
    public var endOffset: Int64 = -1

    public init(error: ErrorCode, leaderEpoch: Int32 = -1, endOffset: Int64 = -1) {
        self.error = error
        self.leaderEpoch = leaderEpoch
        self.endOffset = endOffset
    }
}

extension ReplicaManager {
    /// OffsetForLeaderEpoch for one partition (KIP-101, KIP-279, KIP-320), as Kafka's leader answers it: this
    /// broker must lead the partition (`leaderPartition`), the client's current leader epoch is checked like a
    /// fetch's (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH, -1 skips it), then the epoch cache answers
    /// (`LeaderEpochCache.endOffset(for:logEndOffset:)`; `becomeLeader` recorded the leader's epoch there).
    /// Consumers (replica id -1) and followers get the same answer: Kafka always answers from the leader's log
    /// (`fetchOnlyFromLeader`), and this broker only leads.
    public func endOffset(
        forLeaderEpoch requested: Int32,
        topic: String,
        partition: Int32,
        currentLeaderEpoch: Int32 = -1
    ) async -> EpochEndOffsetResult {
        let hosted: Partition
        switch self.leaderPartition(TopicPartition(topic, partition)) {
        case .leading(let leading): hosted = leading
        case .refused(let error): return EpochEndOffsetResult(error: error)
        }
        let epochError = hosted.checkLeaderEpoch(currentLeaderEpoch)
        guard epochError == .none else { return EpochEndOffsetResult(error: epochError) }
        do {
            // Reopening a log closed by the file-handle budget touches the disk.
            let found = try await self.ioPool.run {
                try hosted.log.withLog { (log) throws(StorageError) in log.endOffset(forEpoch: requested) }
            }
            return EpochEndOffsetResult(error: .none, leaderEpoch: found.epoch, endOffset: found.endOffset)
        } catch let error as StorageError {
            return EpochEndOffsetResult(error: error.kafkaErrorCode)
        } catch {
            return EpochEndOffsetResult(error: .unknownServerError)
        }
    }
}
