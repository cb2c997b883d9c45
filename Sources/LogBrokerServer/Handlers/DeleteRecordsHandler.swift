import KafkaMessages
import KafkaWire
import LogStorage
import Logging
import Replication

/// DeleteRecords (key 21), v0–2: moves each partition's log start offset up to the given offset (-1: the high
/// watermark), so records below it can no longer be read and whole segments below it go at the next retention
/// pass; answers the new low watermark. An offset beyond the high watermark answers OFFSET_OUT_OF_RANGE, a partition
/// this broker does not lead UNKNOWN_TOPIC_OR_PARTITION (Kafka's `Partition.deleteRecordsOnLeader`).
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct DeleteRecordsHandler: KafkaHandler {
    public typealias Request = DeleteRecordsRequest

    public var versions: ClosedRange<Int16> { 0...2 }

    let replicas: ReplicaManager

    public init(replicas: ReplicaManager) {
        self.replicas = replicas
    }

    public func handle(_ request: DeleteRecordsRequest, context: RequestContext) async -> DeleteRecordsResponse {
        var topics: [DeleteRecordsResponse.DeleteRecordsTopicResult] = []
        for topic in request.topics {
            var partitions: [DeleteRecordsResponse.DeleteRecordsPartitionResult] = []
            for wanted in topic.partitions {
                var result = DeleteRecordsResponse.DeleteRecordsPartitionResult(
                    partitionIndex: wanted.partitionIndex,
                    lowWatermark: -1,
                    errorCode: 0
                )
                (result.lowWatermark, result.errorCode) = await self.deleteRecords(
                    TopicPartition(topic.name, wanted.partitionIndex),
                    before: wanted.offset,
                    context: context
                )
                partitions.append(result)
            }
            topics.append(.init(name: topic.name, partitions: partitions))
        }
        return DeleteRecordsResponse(topics: topics)
    }

    /// The new low watermark and NONE, or -1 and the refusal.
    private func deleteRecords(
        _ topicPartition: TopicPartition,
        before offset: Int64,
        context: RequestContext
    ) async -> (Int64, Int16) {
        guard let partition = self.replicas.partition(topicPartition) else {
            return (-1, ErrorCode.unknownTopicOrPartition.rawValue)
        }
        let highWatermark = partition.highWatermark
        let target = offset == -1 ? highWatermark : offset
        do {
            let lowWatermark = try await self.replicas.ioPool.run {
                try partition.log.withLog { (log) throws(StorageError) in
                    try log.deleteRecords(before: target, highWatermark: highWatermark)
                }
            }
            return (lowWatermark, ErrorCode.none.rawValue)
        } catch {
            context.logger.debug("DeleteRecords refused", metadata: ["error": "\(error)"])
            return (-1, ((error as? StorageError)?.kafkaErrorCode ?? .unknownServerError).rawValue)
        }
    }
}
