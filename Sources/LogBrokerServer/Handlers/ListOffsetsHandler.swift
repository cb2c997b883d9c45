import KafkaMessages
import KafkaWire
import LogStorage
import Replication

/// ListOffsets (key 2), v0–7. v1+: per partition, earliest (-2, the log start), latest (-1, the high watermark,
/// which is also the last stable offset while there are no transactions, so both isolation levels get it), max
/// timestamp (-3) or the first offset whose timestamp is at or after the given one. Nothing found is offset and
/// timestamp -1 without an error, as Kafka answers. The current leader epoch (v4+) is checked: FENCED_LEADER_EPOCH
/// for an older one, UNKNOWN_LEADER_EPOCH for a newer one. A partition named more than once in a request gets
/// INVALID_REQUEST at each mention, as Kafka answers from v1 on.
///
/// v0 (Kafka 3.9 still served it; Burrow asks it) answers up to `max_num_offsets` old-style offsets per partition
/// (`ReplicaManager.legacyOffsets`: segment base offsets and the log end, by the segment files' modification
/// times). Kafka's v0 path has no duplicate check: each mention is answered on its own.
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct ListOffsetsHandler: KafkaHandler {
    public typealias Request = ListOffsetsRequest

    let replicas: ReplicaManager

    public init(replicas: ReplicaManager) {
        self.replicas = replicas
    }

    public var versions: ClosedRange<Int16> { 0...7 }

    public func handle(_ request: ListOffsetsRequest, context: RequestContext) async -> ListOffsetsResponse {
        if context.apiVersion == 0 { return await self.handleV0(request) }
        let duplicates = Self.duplicatePartitions(request)
        var topics: [ListOffsetsResponse.ListOffsetsTopicResponse] = []
        topics.reserveCapacity(request.topics.count)
        for topic in request.topics {
            var partitions: [ListOffsetsResponse.ListOffsetsPartitionResponse] = []
            partitions.reserveCapacity(topic.partitions.count)
            for partition in topic.partitions {
                if duplicates.contains(TopicPartition(topic.name, partition.partitionIndex)) {
                    partitions.append(
                        .init(partitionIndex: partition.partitionIndex, errorCode: ErrorCode.invalidRequest.rawValue)
                    )
                    continue
                }
                let result = await self.replicas.offset(
                    for: Self.spec(partition.timestamp),
                    topic: topic.name,
                    partition: partition.partitionIndex,
                    currentLeaderEpoch: context.apiVersion >= 4 ? partition.currentLeaderEpoch : -1,
                    isFromConsumer: request.replicaID == -1
                )
                partitions.append(
                    .init(
                        partitionIndex: partition.partitionIndex,
                        errorCode: result.error.rawValue,
                        timestamp: result.timestamp,
                        offset: result.offset,
                        leaderEpoch: result.leaderEpoch
                    )
                )
            }
            topics.append(.init(name: topic.name, partitions: partitions))
        }
        return ListOffsetsResponse(topics: topics)
    }

    /// v0: old-style offsets per partition; a consumer's (replica id -1) are capped at the high watermark.
    private func handleV0(_ request: ListOffsetsRequest) async -> ListOffsetsResponse {
        var topics: [ListOffsetsResponse.ListOffsetsTopicResponse] = []
        topics.reserveCapacity(request.topics.count)
        for topic in request.topics {
            var partitions: [ListOffsetsResponse.ListOffsetsPartitionResponse] = []
            partitions.reserveCapacity(topic.partitions.count)
            for partition in topic.partitions {
                let result = await self.replicas.legacyOffsets(
                    before: partition.timestamp,
                    maxNumOffsets: partition.maxNumOffsets,
                    topic: topic.name,
                    partition: partition.partitionIndex,
                    isFromConsumer: request.replicaID == -1
                )
                partitions.append(
                    .init(
                        partitionIndex: partition.partitionIndex,
                        errorCode: result.error.rawValue,
                        oldStyleOffsets: result.offsets
                    )
                )
            }
            topics.append(.init(name: topic.name, partitions: partitions))
        }
        return ListOffsetsResponse(topics: topics)
    }

    /// The partitions named more than once in the request (Kafka's `ListOffsetsRequest.duplicatePartitions`).
    static func duplicatePartitions(_ request: ListOffsetsRequest) -> Set<TopicPartition> {
        var seen = Set<TopicPartition>()
        var duplicates = Set<TopicPartition>()
        for topic in request.topics {
            for partition in topic.partitions {
                let key = TopicPartition(topic.name, partition.partitionIndex)
                if !seen.insert(key).inserted { duplicates.insert(key) }
            }
        }
        return duplicates
    }

    /// Kafka's wire encoding of the look-up: -2 earliest, -1 latest, -3 max timestamp, otherwise a timestamp.
    static func spec(_ timestamp: Int64) -> OffsetSpec {
        switch timestamp {
        case -2: .earliest
        case -1: .latest
        case -3: .maxTimestamp
        default: .timestamp(timestamp)
        }
    }
}
