import ClusterControl
import Foundation
import KafkaMessages
import KafkaNIO
import KafkaWire
import Logging
import MetadataStore
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

@testable import LogBrokerServer

/// The pieces a broker of a cluster uses to reach its controller, in-process over real sockets: the connection's
/// close actions (how the controller fences a broker whose heartbeat connection closes) and the forwarding of
/// admin requests from a broker whose controller is not the active one.
@Suite(.timeLimit(.minutes(2))) struct ControllerForwardingTests {
    /// Registers a close action on every SaslHandshake it serves and counts the actions run.
    struct CloseWatchingHandler: KafkaHandler {
        typealias Request = SaslHandshakeRequest
        var versions: ClosedRange<Int16> { 0...1 }
        let closes: Counter

        func handle(_ request: SaslHandshakeRequest, context: RequestContext) async -> SaslHandshakeResponse {
            let closes = self.closes
            // Registered twice under one key: the second replaces the first, so one close runs one action.
            context.connection.whenClosed(key: "watch") { closes.add() }
            context.connection.whenClosed(key: "watch") { closes.add() }
            return SaslHandshakeResponse(errorCode: 0, mechanisms: [])
        }
    }

    /// A thread-safe count.
    final class Counter: Sendable {
        private let value = Mutex(0)
        func add() { self.value.withLock { $0 += 1 } }
        var count: Int { self.value.withLock { $0 } }
    }

    static func eventually(within timeout: Duration, _ condition: () async -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return await condition()
    }

    @Test func aCloseActionRunsOnceWhenThePeerClosesItsConnection() async throws {
        let closes = Counter()
        var handlers = HandlerTable()
        handlers.register(CloseWatchingHandler(closes: closes))
        try await withServer(handlers: handlers) { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                _ = try await connection.send(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)
                _ = try await connection.send(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)
            }
            #expect(try await Self.eventually(within: .seconds(10)) { closes.count == 1 })
            // A second connection has actions of its own.
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                _ = try await connection.send(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)
                #expect(closes.count == 1)
            }
            #expect(try await Self.eventually(within: .seconds(10)) { closes.count == 2 })
        }
    }

    @Test func aCloseActionDoesNotRunWhenThisProcessShutsDown() async throws {
        let closes = Counter()
        var handlers = HandlerTable()
        handlers.register(CloseWatchingHandler(closes: closes))
        let configuration = try testConfiguration()
        let log = CapturedLog()
        let server = try await KafkaServer.bind(
            configuration: configuration,
            listeners: configuration.listeners,
            handlers: handlers,
            logger: log.logger()
        )
        let port = try #require(server.localAddresses.first?.port)
        let group = ServiceGroup(services: [server], logger: log.logger())
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                _ = try await connection.send(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1)
                // The server closes this idle connection for its shutdown.
                await group.triggerGracefulShutdown()
                #expect(try await connection.receiveFrame() == nil)
            }
            try await tasks.waitForAll()
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(closes.count == 0)
    }

    /// Two nodes on one metadata store: node 1's controller is active and serves CreateTopics on a listener named in
    /// its election key; node 2 has no controller role and forwards.
    struct TwoNodes {
        let store: LocalMetadataStore
        let directory: String
        let active: Controller
        let follower: Controller
    }

    /// CreateTopics as a controller that has just lost its term answers it the first `refusals` times (NOT_CONTROLLER
    /// for every topic), then as `wrapped` does.
    struct LosingTermOnce: KafkaHandler {
        typealias Request = CreateTopicsRequest
        var versions: ClosedRange<Int16> { self.wrapped.versions }
        let wrapped: CreateTopicsHandler
        let refusals: Int
        let calls = Counter()

        func handle(_ request: CreateTopicsRequest, context: RequestContext) async -> CreateTopicsResponse {
            self.calls.add()
            guard self.calls.count > self.refusals else {
                return request.errorResponse(.notController, message: nil, version: context.apiVersion)
            }
            return await self.wrapped.handle(request, context: context)
        }
    }

    static func withTwoNodes(
        forwardingTimeout: Duration = .seconds(60),
        notControllerAnswers: Int = 0,
        _ body: @Sendable (TwoNodes, _ controllerPort: Int, _ brokerPort: Int) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("forwarding-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = CapturedLog()
        let store = try LocalMetadataStore(path: directory + "/metadata", logger: log.logger())
        let configuration = try testConfiguration()
        let active = Controller(store: store, nodeID: 1, logger: log.logger())
        var controllerHandlers = HandlerTable()
        controllerHandlers.register(
            LosingTermOnce(
                wrapped: CreateTopicsHandler(controller: active, configuration: configuration),
                refusals: notControllerAnswers
            )
        )
        controllerHandlers.register(DescribeQuorumHandler(controller: active))
        try await withServer(handlers: controllerHandlers, log: log) { controllerPort in
            try await active.start(
                registration: BrokerRegistration(
                    nodeID: 1,
                    endpoints: [BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: 1)]
                ),
                controllerEndpoint: BrokerEndpoint(
                    listener: "CONTROLLER",
                    host: "127.0.0.1",
                    port: Int32(controllerPort)
                )
            )
            let follower = Controller(store: store, nodeID: 2, logger: log.logger(), isController: false)
            try await follower.start(registration: nil)
            let forwarding = ControllerForwarding(
                controller: follower,
                nodeID: 2,
                timeout: forwardingTimeout,
                logger: log.logger()
            )
            var brokerHandlers = HandlerTable()
            brokerHandlers.register(
                CreateTopicsHandler(controller: follower, configuration: configuration),
                forwardingTo: forwarding
            )
            brokerHandlers.register(DescribeQuorumHandler(controller: follower), forwardingTo: forwarding)
            try await withServer(handlers: brokerHandlers, log: log) { brokerPort in
                try await body(
                    TwoNodes(store: store, directory: directory, active: active, follower: follower),
                    controllerPort,
                    brokerPort
                )
            }
            await forwarding.channel.close()
            await follower.stop()
            await active.stop()
        }
    }

    @Test func createTopicsOnABrokerWithoutTheControllerIsForwardedAndAnswersTheControllersResult() async throws {
        try await Self.withTwoNodes { nodes, _, brokerPort in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: brokerPort) { connection in
                for version in [Int16(0), 4, 7] {
                    let name = "forwarded-v\(version)"
                    let response = try await connection.send(
                        CreateTopicsRequest(
                            topics: [.init(name: name, numPartitions: 3, replicationFactor: 1)],
                            timeoutMs: 5000
                        ),
                        version: version
                    )
                    let result = try #require(response.topics.first)
                    #expect(result.name == name && result.errorCode == 0, "v\(version): \(result)")
                    if version >= 7 { #expect(result.topicID != .zero) }
                    // The controller's result, and every node's image has the topic.
                    let created = try await nodes.active.image().topics[name]
                    #expect(created?.partitions.count == 3)
                    if version >= 7 { #expect(created?.id == result.topicID) }
                    #expect(
                        try await Self.eventually(within: .seconds(10)) {
                            (try? await nodes.follower.image().topics[name]) != nil
                        }
                    )
                }
                // The controller's refusal comes back as it is.
                let again = try await connection.send(
                    CreateTopicsRequest(topics: [.init(name: "forwarded-v7", numPartitions: 1, replicationFactor: 1)]),
                    version: 7
                )
                #expect(again.topics.first?.errorCode == ErrorCode.topicAlreadyExists.rawValue)
                #expect(again.topics.first?.errorMessage?.contains("already exists") == true)
            }
        }
    }

    @Test func describeQuorumOnABrokerWithoutTheControllerAnswersTheActiveControllersView() async throws {
        try await Self.withTwoNodes { _, _, brokerPort in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: brokerPort) { connection in
                for version in Int16(0)...2 {
                    let response = try await connection.send(
                        DescribeQuorumRequest(
                            topics: [
                                .init(
                                    topicName: DescribeQuorumHandler.metadataTopic,
                                    partitions: [.init(partitionIndex: 0)]
                                )
                            ]
                        ),
                        version: version
                    )
                    let partition = try #require(response.topics.first?.partitions.first)
                    #expect(response.errorCode == 0 && partition.errorCode == 0, "v\(version): \(response)")
                    // Node 1's controller is the active one; node 2, which was asked, has no controller role.
                    #expect(partition.leaderID == 1 && partition.currentVoters.map(\.replicaID) == [1])
                }
            }
        }
    }

    @Test func aNotControllerAnswerIsNotPassedOnButSentAgain() async throws {
        try await Self.withTwoNodes(notControllerAnswers: 2) { nodes, _, brokerPort in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: brokerPort) { connection in
                let response = try await connection.send(
                    CreateTopicsRequest(topics: [.init(name: "retried", numPartitions: 1, replicationFactor: 1)]),
                    version: 7
                )
                #expect(response.topics.first?.errorCode == 0, "\(response)")
                #expect(try await nodes.active.image().topics["retried"] != nil)
            }
        }
    }

    @Test func forwardingWithoutAnActiveControllerAnswersRequestTimedOut() async throws {
        try await Self.withTwoNodes(forwardingTimeout: .seconds(1)) { nodes, _, brokerPort in
            // The controller resigns: its election key goes, and no other process campaigns.
            await nodes.active.stop()
            #expect(
                try await Self.eventually(within: .seconds(10)) {
                    await nodes.follower.follower.followed.controller == nil
                }
            )
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: brokerPort) { connection in
                let started = ContinuousClock.now
                let response = try await connection.send(
                    CreateTopicsRequest(topics: [.init(name: "orphan", numPartitions: 1, replicationFactor: 1)]),
                    version: 7
                )
                let waited = ContinuousClock.now - started
                #expect(response.topics.first?.name == "orphan")
                #expect(response.topics.first?.errorCode == ErrorCode.requestTimedOut.rawValue)
                #expect(waited >= .seconds(1) && waited < .seconds(10), "\(waited)")
            }
        }
    }
    @Test func aForwardedRequestReachesTheNextActiveControllerAfterAFailover() async throws {
        try await Self.withTwoNodes { nodes, _, brokerPort in
            // A second controller node, standing by, with its own listener.
            let log = CapturedLog()
            let standby = Controller(store: nodes.store, nodeID: 3, logger: log.logger())
            var handlers = HandlerTable()
            handlers.register(CreateTopicsHandler(controller: standby, configuration: try testConfiguration()))
            try await withServer(handlers: handlers, log: log) { standbyPort in
                try await standby.start(
                    registration: nil,
                    controllerEndpoint: BrokerEndpoint(
                        listener: "CONTROLLER",
                        host: "127.0.0.1",
                        port: Int32(standbyPort)
                    )
                )
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: brokerPort) { connection in
                    let before = try await connection.send(
                        CreateTopicsRequest(topics: [.init(name: "before", numPartitions: 1, replicationFactor: 1)]),
                        version: 7
                    )
                    #expect(before.topics.first?.errorCode == 0)
                    // The active controller resigns; the standby wins the election key.
                    await nodes.active.stop()
                    #expect(await standby.activeController?.waitUntilActive(timeout: .seconds(20)) == true)
                    let after = try await connection.send(
                        CreateTopicsRequest(topics: [.init(name: "after", numPartitions: 1, replicationFactor: 1)]),
                        version: 7
                    )
                    #expect(after.topics.first?.errorCode == 0, "\(after)")
                    #expect(try await standby.image().topics["after"] != nil)
                }
                await standby.stop()
            }
        }
    }
}
