import ClusterControl
import EtcdMetadataStore
import EtcdTestSupport
import Foundation
import KafkaMessages
import KafkaNIO
import KafkaProperties
import KafkaWire
import Logging
import MetadataStore
import NIOCore
import Testing

@testable import LogBrokerServer

/// KRaft's broker lifecycle over real sockets and a real etcd: a controller process's handlers on its listener
/// (BrokerRegistration, BrokerHeartbeat, AllocateProducerIds) and brokers' `BrokerLifecycle`s, each node with its
/// own etcd client and image follower, all in this process.
@Suite(.timeLimit(.minutes(3))) struct BrokerLifecycleTests {
    static let controllerNodeID: Int32 = 100
    /// Long enough that no step of a test outlasts it on a loaded machine (2 s did: brokers registered by hand were
    /// fenced between two of the test's requests), short enough to wait out where a test must.
    static let sessionTimeoutMs = 10_000
    static let heartbeatIntervalMs = 200

    /// A controller-only node serving the lifecycle RPCs, over one etcd.
    struct Cluster: Sendable {
        let etcd: String
        let controller: Controller
        let controllerPort: Int
        let log: CapturedLog

        /// A new node on the cluster's etcd with no controller role, started (following the image).
        func follower(nodeID: Int32) async throws -> (Controller, EtcdMetadataStore) {
            let store = try EtcdMetadataStore(configuration: .init(endpoints: [self.etcd]), logger: self.log.logger())
            let node = Controller(store: store, nodeID: nodeID, logger: self.log.logger(), isController: false)
            try await node.start(registration: nil)
            return (node, store)
        }

        /// The broker configuration of node `nodeID` in this cluster.
        func configuration(nodeID: Int32, rack: String? = nil) throws -> BrokerConfiguration {
            try testConfiguration(
                [
                    ("broker.heartbeat.interval.ms", "\(BrokerLifecycleTests.heartbeatIntervalMs)"),
                    ("broker.session.timeout.ms", "\(BrokerLifecycleTests.sessionTimeoutMs)"),
                ] + (rack.map { [("broker.rack", $0)] } ?? [])
            ).with(nodeID: nodeID)
        }

        /// A lifecycle for broker `nodeID` following `node`'s image, started.
        func lifecycle(nodeID: Int32, following node: Controller, rack: String? = nil) async throws -> BrokerLifecycle {
            let lifecycle = BrokerLifecycle(
                configuration: try self.configuration(nodeID: nodeID, rack: rack),
                follower: node.follower,
                logger: self.log.logger()
            )
            await lifecycle.start(
                endpoints: [BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: 9000 + nodeID)]
            )
            return lifecycle
        }

        /// Broker `nodeID` as the controller's image has it.
        func registration(_ nodeID: Int32) async -> BrokerRegistration? {
            await self.controller.follower.followed.image.brokers[nodeID]
        }
    }

    static func withCluster(_ body: @Sendable (Cluster) async throws -> Void) async throws {
        try await EtcdServer.with { etcd in
            let log = CapturedLog()
            let store = try EtcdMetadataStore(configuration: .init(endpoints: [etcd.endpoint]), logger: log.logger())
            let controller = Controller(
                store: store,
                nodeID: Self.controllerNodeID,
                logger: log.logger(),
                brokerSessionTimeout: .milliseconds(Self.sessionTimeoutMs)
            )
            var handlers = HandlerTable()
            handlers.register(BrokerRegistrationHandler(controller: controller))
            handlers.register(BrokerHeartbeatHandler(controller: controller))
            handlers.register(AllocateProducerIdsHandler(controller: controller))
            try await withServer(handlers: handlers, log: log) { port in
                try await controller.start(
                    registration: nil,
                    controllerEndpoint: BrokerEndpoint(listener: "CONTROLLER", host: "127.0.0.1", port: Int32(port))
                )
                let cluster = Cluster(etcd: etcd.endpoint, controller: controller, controllerPort: port, log: log)
                do {
                    try await body(cluster)
                } catch {
                    await controller.stop()
                    throw error
                }
                await controller.stop()
            }
            await store.shutdown()
        }
    }

    static func eventually(within timeout: Duration, _ condition: () async -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return await condition()
    }

    /// Registers node `nodeID` by hand on `connection` and heartbeats until it is unfenced. - Returns: its epoch.
    static func registerByHand(
        _ nodeID: Int32,
        clusterID: String,
        on connection: KafkaClientConnection,
        incarnation: KafkaUUID = BrokerLifecycle.randomUUID()
    ) async throws -> Int64 {
        let registered = try await connection.send(
            BrokerRegistrationRequest(brokerID: nodeID, clusterID: clusterID, incarnationID: incarnation),
            version: 4
        )
        try #require(registered.errorCode == 0, "registration: \(registered)")
        var answer = BrokerHeartbeatResponse()
        for _ in 0..<200 {
            answer = try await connection.send(
                BrokerHeartbeatRequest(
                    brokerID: nodeID,
                    brokerEpoch: registered.brokerEpoch,
                    currentMetadataOffset: registered.brokerEpoch
                ),
                version: 1
            )
            if answer.errorCode == 0 && !answer.isFenced { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        try #require(answer.errorCode == 0 && !answer.isFenced, "heartbeat: \(answer)")
        return registered.brokerEpoch
    }

    @Test func threeBrokersRegisterOverTheControllerListenerAndAreUnfenced() async throws {
        try await Self.withCluster { cluster in
            var nodes: [(Controller, EtcdMetadataStore, BrokerLifecycle)] = []
            for nodeID in Int32(1)...3 {
                let (node, store) = try await cluster.follower(nodeID: nodeID)
                let lifecycle = try await cluster.lifecycle(nodeID: nodeID, following: node, rack: "rack-\(nodeID)")
                nodes.append((node, store, lifecycle))
            }
            for (_, _, lifecycle) in nodes { try await lifecycle.waitUntilUnfenced() }
            var incarnations: Set<KafkaUUID> = []
            for (index, (node, _, lifecycle)) in nodes.enumerated() {
                let nodeID = Int32(index + 1)
                let registration = try #require(await cluster.registration(nodeID))
                #expect(!registration.fenced)
                #expect(registration.incarnationID == lifecycle.incarnationID && !registration.isInProcess)
                let brokerEpoch = await lifecycle.brokerEpoch
                #expect(registration.brokerEpoch > 0 && registration.brokerEpoch == brokerEpoch)
                #expect(registration.rack == "rack-\(nodeID)")
                #expect(
                    registration.endpoints == [
                        BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: 9000 + nodeID)
                    ]
                )
                incarnations.insert(registration.incarnationID)
                // Every node's follower sees the three unfenced brokers.
                #expect(
                    try await Self.eventually(within: .seconds(60)) {
                        let brokers = await node.follower.followed.image.brokers
                        return Set(brokers.keys) == [1, 2, 3] && brokers.values.allSatisfy { !$0.fenced }
                    }
                )
            }
            #expect(incarnations.count == 3)
            let sessions = await cluster.controller.activeController?.brokerSessions() ?? [:]
            #expect(Set(sessions.keys) == [1, 2, 3])
            // Heartbeats keep coming: each session was renewed within a few heartbeat intervals.
            try await Task.sleep(for: .milliseconds(3 * Self.heartbeatIntervalMs))
            let renewed = await cluster.controller.activeController?.brokerSessions() ?? [:]
            #expect(renewed.values.allSatisfy { $0.millisecondsSinceLastContact < Int64(Self.sessionTimeoutMs) })
            #expect(renewed.values.allSatisfy { !$0.fenced })

            // A broker whose controller is elsewhere gets its producer ids by AllocateProducerIds.
            let (node, _, lifecycle) = nodes[1]
            let forwarding = ControllerForwarding(controller: node, nodeID: 2, logger: cluster.log.logger())
            let handler = InitProducerIdHandler(forwarding: forwarding, lifecycle: lifecycle, nodeID: 2)
            let first = await handler.handle(InitProducerIdRequest(transactionalID: nil), context: Self.context())
            let second = await handler.handle(InitProducerIdRequest(transactionalID: nil), context: Self.context())
            #expect(first.errorCode == 0 && first.producerID >= 0, "\(first)")
            #expect(second.producerID == first.producerID + 1)
            let allocated = await cluster.controller.follower.followed.image
            #expect(allocated.nextProducerID >= first.producerID + Int64(Controller.producerIDBlockSize))
            await forwarding.channel.close()

            for (node, store, lifecycle) in nodes {
                await lifecycle.stop(timeout: .seconds(5))
                await node.stop()
                await store.shutdown()
            }
        }
    }

    static func context() -> RequestContext {
        RequestContext(
            apiVersion: 4,
            correlationID: 1,
            clientID: "test",
            remoteAddress: nil,
            listenerName: "PLAINTEXT",
            advertisedAPIs: [],
            logger: CapturedLog().logger()
        )
    }

    @Test func theControllerRefusesDuplicateUnknownAndStaleBrokersWithKafkasCodes() async throws {
        try await Self.withCluster { cluster in
            let clusterID = await cluster.controller.follower.followed.image.clusterID
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: cluster.controllerPort) { first in
                let epoch = try await Self.registerByHand(7, clusterID: clusterID, on: first)
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: cluster.controllerPort) {
                    second in
                    // Another incarnation of node 7 while the first is alive.
                    let duplicate = try await second.send(
                        BrokerRegistrationRequest(
                            brokerID: 7,
                            clusterID: clusterID,
                            incarnationID: BrokerLifecycle.randomUUID()
                        ),
                        version: 4
                    )
                    #expect(duplicate.errorCode == ErrorCode.duplicateBrokerRegistration.rawValue)
                    let unknown = try await second.send(
                        BrokerHeartbeatRequest(brokerID: 8, brokerEpoch: epoch, currentMetadataOffset: epoch),
                        version: 1
                    )
                    #expect(unknown.errorCode == ErrorCode.brokerIDNotRegistered.rawValue)
                    let stale = try await second.send(
                        BrokerHeartbeatRequest(brokerID: 7, brokerEpoch: epoch - 1, currentMetadataOffset: epoch),
                        version: 1
                    )
                    #expect(stale.errorCode == ErrorCode.staleBrokerEpoch.rawValue)
                    let otherCluster = try await second.send(
                        BrokerRegistrationRequest(
                            brokerID: 9,
                            clusterID: "another-cluster",
                            incarnationID: BrokerLifecycle.randomUUID()
                        ),
                        version: 4
                    )
                    #expect(otherCluster.errorCode == ErrorCode.inconsistentClusterID.rawValue)
                    let staleProducerIDs = try await second.send(
                        AllocateProducerIdsRequest(brokerID: 7, brokerEpoch: epoch + 1),
                        version: 0
                    )
                    #expect(staleProducerIDs.errorCode == ErrorCode.staleBrokerEpoch.rawValue)
                }
                // None of that touched node 7.
                #expect(await cluster.registration(7)?.fenced == false)
                #expect(await cluster.registration(7)?.brokerEpoch == epoch)
            }
        }
    }

    @Test func garbageOnTheControllerListenerClosesThatConnectionOnly() async throws {
        try await Self.withCluster { cluster in
            let clusterID = await cluster.controller.follower.followed.image.clusterID
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: cluster.controllerPort) { broker in
                let epoch = try await Self.registerByHand(5, clusterID: clusterID, on: broker)
                try await RawConnection.withConnection(port: cluster.controllerPort) { raw in
                    // A frame of random bytes behind an API key no definition has: no request header parses.
                    try await raw.writeFrame([0xFF, 0xF9] + (0..<62).map { _ in UInt8.random(in: 0...255) })
                    #expect(await raw.isClosedByServer())
                }
                // The broker's own connection still heartbeats, and it stays unfenced.
                let answer = try await broker.send(
                    BrokerHeartbeatRequest(brokerID: 5, brokerEpoch: epoch, currentMetadataOffset: epoch),
                    version: 1
                )
                #expect(answer.errorCode == 0 && !answer.isFenced)
                #expect(await cluster.registration(5)?.fenced == false)
            }
        }
    }

    @Test func aClosedHeartbeatConnectionFencesAtOnceAndASilentBrokerAfterTheSessionTimeout() async throws {
        try await Self.withCluster { cluster in
            let clusterID = await cluster.controller.follower.followed.image.clusterID
            // A crash: the heartbeat connection closes.
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: cluster.controllerPort) { broker in
                _ = try await Self.registerByHand(3, clusterID: clusterID, on: broker)
            }
            let closed = ContinuousClock.now
            #expect(try await Self.eventually(within: .seconds(5)) { await cluster.registration(3)?.fenced == true })
            let fencedAfterClose = ContinuousClock.now - closed
            #expect(fencedAfterClose < .milliseconds(Self.sessionTimeoutMs / 2), "\(fencedAfterClose)")

            // A pause: the connection stays open and silent.
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: cluster.controllerPort) { broker in
                // Before the registration's last heartbeat, the controller's last contact: the silence starts later.
                let silent = ContinuousClock.now
                _ = try await Self.registerByHand(4, clusterID: clusterID, on: broker)
                #expect(
                    try await Self.eventually(within: .milliseconds(Self.sessionTimeoutMs * 3)) {
                        await cluster.registration(4)?.fenced == true
                    }
                )
                let fencedAfterSilence = ContinuousClock.now - silent
                #expect(fencedAfterSilence >= .milliseconds(Self.sessionTimeoutMs - 50), "\(fencedAfterSilence)")
                #expect(fencedAfterSilence < .milliseconds(Self.sessionTimeoutMs * 3), "\(fencedAfterSilence)")
                cluster.log.append(
                    "measured: fenced \(fencedAfterClose) after close, \(fencedAfterSilence) after silence"
                )
                print(
                    "measured: fenced \(fencedAfterClose) after its connection closed, \(fencedAfterSilence) after silence"
                )
            }
        }
    }

    @Test func aSecondProcessWithTheSameNodeIDStopsStartingWithALineNamingNodeID() async throws {
        try await Self.withCluster { cluster in
            let (first, firstStore) = try await cluster.follower(nodeID: 1)
            let running = try await cluster.lifecycle(nodeID: 1, following: first)
            try await running.waitUntilUnfenced()
            let (second, secondStore) = try await cluster.follower(nodeID: 1)
            let started = ContinuousClock.now
            let intruder = try await cluster.lifecycle(nodeID: 1, following: second)
            let error = await #expect(throws: LogBrokerServerError.self) { try await intruder.waitUntilUnfenced() }
            let waited = ContinuousClock.now - started
            #expect(error?.settingName == "node.id")
            #expect(error?.description.contains("node.id") == true)
            #expect(error?.description.contains("DUPLICATE_BROKER_REGISTRATION") == true)
            #expect(waited >= .milliseconds(Self.sessionTimeoutMs), "\(waited)")
            // The first one was never disturbed.
            #expect(await cluster.registration(1)?.incarnationID == running.incarnationID)
            #expect(await cluster.registration(1)?.fenced == false)
            await intruder.stop(timeout: .seconds(1))
            await running.stop(timeout: .seconds(5))
            for (node, store) in [(first, firstStore), (second, secondStore)] {
                await node.stop()
                await store.shutdown()
            }
        }
    }

    @Test func aRestartedBrokerRegistersWithANewIncarnationAndIsUnfenced() async throws {
        try await Self.withCluster { cluster in
            let (node, store) = try await cluster.follower(nodeID: 2)
            let before = try await cluster.lifecycle(nodeID: 2, following: node)
            try await before.waitUntilUnfenced()
            let firstEpoch = try #require(await before.brokerEpoch)
            // The bound of a busy machine (each heartbeat may wait a heartbeat interval, 200 ms here, and 5 s of
            // them ran out in a clean-clone run).
            await before.stop(timeout: .seconds(60))
            #expect(await before.status.shutDownAllowed)
            #expect(try await Self.eventually(within: .seconds(30)) { await cluster.registration(2)?.fenced == true })
            await node.stop()
            await store.shutdown()

            let (restarted, restartedStore) = try await cluster.follower(nodeID: 2)
            let after = try await cluster.lifecycle(nodeID: 2, following: restarted)
            try await after.waitUntilUnfenced()
            let registration = try #require(await cluster.registration(2))
            #expect(registration.incarnationID == after.incarnationID && after.incarnationID != before.incarnationID)
            #expect(registration.brokerEpoch > firstEpoch && !registration.fenced)
            await after.stop(timeout: .seconds(5))
            await restarted.stop()
            await restartedStore.shutdown()
        }
    }
    @Test func heartbeatsGoToTheNextActiveControllerAfterAFailover() async throws {
        try await Self.withCluster { cluster in
            // A standby controller node with its own listener, on the same etcd.
            let standbyStore = try EtcdMetadataStore(
                configuration: .init(endpoints: [cluster.etcd]),
                logger: cluster.log.logger()
            )
            let standby = Controller(
                store: standbyStore,
                nodeID: Self.controllerNodeID + 1,
                logger: cluster.log.logger(),
                brokerSessionTimeout: .milliseconds(Self.sessionTimeoutMs)
            )
            var handlers = HandlerTable()
            handlers.register(BrokerRegistrationHandler(controller: standby))
            handlers.register(BrokerHeartbeatHandler(controller: standby))
            try await withServer(handlers: handlers, log: cluster.log) { port in
                try await standby.start(
                    registration: nil,
                    controllerEndpoint: BrokerEndpoint(listener: "CONTROLLER", host: "127.0.0.1", port: Int32(port))
                )
                let (node, store) = try await cluster.follower(nodeID: 1)
                let lifecycle = try await cluster.lifecycle(nodeID: 1, following: node)
                try await lifecycle.waitUntilUnfenced()
                let epoch = await lifecycle.brokerEpoch

                // The active controller resigns; the standby takes over and hears the broker's heartbeats.
                await cluster.controller.stop()
                #expect(await standby.activeController?.waitUntilActive(timeout: .seconds(20)) == true)
                #expect(
                    try await Self.eventually(within: .seconds(60)) {
                        let session = await standby.activeController?.brokerSessions()[1]
                        return session.map { $0.millisecondsSinceLastContact < Int64(Self.heartbeatIntervalMs) } == true
                    }
                )
                // Beyond the new controller's first session timeout: still the same registration, unfenced.
                try await Task.sleep(for: .milliseconds(Self.sessionTimeoutMs + Self.heartbeatIntervalMs))
                let registration = await standby.follower.followed.image.brokers[1]
                #expect(registration?.fenced == false && registration?.brokerEpoch == epoch)
                #expect(await lifecycle.status.fenced == false)

                await lifecycle.stop(timeout: .seconds(5))
                await node.stop()
                await store.shutdown()
                await standby.stop()
            }
            await standbyStore.shutdown()
        }
    }
}

extension BrokerConfiguration {
    /// This configuration for node `nodeID`.
    func with(nodeID: Int32) -> BrokerConfiguration {
        var configuration = self
        configuration.nodeID = nodeID
        return configuration
    }
}
