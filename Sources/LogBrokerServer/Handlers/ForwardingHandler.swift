import ClusterControl
import KafkaMessages
import KafkaWire
import Logging

/// A request only the active controller can carry out (topic and config changes, elections), as Kafka's brokers
/// forward them: how to answer it with one error for everything it names (Kafka's `getErrorResponse`), and which
/// error codes an answer carries (to spot NOT_CONTROLLER from a controller that just lost its term).
public protocol ControllerBoundRequest: KafkaRequest {
    /// The answer to this request at `version` with `error` for each item it names.
    func errorResponse(_ error: ErrorCode, message: String?, version: Int16) -> Response
    /// Every error code in `response`, top level and per item.
    static func errorCodes(in response: Response) -> [Int16]
    /// The codes with which a controller that is no longer the active one answers: the request goes to the next
    /// one. Default NOT_CONTROLLER.
    static var formerControllerErrors: Set<Int16> { get }
}

extension ControllerBoundRequest {
    public static var formerControllerErrors: Set<Int16> { [ErrorCode.notController.rawValue] }
}

/// Serves `Wrapped`'s API on a broker of a cluster: when this process holds the active controller, `wrapped` answers
/// here; otherwise the request goes to the active controller over its CONTROLLER listener, at the same version, and
/// the client gets the controller's answer (with its own correlation id), as Kafka's `ForwardingManager` does.
///
/// Kafka wraps a forwarded request in an Envelope (key 58) carrying the client's principal and address, for the
/// controller's authorization and quotas; LogBroker has neither yet, so the request goes as it is, in its own frame.
/// Kafka's brokers advertise a forwarded API's versions intersected with the controller's ApiVersions; here the
/// controller is the same program and serves the versions `wrapped` advertises, so they are advertised as they are.
///
/// As Kafka's forwarding channel does, a request waits for a controller (none elected, a connection that failed, or
/// an answer with NOT_CONTROLLER from one that lost its term) and is sent again to the next one, until
/// `timeout` (Kafka's 60 s) after it arrived; then the client gets REQUEST_TIMED_OUT for everything it named.
///
/// A `Sendable` value sharing the controller and the channel (actors); thread-safe.
public struct ForwardingHandler<Wrapped: KafkaHandler>: KafkaHandler where Wrapped.Request: ControllerBoundRequest {
    public typealias Request = Wrapped.Request

    public var versions: ClosedRange<Int16> { self.wrapped.versions }

    let wrapped: Wrapped
    let controller: Controller
    let channel: ControllerChannel
    let timeout: Duration

    init(_ wrapped: Wrapped, controller: Controller, channel: ControllerChannel, timeout: Duration = .seconds(60)) {
        self.wrapped = wrapped
        self.controller = controller
        self.channel = channel
        self.timeout = timeout
    }

    public func handle(_ request: Request, context: RequestContext) async -> Request.Response {
        if await self.isLocal() { return await self.wrapped.handle(request, context: context) }
        return await self.forward(request, context: context)
    }

    public func respond(to request: Request, context: RequestContext) async -> HandlerResult<Request.Response> {
        if await self.isLocal() { return await self.wrapped.respond(to: request, context: context) }
        return .response(await self.forward(request, context: context))
    }

    /// Whether this process holds the active controller.
    private func isLocal() async -> Bool {
        guard let active = self.controller.activeController else { return false }
        return await active.epoch != nil
    }

    private func forward(_ request: Request, context: RequestContext) async -> Request.Response {
        let deadline = ContinuousClock.now + self.timeout
        var lastFailure = "no active controller is known"
        var backoff = Duration.milliseconds(50)
        while ContinuousClock.now < deadline, !Task.isCancelled {
            let controllerBefore = await self.channel.currentController
            do {
                let response = try await self.channel.send(request, version: context.apiVersion, deadline: deadline)
                guard Request.errorCodes(in: response).contains(where: Request.formerControllerErrors.contains) else {
                    return response
                }
                // The controller lost its term after the election key was read: send it to the next one.
                lastFailure = "controller \(controllerBefore.map { "\($0.nodeID)" } ?? "?") is no longer active"
                await self.channel.reset()
                _ = await self.controller.follower.waitUntil(timeout: min(deadline - .now, .seconds(1))) {
                    $0.controller?.epoch != controllerBefore?.epoch && $0.controller?.endpoint != nil
                }
                if await self.isLocal() { return await self.wrapped.handle(request, context: context) }
            } catch {
                lastFailure = "\(error)"
                context.logger.debug("Cannot forward to the controller yet", metadata: ["error": "\(error)"])
                if case .noController = error { break }
                try? await Task.sleep(for: min(backoff, max(deadline - .now, .zero)))
                backoff = min(backoff * 2, .seconds(1))
            }
        }
        context.logger.warning(
            "A request for the controller timed out",
            metadata: ["api": "\(Request.apiKey)", "reason": "\(lastFailure)"]
        )
        return request.errorResponse(
            .requestTimedOut,
            message: "no active controller answered within \(self.timeout): \(lastFailure)",
            version: context.apiVersion
        )
    }
}

/// What the forwarding wrappers of one broker share: its controller (to tell whether it is the active one) and one
/// channel to the active controller. A plain value sharing actors; thread-safe.
struct ControllerForwarding: Sendable {
    let controller: Controller
    let channel: ControllerChannel
    /// How long a request may wait for a controller to answer it (Kafka's forwarding channel: 60 s).
    let timeout: Duration

    init(controller: Controller, nodeID: Int32, timeout: Duration = .seconds(60), logger: Logger) {
        self.controller = controller
        self.channel = ControllerChannel(
            follower: controller.follower,
            clientID: "broker-\(nodeID)-forwarding",
            logger: logger
        )
        self.timeout = timeout
    }

    /// Whether this process holds the active controller.
    func isLocal() async -> Bool {
        guard let active = self.controller.activeController else { return false }
        return await active.epoch != nil
    }
}

extension HandlerTable {
    /// Registers `handler`, wrapped to forward its requests to the active controller when `forwarding` is given (a
    /// broker of a cluster); as it is otherwise (the standalone broker is its own controller).
    mutating func register<Handler: KafkaHandler>(
        _ handler: Handler,
        forwardingTo forwarding: ControllerForwarding?
    ) where Handler.Request: ControllerBoundRequest {
        if let forwarding {
            self.register(
                ForwardingHandler(
                    handler,
                    controller: forwarding.controller,
                    channel: forwarding.channel,
                    timeout: forwarding.timeout
                )
            )
        } else {
            self.register(handler)
        }
    }
}

extension CreateTopicsRequest: ControllerBoundRequest {
    public func errorResponse(_ error: ErrorCode, message: String?, version: Int16) -> CreateTopicsResponse {
        CreateTopicsResponse(
            topics: self.topics.map { .init(name: $0.name, errorCode: error.rawValue, errorMessage: message) }
        )
    }

    public static func errorCodes(in response: CreateTopicsResponse) -> [Int16] {
        response.topics.map(\.errorCode)
    }
}

extension DeleteTopicsRequest: ControllerBoundRequest {
    public func errorResponse(_ error: ErrorCode, message: String?, version: Int16) -> DeleteTopicsResponse {
        let wanted = version >= 6 ? self.topics : self.topicNames.map { DeleteTopicState(name: $0) }
        return DeleteTopicsResponse(
            responses: wanted.map {
                .init(name: $0.name, topicID: $0.topicID, errorCode: error.rawValue, errorMessage: message)
            }
        )
    }

    public static func errorCodes(in response: DeleteTopicsResponse) -> [Int16] {
        response.responses.map(\.errorCode)
    }
}

extension CreatePartitionsRequest: ControllerBoundRequest {
    public func errorResponse(_ error: ErrorCode, message: String?, version: Int16) -> CreatePartitionsResponse {
        CreatePartitionsResponse(
            results: self.topics.map { .init(name: $0.name, errorCode: error.rawValue, errorMessage: message) }
        )
    }

    public static func errorCodes(in response: CreatePartitionsResponse) -> [Int16] {
        response.results.map(\.errorCode)
    }
}

extension AlterConfigsRequest: ControllerBoundRequest {
    public func errorResponse(_ error: ErrorCode, message: String?, version: Int16) -> AlterConfigsResponse {
        AlterConfigsResponse(
            responses: self.resources.map {
                .init(
                    errorCode: error.rawValue,
                    errorMessage: message,
                    resourceType: $0.resourceType,
                    resourceName: $0.resourceName
                )
            }
        )
    }

    public static func errorCodes(in response: AlterConfigsResponse) -> [Int16] {
        response.responses.map(\.errorCode)
    }
}

extension IncrementalAlterConfigsRequest: ControllerBoundRequest {
    public func errorResponse(
        _ error: ErrorCode,
        message: String?,
        version: Int16
    ) -> IncrementalAlterConfigsResponse {
        IncrementalAlterConfigsResponse(
            responses: self.resources.map {
                .init(
                    errorCode: error.rawValue,
                    errorMessage: message,
                    resourceType: $0.resourceType,
                    resourceName: $0.resourceName
                )
            }
        )
    }

    public static func errorCodes(in response: IncrementalAlterConfigsResponse) -> [Int16] {
        response.responses.map(\.errorCode)
    }
}

extension ElectLeadersRequest: ControllerBoundRequest {
    /// As Kafka's: the top-level code (v1+) and each named partition's.
    public func errorResponse(_ error: ErrorCode, message: String?, version: Int16) -> ElectLeadersResponse {
        ElectLeadersResponse(
            errorCode: error.rawValue,
            replicaElectionResults: (self.topicPartitions ?? []).map { topic in
                .init(
                    topic: topic.topic,
                    partitionResult: topic.partitions.map {
                        .init(partitionID: $0, errorCode: error.rawValue, errorMessage: message)
                    }
                )
            }
        )
    }

    public static func errorCodes(in response: ElectLeadersResponse) -> [Int16] {
        [response.errorCode] + response.replicaElectionResults.flatMap { $0.partitionResult.map(\.errorCode) }
    }
}

/// Creates the topics a broker needs on its own (auto-created topics, `__consumer_offsets`), as Kafka's
/// `AutoTopicCreationManager` does: on this process's controller while it is the active one, else by CreateTopics
/// to the active controller over the forwarding channel. Either way the topic is returned once this node's image
/// has it. A plain value sharing actors; thread-safe.
struct TopicCreator: Sendable {
    let controller: Controller
    /// nil: the controller is always this process's (the standalone broker).
    let forwarding: ControllerForwarding?

    /// Creates `name`; see `Controller.createTopic`.
    /// - Throws: what the active controller answered, as the `ClusterControlError` with its code
    ///   (`topicAlreadyExists` for a topic created meanwhile); `notController` when no controller answered.
    func createTopic(
        _ name: String,
        partitions: Int32,
        replicationFactor: Int16,
        configs: [String: String] = [:]
    ) async throws(ClusterControlError) -> TopicImage {
        guard let forwarding = self.forwarding, !(await forwarding.isLocal()) else {
            return try await self.controller.createTopic(
                name,
                partitions: partitions,
                replicationFactor: replicationFactor,
                configs: configs
            )
        }
        let request = CreateTopicsRequest(
            topics: [
                .init(
                    name: name,
                    numPartitions: partitions,
                    replicationFactor: replicationFactor,
                    configs: configs.map { .init(name: $0.key, value: $0.value) }
                )
            ],
            timeoutMs: 30_000
        )
        let answer: CreateTopicsResponse.CreatableTopicResult?
        do {
            answer = try await forwarding.channel.send(request, version: 7, deadline: .now + .seconds(30)).topics.first
        } catch {
            throw .notController(activeNodeID: nil)
        }
        guard let answer else { throw .notController(activeNodeID: nil) }
        let reason = answer.errorMessage ?? "refused by the active controller"
        switch ErrorCode(answer.errorCode) {
        case .none: break
        case .topicAlreadyExists: throw .topicAlreadyExists(name)
        case .invalidTopicException: throw .invalidTopic(name, reason: reason)
        case .invalidPartitions: throw .invalidPartitions(partitions, reason: reason)
        case .invalidReplicationFactor:
            // The controller's count of live brokers is in its message only; fewer than asked for is what is known.
            throw .invalidReplicationFactor(replicationFactor, liveBrokers: Int(replicationFactor) - 1)
        case .invalidConfig: throw .invalidConfig(reason)
        case .notController: throw .notController(activeNodeID: nil)
        default: throw .invalidRequest(reason)
        }
        // The controller answers once it has committed; this node's follower applies the topic soon after.
        let applied = await self.controller.follower.waitUntil(timeout: .seconds(30)) { $0.image.topics[name] != nil }
        guard applied, let topic = await self.controller.follower.followed.image.topics[name] else {
            throw .notController(activeNodeID: nil)
        }
        return topic
    }
}

extension DescribeQuorumRequest: ControllerBoundRequest {
    /// As Kafka's: the top-level code (and its message from v2).
    public func errorResponse(_ error: ErrorCode, message: String?, version: Int16) -> DescribeQuorumResponse {
        DescribeQuorumResponse(errorCode: error.rawValue, errorMessage: version >= 2 ? message : nil)
    }

    public static func errorCodes(in response: DescribeQuorumResponse) -> [Int16] {
        [response.errorCode] + response.topics.flatMap { $0.partitions.map(\.errorCode) }
    }

    /// A controller that is not the active one answers as a Raft follower does: NOT_LEADER_OR_FOLLOWER.
    public static var formerControllerErrors: Set<Int16> {
        [ErrorCode.notController.rawValue, ErrorCode.notLeaderOrFollower.rawValue]
    }
}
