import ClusterControl
import KafkaMessages
import KafkaWire

/// DeleteTopics (key 20), v0–6, through the controller: by name (v0–5 `topic_names`, v6 `topics`) or by id (v6).
/// The partitions leave the image at once (the name can be created again right away); each log directory is
/// renamed `<topic>-<partition>.<id>-delete` and removed in the background. A missing name answers
/// UNKNOWN_TOPIC_OR_PARTITION, a missing id UNKNOWN_TOPIC_ID, an internal topic INVALID_REQUEST, and a topic named
/// twice (or by both name and id in one entry) INVALID_REQUEST.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct DeleteTopicsHandler: KafkaHandler {
    public typealias Request = DeleteTopicsRequest

    public var versions: ClosedRange<Int16> { 0...6 }

    let controller: Controller

    public init(controller: Controller) {
        self.controller = controller
    }

    public func handle(_ request: DeleteTopicsRequest, context: RequestContext) async -> DeleteTopicsResponse {
        let wanted =
            context.apiVersion >= 6
            ? request.topics : request.topicNames.map { DeleteTopicsRequest.DeleteTopicState(name: $0) }
        let duplicates = CreateTopicsHandler.duplicates(wanted.compactMap(\.name))
            .union(CreateTopicsHandler.duplicates(wanted.filter { $0.name == nil }.map { "\($0.topicID)" }))
        var responses: [DeleteTopicsResponse.DeletableTopicResult] = []
        for entry in wanted {
            do {
                if entry.name != nil && entry.topicID != .zero {
                    throw ClusterControlError.invalidRequest("give a topic's name or its id, not both")
                }
                guard !duplicates.contains(entry.name ?? "\(entry.topicID)") else {
                    throw ClusterControlError.invalidRequest("the request names a topic more than once")
                }
                let deleted = try await self.controller.deleteTopic(named: entry.name, id: entry.topicID)
                responses.append(.init(name: deleted.name, topicID: deleted.id, errorCode: 0))
            } catch {
                let error = error as? ClusterControlError
                responses.append(
                    .init(
                        name: entry.name,
                        topicID: entry.topicID,
                        errorCode: (error?.kafkaErrorCode ?? .unknownServerError).rawValue,
                        errorMessage: error.map { "\($0)" }
                    )
                )
            }
        }
        return DeleteTopicsResponse(responses: responses)
    }
}
