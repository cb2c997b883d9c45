import KafkaMessages
import KafkaWire
import LogStorage
import Replication

/// ListOffsets (key 2), v1–7: per partition, earliest (-2, the log start), latest (-1, the high watermark, which is
/// also the last stable offset while there are no transactions, so both isolation levels get it), max timestamp
/// (-3) or the first offset whose timestamp is at or after the given one. Nothing found is offset and timestamp -1
/// without an error, as Kafka answers. The current leader epoch (v4+) is checked: FENCED_LEADER_EPOCH for an older
/// one, UNKNOWN_LEADER_EPOCH for a newer one. v0 (several old-style offsets) is not advertised: Kafka 4 dropped it.
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct ListOffsetsHandler: KafkaHandler {
    public typealias Request = ListOffsetsRequest

    let replicas: ReplicaManager

    public init(replicas: ReplicaManager) {
        self.replicas = replicas
    }

    public var versions: ClosedRange<Int16> { 1...7 }

    public func handle(_ request: ListOffsetsRequest, context: RequestContext) async -> ListOffsetsResponse {
        var topics: [ListOffsetsResponse.ListOffsetsTopicResponse] = []
        topics.reserveCapacity(request.topics.count)
        for topic in request.topics {
            var partitions: [ListOffsetsResponse.ListOffsetsPartitionResponse] = []
            partitions.reserveCapacity(topic.partitions.count)
            for partition in topic.partitions {
                let result = await self.replicas.offset(
                    for: Self.spec(partition.timestamp),
                    topic: topic.name,
                    partition: partition.partitionIndex,
                    currentLeaderEpoch: context.apiVersion >= 4 ? partition.currentLeaderEpoch : -1
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
