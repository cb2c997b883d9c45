import KafkaMessages
import KafkaWire
import Replication

/// OffsetForLeaderEpoch (key 23), v2–4: for each partition, the largest leader epoch at or below the requested one
/// and the offset where it ends (`ReplicaManager.endOffset(forLeaderEpoch:)`). Consumers use it after a leader
/// change to check their position was not truncated away (KIP-320); followers will use it to truncate.
///
/// v0–1 (no current leader epoch) are not advertised: Kafka 4 dropped them, and the clients in scope start at 2
/// (CLIENTS.md). A current leader epoch is checked like a fetch's. The replica id (v3+) does not change the answer:
/// Kafka's leader answers consumers (-1) and followers alike from its own log.
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct OffsetForLeaderEpochHandler: KafkaHandler {
    public typealias Request = OffsetForLeaderEpochRequest

    let replicas: ReplicaManager

    public init(replicas: ReplicaManager) {
        self.replicas = replicas
    }

    public var versions: ClosedRange<Int16> { 2...4 }

    public func handle(
        _ request: OffsetForLeaderEpochRequest,
        context: RequestContext
    ) async -> OffsetForLeaderEpochResponse {
        var topics: [OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult] = []
        topics.reserveCapacity(request.topics.count)
        for topic in request.topics {
            var partitions: [OffsetForLeaderEpochResponse.EpochEndOffset] = []
            partitions.reserveCapacity(topic.partitions.count)
            for partition in topic.partitions {
                let result = await self.replicas.endOffset(
                    forLeaderEpoch: partition.leaderEpoch,
                    topic: topic.topic,
                    partition: partition.partition,
                    currentLeaderEpoch: partition.currentLeaderEpoch
                )
                partitions.append(
                    .init(
                        errorCode: result.error.rawValue,
                        partition: partition.partition,
                        leaderEpoch: result.leaderEpoch,
                        endOffset: result.endOffset
                    )
                )
            }
            topics.append(.init(topic: topic.topic, partitions: partitions))
        }
        return OffsetForLeaderEpochResponse(topics: topics)
    }
}
