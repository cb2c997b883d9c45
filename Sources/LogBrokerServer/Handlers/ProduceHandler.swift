import ClusterControl
import KafkaMessages
import KafkaWire
import LogStorage
import Replication

/// Produce (key 0), v0–11 as Kafka 3.9 serves them. v0–2 carry magic 0/1 message sets (older clients, or newer ones
/// told to assume an old broker); `ReplicaManager.append` converts each partition's set into one v2 batch, as Kafka's
/// `LogValidator` does for a v2 log, so storage and every reader see only v2 batches. Those versions also accept
/// magic 2 batches, as Kafka did; from v3 a magic 0/1 set gets INVALID_RECORD.
///
/// acks must be 0, 1 or -1 (INVALID_REQUIRED_ACKS for every partition otherwise). acks=0 gets no response at all;
/// an error on it closes the connection, which is how the producer learns of it (Kafka's `closeConnection`). The
/// per-partition checks and error codes are `ReplicaManager.append`'s. acks=1 is answered after the leader's
/// append. acks=-1 is answered once every appended partition's high watermark reached the end of its append (every
/// ISR member has it), or after the request's timeout with REQUEST_TIMED_OUT for the partitions still waiting
/// (`ReplicaManager.awaitReplication`, Kafka's `DelayedProduce`); with the ISR being this broker alone that is as
/// soon as the append returns.
///
/// From v10 a partition refused with NOT_LEADER_OR_FOLLOWER carries the current leader and its epoch, and the
/// response the leaders' endpoints on the request's listener (KIP-951), so a client need not ask Metadata.
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
        var awaiting: [(topic: Int, partition: Int, topicPartition: TopicPartition, requiredOffset: Int64)] = []
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
                if acks == -1, result.error == .none {
                    awaiting.append(
                        (
                            topics.count, partitions.count, TopicPartition(topic.name, partition.index),
                            result.requiredOffset
                        )
                    )
                }
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
        if !awaiting.isEmpty {
            let answers = await self.replicas.awaitReplication(
                awaiting.map { ($0.topicPartition, $0.requiredOffset) },
                timeout: .milliseconds(Int64(max(0, request.timeoutMs)))
            )
            for (slot, answer) in zip(awaiting, answers) where answer != .none {
                topics[slot.topic].partitionResponses[slot.partition].errorCode = answer.rawValue
            }
        }
        var response = ProduceResponse(responses: topics)
        if context.apiVersion >= 10 { self.addLeaderHints(to: &response, listener: context.listenerName) }
        return .response(response)
    }

    /// Kafka's KIP-951 hint: each NOT_LEADER_OR_FOLLOWER partition gets the leader and leader epoch this broker's
    /// image gives it, and the response the endpoints of those leaders.
    private func addLeaderHints(to response: inout ProduceResponse, listener: String) {
        var endpoints: [Int32: ProduceResponse.NodeEndpoint] = [:]
        for topic in response.responses.indices {
            for index in response.responses[topic].partitionResponses.indices
            where response.responses[topic].partitionResponses[index].errorCode
                == ErrorCode.notLeaderOrFollower.rawValue
            {
                let partition = response.responses[topic].partitionResponses[index].index
                let leader = self.replicas.currentLeader(
                    of: TopicPartition(response.responses[topic].name, partition),
                    listener: listener
                )
                response.responses[topic].partitionResponses[index].currentLeader = .init(
                    leaderID: leader.leaderID,
                    leaderEpoch: leader.leaderEpoch
                )
                if let endpoint = leader.endpoint {
                    endpoints[leader.leaderID] = .init(
                        nodeID: leader.leaderID,
                        host: endpoint.host,
                        port: endpoint.port,
                        rack: leader.rack
                    )
                }
            }
        }
        response.nodeEndpoints = endpoints.keys.sorted().compactMap { endpoints[$0] }
    }
}
