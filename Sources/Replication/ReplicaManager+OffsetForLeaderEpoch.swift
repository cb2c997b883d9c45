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
    /// OffsetForLeaderEpoch for one partition (KIP-101, KIP-279, KIP-320), as Kafka's leader answers it: the
    /// partition must be hosted (UNKNOWN_TOPIC_OR_PARTITION), the client's current leader epoch is checked like a
    /// fetch's (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH, -1 skips it), then the epoch cache answers
    /// (`epochEndOffset`). Consumers (replica id -1) and followers get the same answer: Kafka always answers from
    /// the leader's log (`fetchOnlyFromLeader`), and this broker only leads.
    public func endOffset(
        forLeaderEpoch requested: Int32,
        topic: String,
        partition: Int32,
        currentLeaderEpoch: Int32 = -1
    ) async -> EpochEndOffsetResult {
        guard let hosted = self.partition(TopicPartition(topic, partition)) else {
            return EpochEndOffsetResult(error: .unknownTopicOrPartition)
        }
        let epochError = hosted.checkLeaderEpoch(currentLeaderEpoch)
        guard epochError == .none else { return EpochEndOffsetResult(error: epochError) }
        do {
            // Reopening a log closed by the file-handle budget touches the disk.
            let (entries, logEndOffset) = try await self.ioPool.run {
                try hosted.log.withLog { (log) throws(StorageError) in
                    // The end first: an epoch that starts after this read can only start at or past it, so an
                    // older epoch's answer stays right, and the current one ends no later than the end read.
                    let logEndOffset = log.logEndOffset
                    return (log.epochEntries, logEndOffset)
                }
            }
            let cache = Self.leaderView(entries, leaderEpoch: hosted.leaderEpoch, logEndOffset: logEndOffset)
            let found = Self.epochEndOffset(requested, entries: cache, logEndOffset: logEndOffset)
            return EpochEndOffsetResult(error: .none, leaderEpoch: found.epoch, endOffset: found.endOffset)
        } catch let error as StorageError {
            return EpochEndOffsetResult(error: error.kafkaErrorCode)
        } catch {
            return EpochEndOffsetResult(error: .unknownServerError)
        }
    }

    /// The epoch cache as Kafka's leader holds it: `Partition.makeLeader` assigns the new leader epoch at the log
    /// end offset at once, while the log here records an epoch with its first append. So a leader epoch newer than
    /// every cached one is added at the log end (dropping entries that start there, as `assign` does), and a new
    /// leader answers for its own epoch before it has appended anything.
    public static func leaderView(_ entries: [EpochEntry], leaderEpoch: Int32, logEndOffset: Int64) -> [EpochEntry] {
        guard leaderEpoch >= 0, leaderEpoch > (entries.last?.epoch ?? -1) else { return entries }
        return entries.filter { $0.startOffset < logEndOffset }
            + [EpochEntry(epoch: leaderEpoch, startOffset: logEndOffset)]
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor` over the cache's entries (ascending epochs and start offsets):
    /// - the requested epoch is -1, above every epoch, or the cache is empty: (-1, -1);
    /// - it is the latest epoch: (it, the log end offset), since it is still being written;
    /// - it is below every epoch: (the requested epoch, the first entry's start offset), because the older history
    ///   was deleted and the caller should resume from where the log starts;
    /// - otherwise the largest epoch at or below it and the start offset of the first epoch above it.
    /// Any answer whose offset is -1 is reported as (-1, -1), as `UnifiedLog.endOffsetForEpoch` does.
    public static func epochEndOffset(
        _ requested: Int32,
        entries: [EpochEntry],
        logEndOffset: Int64
    ) -> (epoch: Int32, endOffset: Int64) {
        let undefined: (epoch: Int32, endOffset: Int64) = (-1, -1)
        guard requested >= 0, let latest = entries.last else { return undefined }
        if requested == latest.epoch { return (requested, logEndOffset) }
        guard let higher = entries.first(where: { $0.epoch > requested }) else { return undefined }
        guard let floor = entries.last(where: { $0.epoch <= requested }) else {
            return (requested, higher.startOffset)
        }
        return (floor.epoch, higher.startOffset)
    }
}
