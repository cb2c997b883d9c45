import ClusterControl
import KafkaMessages
import KafkaWire

/// CreatePartitions (key 37), v0–3, through the controller: a topic's partition count only grows (INVALID_PARTITIONS
/// otherwise, and for a count equal to the current one, as Kafka answers), the new partitions placed round-robin or
/// on the given assignment (one replica list per new partition), validate-only supported. A topic named twice is
/// refused for each entry (INVALID_REQUEST); a missing one answers UNKNOWN_TOPIC_OR_PARTITION.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct CreatePartitionsHandler: KafkaHandler {
    public typealias Request = CreatePartitionsRequest

    public var versions: ClosedRange<Int16> { 0...3 }

    let controller: Controller

    public init(controller: Controller) {
        self.controller = controller
    }

    public func handle(_ request: CreatePartitionsRequest, context: RequestContext) async -> CreatePartitionsResponse {
        let duplicates = CreateTopicsHandler.duplicates(request.topics.map(\.name))
        var results: [CreatePartitionsResponse.CreatePartitionsTopicResult] = []
        for topic in request.topics {
            do {
                guard !duplicates.contains(topic.name) else {
                    throw ClusterControlError.invalidRequest("the request names topic '\(topic.name)' more than once")
                }
                try await self.controller.createPartitions(
                    topic.name,
                    count: topic.count,
                    assignment: topic.assignments?.map(\.brokerIDs),
                    validateOnly: request.validateOnly
                )
                results.append(.init(name: topic.name, errorCode: 0))
            } catch {
                let error = error as? ClusterControlError
                results.append(
                    .init(
                        name: topic.name,
                        errorCode: (error?.kafkaErrorCode ?? .unknownServerError).rawValue,
                        errorMessage: error.map { "\($0)" }
                    )
                )
            }
        }
        return CreatePartitionsResponse(results: results)
    }
}
