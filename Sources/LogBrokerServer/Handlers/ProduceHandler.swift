import KafkaMessages
import KafkaWire
import Replication

/// Produce (key 0), v0–11 as Kafka 3.9 serves them. v0–2 carry magic 0/1 message sets (older clients, or newer ones
/// told to assume an old broker); `ReplicaManager.append` converts each partition's set into one v2 batch, as Kafka's
/// `LogValidator` does for a v2 log, so storage and every reader see only v2 batches. Those versions also accept
/// magic 2 batches, as Kafka did; from v3 a magic 0/1 set gets INVALID_RECORD.
///
/// acks must be 0, 1 or -1 (INVALID_REQUIRED_ACKS for every partition otherwise). acks=0 gets no response at all;
/// an error on it closes the connection, which is how the producer learns of it (Kafka's `closeConnection`). The
/// per-partition checks and error codes are `ReplicaManager.append`'s. With the ISR being this broker alone,
/// acks=-1 is answered as soon as the append returns.
///
/// Partitions are appended one after another, in request order (a request rarely carries many, and each append is
/// already one hop to the disk pool).
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct ProduceHandler: KafkaHandler {
    public typealias Request = ProduceRequest

    let replicas: ReplicaManager

    public init(replicas: ReplicaManager) {
        self.replicas = replicas
    }

    public var versions: ClosedRange<Int16> { 0...11 }

    public func handle(_ request: ProduceRequest, context: RequestContext) async -> ProduceResponse {
        switch await self.respond(to: request, context: context) {
        case .response(let response): response
        case .noResponse, .close, .responseParts: ProduceResponse()
        }
    }

    public func respond(to request: ProduceRequest, context: RequestContext) async -> HandlerResult<ProduceResponse> {
        let acks = request.acks
        let origin = AppendOrigin.client(produceVersion: context.apiVersion, transactionalID: request.transactionalID)
        var firstError: (String, Int32, AppendResult)?
        var topics: [ProduceResponse.TopicProduceResponse] = []
        topics.reserveCapacity(request.topicData.count)
        for topic in request.topicData {
            var partitions: [ProduceResponse.PartitionProduceResponse] = []
            partitions.reserveCapacity(topic.partitionData.count)
            for partition in topic.partitionData {
                let result = await self.replicas.append(
                    topic: topic.name,
                    partition: partition.index,
                    records: partition.records,
                    requiredAcks: acks,
                    origin: origin
                )
                if result.error != .none, firstError == nil { firstError = (topic.name, partition.index, result) }
                partitions.append(
                    .init(
                        index: partition.index,
                        errorCode: result.error.rawValue,
                        baseOffset: result.baseOffset,
                        logAppendTimeMs: result.logAppendTime,
                        logStartOffset: result.logStartOffset,
                        recordErrors: result.recordErrors.map {
                            .init(batchIndex: $0.batchIndex, batchIndexErrorMessage: $0.message)
                        },
                        errorMessage: result.error == .none ? nil : result.errorMessage
                    )
                )
            }
            topics.append(.init(name: topic.name, partitionResponses: partitions))
        }
        if acks == 0 {
            guard let (topic, partition, result) = firstError else { return .noResponse }
            return .close(
                reason: "acks=0 produce to \(topic)-\(partition) failed with \(result.error)"
                    + (result.errorMessage.map { ": \($0)" } ?? "")
            )
        }
        return .response(ProduceResponse(responses: topics))
    }
}
