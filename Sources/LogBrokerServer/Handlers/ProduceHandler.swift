import KafkaMessages
import KafkaWire
import Replication

/// Produce (key 0). Advertised from v0 as Kafka 4 does (librdkafka 2.0.2 turns compression off unless the range
/// includes Produce 0, CLIENTS.md §1), but v0–2 (magic 0/1 message sets) close the connection, as Kafka 4's failed
/// parse does: no client in scope sends them to a broker that advertises v3.
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
        guard context.apiVersion >= 3 else {
            return .close(reason: "Produce v\(context.apiVersion) (message format v0/v1) is not supported; v3+ is")
        }
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
