import ClusterControl
import KafkaMessages
import KafkaWire
import Logging

/// AlterPartition (key 56), v0–3, served on the controller listener as Kafka's `ControllerApis` and
/// `ReplicationControlManager.alterPartition` do: a partition leader asks for its ISR to shrink or grow, as a
/// compare-and-set on the partition epoch (`ActiveController.alterPartition`). v0–1 name topics, v2+ give topic ids,
/// v3 gives each new member's broker epoch (KIP-903).
///
/// - A requester whose registration is not at the broker epoch it sends gets STALE_BROKER_EPOCH for the whole
///   request, a process whose controller is not the active one NOT_CONTROLLER.
/// - Per partition, Kafka's errors (see `ControllerDecisions.alteringPartitions`); a topic unknown by id
///   UNKNOWN_TOPIC_ID (v2+), by name UNKNOWN_TOPIC_OR_PARTITION (v0–1); an ineligible new member
///   INELIGIBLE_REPLICA (v2+) or OPERATION_NOT_ATTEMPTED (v0–1); a leader recovery state of RECOVERING
///   INVALID_REQUEST (no unclean leader here is recovering: the partitions are always RECOVERED).
/// - A committed change answers the leader, leader epoch, partition epoch and ISR.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct AlterPartitionHandler: KafkaHandler {
    public typealias Request = AlterPartitionRequest

    public var versions: ClosedRange<Int16> { 0...3 }

    let controller: Controller

    public init(controller: Controller) {
        self.controller = controller
    }

    public func handle(_ request: AlterPartitionRequest, context: RequestContext) async -> AlterPartitionResponse {
        guard let active = self.controller.activeController, await active.epoch != nil else {
            return AlterPartitionResponse(errorCode: ErrorCode.notController.rawValue)
        }
        let version = context.apiVersion
        let image = await self.controller.follower.followed.image
        guard let requester = image.brokers[request.brokerID], requester.brokerEpoch == request.brokerEpoch else {
            context.logger.info(
                "Refused an AlterPartition from a stale broker epoch",
                metadata: ["node.id": "\(request.brokerID)", "broker.epoch": "\(request.brokerEpoch)"]
            )
            return AlterPartitionResponse(errorCode: ErrorCode.staleBrokerEpoch.rawValue)
        }
        // Each partition's answer: an early refusal here, or the index of its change in `changes`.
        enum Pending {
            case refused(ErrorCode)
            case change(Int)
        }
        var changes: [ISRChange] = []
        var pending: [[Pending]] = []
        for topic in request.topics {
            let topicID = version >= 2 ? topic.topicID : image.topics[topic.topicName]?.id
            pending.append(
                topic.partitions.map { partition in
                    guard let topicID else { return .refused(.unknownTopicOrPartition) }
                    guard partition.leaderRecoveryState == 0 else { return .refused(.invalidRequest) }
                    let members =
                        version >= 3
                        ? partition.newIsrWithEpochs.map {
                            ISRMember(brokerID: $0.brokerID, brokerEpoch: $0.brokerEpoch)
                        }
                        : partition.newIsr.map { ISRMember(brokerID: $0) }
                    changes.append(
                        ISRChange(
                            topicID: topicID,
                            partition: partition.partitionIndex,
                            leaderID: request.brokerID,
                            brokerEpoch: request.brokerEpoch,
                            leaderEpoch: partition.leaderEpoch,
                            partitionEpoch: partition.partitionEpoch,
                            newISR: members
                        )
                    )
                    return .change(changes.count - 1)
                }
            )
        }
        let outcomes: [ISRChangeOutcome]
        do {
            outcomes = try await active.alterPartition(changes)
        } catch {
            context.logger.info("Could not alter partitions", metadata: ["error": "\(error)"])
            return AlterPartitionResponse(errorCode: error.kafkaErrorCode.rawValue)
        }
        let topics = zip(request.topics, pending).map { topic, answers in
            AlterPartitionResponse.TopicData(
                topicName: version < 2 ? topic.topicName : "",
                topicID: version >= 2 ? topic.topicID : .zero,
                partitions: zip(topic.partitions, answers).map { partition, answer in
                    switch answer {
                    case .refused(let code):
                        return .init(partitionIndex: partition.partitionIndex, errorCode: code.rawValue)
                    case .change(let index):
                        let outcome = outcomes[index]
                        if let error = outcome.error {
                            context.logger.info(
                                "Refused an ISR change",
                                metadata: [
                                    "node.id": "\(request.brokerID)", "partition": "\(partition.partitionIndex)",
                                    "error": "\(error)",
                                ]
                            )
                            return .init(
                                partitionIndex: partition.partitionIndex,
                                errorCode: Self.errorCode(for: error, version: version).rawValue
                            )
                        }
                        let state = outcome.state
                        return .init(
                            partitionIndex: partition.partitionIndex,
                            errorCode: 0,
                            leaderID: state?.leader ?? -1,
                            leaderEpoch: state?.leaderEpoch ?? -1,
                            isr: state?.isr ?? [],
                            leaderRecoveryState: 0,
                            partitionEpoch: state?.partitionEpoch ?? -1
                        )
                    }
                }
            )
        }
        return AlterPartitionResponse(errorCode: 0, topics: topics)
    }

    /// The code a refused change answers with at `version`: v0–1 name topics (an id that went is an unknown topic)
    /// and predate INELIGIBLE_REPLICA (Kafka answers OPERATION_NOT_ATTEMPTED there).
    static func errorCode(for error: ClusterControlError, version: Int16) -> ErrorCode {
        let code = error.kafkaErrorCode
        guard version < 2 else { return code }
        switch code {
        case .unknownTopicID: return .unknownTopicOrPartition
        case .ineligibleReplica: return .operationNotAttempted
        default: return code
        }
    }
}
