import KafkaMessages
import KafkaWire
import LogStorage
import Replication

/// DescribeProducers (key 61), v0: the idempotent producers each requested partition remembers (Kafka's producer
/// state: id, epoch, last sequence and the timestamp of its last batch). No transactions yet, so no coordinator
/// epoch and no open transaction start offset (-1). A partition this broker does not lead answers
/// UNKNOWN_TOPIC_OR_PARTITION.
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct DescribeProducersHandler: KafkaHandler {
    public typealias Request = DescribeProducersRequest

    public var versions: ClosedRange<Int16> { 0...0 }

    let replicas: ReplicaManager

    public init(replicas: ReplicaManager) {
        self.replicas = replicas
    }

    public func handle(_ request: DescribeProducersRequest, context: RequestContext) async -> DescribeProducersResponse {
        var topics: [DescribeProducersResponse.TopicResponse] = []
        for topic in request.topics {
            var partitions: [DescribeProducersResponse.PartitionResponse] = []
            for index in topic.partitionIndexes {
                var result = DescribeProducersResponse.PartitionResponse(partitionIndex: index, errorCode: 0)
                if let partition = self.replicas.partition(TopicPartition(topic.name, index)) {
                    do {
                        let states = try await self.replicas.ioPool.run {
                            try partition.log.withLog { (log) throws(StorageError) in log.producerStates }
                        }
                        result.activeProducers = states.values.sorted { $0.producerId < $1.producerId }.map {
                            .init(
                                producerID: $0.producerId,
                                producerEpoch: Int32($0.producerEpoch),
                                lastSequence: $0.lastSequence,
                                lastTimestamp: $0.lastTimestamp,
                                coordinatorEpoch: -1,
                                currentTxnStartOffset: -1
                            )
                        }
                    } catch {
                        result.errorCode = ((error as? StorageError)?.kafkaErrorCode ?? .unknownServerError).rawValue
                        result.errorMessage = "\(error)"
                    }
                } else {
                    result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                }
                partitions.append(result)
            }
            topics.append(.init(name: topic.name, partitions: partitions))
        }
        return DescribeProducersResponse(topics: topics)
    }
}
