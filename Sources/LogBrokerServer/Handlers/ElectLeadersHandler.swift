import ClusterControl
import KafkaMessages
import KafkaWire
import LogStorage
import Replication

/// ElectLeaders (key 43), v0–2, through the controller. Preferred election (type 0) makes each partition's first
/// assigned replica its leader where it is live and in the ISR: ELECTION_NOT_NEEDED where it already leads (always,
/// on one broker), PREFERRED_LEADER_NOT_AVAILABLE where it cannot. Unclean election (type 1, v1+) is not
/// implemented: a partition with a leader answers ELECTION_NOT_NEEDED, one without ELIGIBLE_LEADERS_NOT_AVAILABLE.
/// A null partition list means every partition, and then, as Kafka does, partitions that needed no election are
/// left out of the answer. An unknown topic or partition answers UNKNOWN_TOPIC_OR_PARTITION.
///
///
/// It is also how an offline partition comes back without a restart: a partition of this broker whose log went
/// offline (a failed disk call that may have left its data wrong, corruption) is reopened first, as after an unclean
/// stop (`ReplicaManager.reopenIfOffline`), and answers NONE if it loads cleanly, KAFKA_STORAGE_ERROR naming the
/// failure if not; the controller's answer applies to the others.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct ElectLeadersHandler: KafkaHandler {
    public typealias Request = ElectLeadersRequest

    public var versions: ClosedRange<Int16> { 0...2 }

    let controller: Controller
    /// The partitions this broker hosts, whose offline logs an election reopens; nil: none are.
    let replicas: ReplicaManager?

    public init(controller: Controller, replicas: ReplicaManager? = nil) {
        self.controller = controller
        self.replicas = replicas
    }

    public func handle(_ request: ElectLeadersRequest, context: RequestContext) async -> ElectLeadersResponse {
        let electionType = context.apiVersion >= 1 ? request.electionType : 0
        guard electionType == 0 || electionType == 1 else {
            return ElectLeadersResponse(errorCode: ErrorCode.invalidRequest.rawValue)
        }
        guard let image = try? await self.controller.image() else {
            return ElectLeadersResponse(errorCode: ErrorCode.brokerNotAvailable.rawValue)
        }
        let everything = request.topicPartitions == nil
        let wanted =
            request.topicPartitions?.map { ($0.topic, $0.partitions) }
            ?? image.topics.values.sorted { $0.name < $1.name }.map { ($0.name, Array(0..<Int32($0.partitions.count))) }
        var results: [ElectLeadersResponse.ReplicaElectionResult] = []
        for (topic, partitions) in wanted {
            var outcomes: [(partition: Int32, error: ClusterControlError?)]
            do {
                if electionType == 0 {
                    outcomes = try await self.controller.electPreferredLeaders(of: topic, partitions: partitions)
                } else {
                    outcomes = try Self.uncleanOutcomes(image, topic: topic, partitions: partitions)
                }
            } catch {
                outcomes = partitions.map { ($0, error) }
            }
            var reopened: [Int32: (error: ErrorCode, message: String)] = [:]
            if let replicas = self.replicas {
                for partition in partitions {
                    reopened[partition] = await replicas.reopenIfOffline(TopicPartition(topic, partition))
                }
            }
            if everything {
                outcomes.removeAll { $0.error == .electionNotNeeded && reopened[$0.partition] == nil }
            }
            results.append(
                .init(
                    topic: topic,
                    partitionResult: outcomes.map {
                        if let (error, message) = reopened[$0.partition] {
                            return .init(
                                partitionID: $0.partition,
                                errorCode: error.rawValue,
                                errorMessage: error == .none ? nil : message
                            )
                        }
                        return .init(
                            partitionID: $0.partition,
                            errorCode: ($0.error?.kafkaErrorCode ?? .none).rawValue,
                            errorMessage: $0.error.map { "\($0)" }
                        )
                    }
                )
            )
        }
        return ElectLeadersResponse(replicaElectionResults: results)
    }

    private static func uncleanOutcomes(
        _ image: ClusterImage,
        topic: String,
        partitions: [Int32]
    ) throws(ClusterControlError) -> [(partition: Int32, error: ClusterControlError?)] {
        guard let states = image.topics[topic]?.partitions else { throw .unknownTopic(topic) }
        return partitions.map { partition in
            guard partition >= 0, Int(partition) < states.count else {
                return (partition, .unknownTopic(topic, partition: partition))
            }
            return (partition, states[Int(partition)].leader == nil ? .eligibleLeadersNotAvailable : .electionNotNeeded)
        }
    }
}
