import KafkaWire
import Testing

@testable import ClusterControl

/// A broker process's registration, with the incarnation id of that process.
private func registration(_ nodeID: Int32, incarnation: UInt64) -> BrokerRegistration {
    BrokerRegistration(
        nodeID: nodeID,
        endpoints: [BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: 9092 + nodeID)],
        rack: "rack-\(nodeID)",
        incarnationID: KafkaUUID(mostSignificantBits: incarnation, leastSignificantBits: 1)
    )
}

private func heartbeat(
    _ nodeID: Int32,
    epoch: Int64,
    applied: Int64,
    wantShutDown: Bool = false
) -> BrokerHeartbeat {
    BrokerHeartbeat(
        nodeID: nodeID,
        brokerEpoch: epoch,
        appliedRevision: applied,
        wantFence: false,
        wantShutDown: wantShutDown
    )
}

/// Registration and liveness through the active controller (KRaft's BrokerRegistration and BrokerHeartbeat), on
/// the local store and on a real etcd: what the controller commits to the image is what every broker then sees.
@Suite struct BrokerRegistrationTests {
    @Test(arguments: StoreKind.allCases)
    func aRegisteredBrokerStartsFencedAndIsUnfencedOnceCaughtUp(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let node = try await Node.start(1, on: fixture.store)
            try await bootstrap(node.controller)
            let epoch = try await node.controller.register(registration(2, incarnation: 7))
            let recorded = try #require(await node.follower.followed.image.brokers[2])
            #expect(recorded.brokerEpoch == epoch)
            #expect(recorded.fenced)
            #expect(recorded.rack == "rack-2")
            #expect(ActiveController.liveBrokers(in: await node.follower.followed.image) == [1])

            let behind = try await node.controller.heartbeat(heartbeat(2, epoch: epoch, applied: epoch - 1))
            #expect(behind == BrokerHeartbeatAnswer(isCaughtUp: false, isFenced: true, shouldShutDown: false))
            let caughtUp = try await node.controller.heartbeat(heartbeat(2, epoch: epoch, applied: epoch))
            #expect(caughtUp == BrokerHeartbeatAnswer(isCaughtUp: true, isFenced: false, shouldShutDown: false))
            let image = await node.follower.followed.image
            #expect(image.brokers[2]?.fenced == false)
            #expect(image.brokers[2]?.brokerEpoch == epoch)
            #expect(ActiveController.liveBrokers(in: image) == [1, 2])
            #expect(await node.controller.brokerSessions()[2]?.appliedRevision == epoch)

            // A controlled shutdown: fenced, and told it may stop.
            let stopping = try await node.controller.heartbeat(
                heartbeat(2, epoch: epoch, applied: epoch, wantShutDown: true)
            )
            #expect(stopping == BrokerHeartbeatAnswer(isCaughtUp: true, isFenced: true, shouldShutDown: true))
            #expect(await node.follower.followed.image.brokers[2]?.fenced == true)
            await node.stop()
        }
    }

    @Test(arguments: StoreKind.allCases)
    func anotherIncarnationOfALiveBrokerIsRefused(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let node = try await Node.start(1, on: fixture.store)
            try await bootstrap(node.controller)
            let first = try await node.controller.register(registration(2, incarnation: 7))
            _ = try await node.controller.heartbeat(heartbeat(2, epoch: first, applied: first))
            await #expect(throws: ClusterControlError.duplicateBrokerRegistration(2)) {
                try await node.controller.register(registration(2, incarnation: 8))
            }
            // The same process retrying its registration is answered, with a new epoch; the old one is stale.
            let retried = try await node.controller.register(registration(2, incarnation: 7))
            #expect(retried > first)
            await #expect(throws: ClusterControlError.staleBrokerEpoch(2, epoch: first, current: retried)) {
                try await node.controller.heartbeat(heartbeat(2, epoch: first, applied: retried))
            }
            await #expect(throws: ClusterControlError.brokerNotRegistered(9)) {
                try await node.controller.heartbeat(heartbeat(9, epoch: first, applied: retried))
            }
            #expect(ClusterControlError.brokerNotRegistered(9).kafkaErrorCode == .brokerIDNotRegistered)
            await node.stop()
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aClosedHeartbeatConnectionFencesAtOnceAndANewIncarnationMayRegister(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let node = try await Node.start(1, on: fixture.store)
            try await bootstrap(node.controller)
            let epoch = try await node.controller.register(registration(2, incarnation: 7))
            _ = try await node.controller.heartbeat(heartbeat(2, epoch: epoch, applied: epoch))
            await node.controller.heartbeatConnectionClosed(nodeID: 2, brokerEpoch: epoch)
            #expect(await node.follower.followed.image.brokers[2]?.fenced == true)
            // The crashed process's successor is not refused as a duplicate.
            let restarted = try await node.controller.register(registration(2, incarnation: 8))
            let answer = try await node.controller.heartbeat(heartbeat(2, epoch: restarted, applied: restarted))
            #expect(!answer.isFenced)
            let recorded = try #require(await node.follower.followed.image.brokers[2])
            #expect(recorded.incarnationID == KafkaUUID(mostSignificantBits: 8, leastSignificantBits: 1))
            #expect(!recorded.fenced)
            await node.stop()
        }
    }

    @Test func aSilentBrokerIsFencedOnceItsSessionLapses() async throws {
        try await withStore(.local) { fixture in
            let node = try await Node.start(1, on: fixture.store, brokerSessionTimeout: .seconds(1))
            try await bootstrap(node.controller)
            let epoch = try await node.controller.register(registration(2, incarnation: 7))
            let lastHeartbeat = ContinuousClock.now
            _ = try await node.controller.heartbeat(heartbeat(2, epoch: epoch, applied: epoch))
            let fenced = await node.follower.waitUntil(timeout: .seconds(60)) { $0.image.brokers[2]?.fenced == true }
            #expect(fenced)
            #expect(ContinuousClock.now - lastHeartbeat >= .seconds(1))
            // The in-process registration of the controller's own broker has no session to lapse.
            #expect(await node.follower.followed.image.brokers[1]?.fenced == false)
            await node.stop()
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aNewActiveControllerTakesOverTheRegisteredBrokers(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let nodes = [try await Node.start(1, on: fixture.store), try await Node.start(2, on: fixture.store)]
            let (active, standbys) = try await elected(nodes)
            try await bootstrap(active.controller)
            let epoch = try await active.controller.register(registration(3, incarnation: 7))
            _ = try await active.controller.heartbeat(heartbeat(3, epoch: epoch, applied: epoch))
            await #expect(throws: ClusterControlError.self) {
                try await standbys[0].controller.heartbeat(heartbeat(3, epoch: epoch, applied: epoch))
            }
            await active.stop()
            let next = standbys[0].controller
            try #require(await next.waitUntilActive(timeout: .seconds(30)))
            let answer = try await next.heartbeat(heartbeat(3, epoch: epoch, applied: epoch))
            #expect(answer == BrokerHeartbeatAnswer(isCaughtUp: true, isFenced: false, shouldShutDown: false))
            #expect(await next.brokerSessions()[3]?.brokerEpoch == epoch)
            await standbys[0].stop()
        }
    }
}

@Suite struct BrokerRegistrationCodecTests {
    @Test func aRegistrationRoundTripsAndItsEpochIsTheRevisionThatRecordedIt() throws {
        var broker = registration(4, incarnation: 9)
        broker.fenced = true
        let recorded = try ImageCodec.decodeBroker(ImageCodec.encode(broker), key: "brokers/4", modRevision: 42)
        #expect(recorded.brokerEpoch == 42)
        #expect(recorded.fenced && recorded.incarnationID == broker.incarnationID && recorded.rack == "rack-4")
        // Fencing rewrites the value later: the epoch it carries is kept.
        var unfenced = recorded
        unfenced.fenced = false
        let rewritten = try ImageCodec.decodeBroker(ImageCodec.encode(unfenced), key: "brokers/4", modRevision: 50)
        #expect(rewritten.brokerEpoch == 42 && !rewritten.fenced)
    }

    @Test func aVersionOneValueReadsAsAnUnfencedInProcessRegistration() throws {
        let current = ImageCodec.encode(registration(4, incarnation: 9))
        // Version 1 ended after the rack: no incarnation (16 bytes), fencing (1) or epoch (8).
        let versionOne = [ImageCodec.formatVersion] + current.dropFirst().dropLast(25)
        let recorded = try ImageCodec.decodeBroker(Array(versionOne), key: "brokers/4", modRevision: 7)
        #expect(recorded.isInProcess && !recorded.fenced && recorded.brokerEpoch == 7 && recorded.rack == "rack-4")
    }
}
