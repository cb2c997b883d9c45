import KafkaWire
import Logging
import MetadataStore
import Testing

@testable import ClusterControl

/// A broker process's registration of node `nodeID`, with the incarnation id of that process.
func processRegistration(_ nodeID: Int32, incarnation: UInt64) -> BrokerRegistration {
    BrokerRegistration(
        nodeID: nodeID,
        endpoints: [BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: 9092 + nodeID)],
        incarnationID: KafkaUUID(mostSignificantBits: incarnation, leastSignificantBits: 1)
    )
}

extension ActiveController {
    /// Registers a broker process for node `nodeID` and heartbeats until it is unfenced; answers its broker epoch.
    func registerUnfenced(_ nodeID: Int32, incarnation: UInt64) async throws -> Int64 {
        let epoch = try await self.register(processRegistration(nodeID, incarnation: incarnation))
        let answer = try await self.heartbeat(
            BrokerHeartbeat(
                nodeID: nodeID,
                brokerEpoch: epoch,
                appliedRevision: epoch,
                wantFence: false,
                wantShutDown: false
            )
        )
        try #require(!answer.isFenced)
        return epoch
    }

    /// Creates `name` with one partition per entry of `assignment`.
    @discardableResult
    func createTopic(_ name: String, assignment: [[Int32]]) async throws -> TopicImage {
        let id = KafkaUUID(mostSignificantBits: UInt64.random(in: 1...UInt64.max), leastSignificantBits: 1)
        return try await self.perform { image, live throws(ClusterControlError) in
            try ControllerDecisions.creatingTopic(
                image,
                name,
                id: id,
                partitions: Int32(assignment.count),
                replicationFactor: Int16(assignment[0].count),
                assignment: assignment,
                configs: [:],
                validateOnly: false,
                live: live
            )
        }.answer
    }
}

/// Leader elections when brokers are fenced and unfenced, through the active controller on the local store and on a
/// real etcd: what it commits is what a follower of the store sees.
@Suite struct FailoverTests {
    @Test(arguments: StoreKind.allCases)
    func aFencedBrokersThousandLeadershipsMoveInOnePassCommittedInFewFencedTransactions(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let store = SeveredStore(fixture.store)
            // Sessions outlast the set-up: only the closed connection fences here.
            let node = try await Node.start(1, on: store, brokerSessionTimeout: .seconds(3600))
            try await bootstrap(node.controller)
            let epoch2 = try await node.controller.registerUnfenced(2, incarnation: 20)
            _ = try await node.controller.registerUnfenced(3, incarnation: 30)
            // 1,000 partitions led by broker 2, in 200 topics (200 keys: more than one etcd transaction holds).
            for index in 0..<200 {
                try await node.controller.createTopic("t\(index)", assignment: Array(repeating: [2, 3, 1], count: 5))
            }
            let epoch = try #require(await node.controller.epoch)
            _ = store.takeCommitted()

            let decided = ContinuousClock.now
            let decision = ControllerDecisions.fencingBroker(
                await node.follower.followed.image,
                2,
                brokerEpoch: epoch2,
                fenced: true
            )
            print(
                "The pass over 1,000 partitions alone (\(decision.writes.count) keys): \(ContinuousClock.now - decided)"
            )
            let started = ContinuousClock.now
            await node.controller.heartbeatConnectionClosed(nodeID: 2, brokerEpoch: epoch2)
            let elapsed = ContinuousClock.now - started
            print(
                "Fencing a broker that led 1,000 partitions in 200 topics (\(kind)): decided and committed in \(elapsed)"
            )

            // The registration and 200 topics: 201 keys, 127 per transaction besides the fence (etcd's 128).
            let transactions = store.takeCommitted()
            #expect(transactions.map(\.operations.count) == [127, 74])
            for transaction in transactions {
                #expect(transaction.compares.first == .createRevision(of: ImageKeys.controller, equals: epoch))
            }
            let observer = ImageFollower(store: fixture.store, nodeID: 9, logger: Logger(label: "observer"))
            try await observer.start()
            let revision = await node.follower.followed.revision
            #expect(await observer.waitUntil(timeout: .seconds(30)) { $0.revision >= revision })
            let image = try #require(await observer.image)
            #expect(image.brokers[2]?.fenced == true)
            let partitions = image.topics.values.flatMap(\.partitions)
            #expect(partitions.count == 1000)
            #expect(
                partitions.allSatisfy {
                    $0
                        == PartitionState(
                            replicas: [2, 3, 1],
                            isr: [3, 1],
                            leader: 3,
                            leaderEpoch: 1,
                            partitionEpoch: 1
                        )
                }
            )
            await observer.stop()

            // Its next process registers and is unfenced: the partitions 3 leads keep their leader and epochs.
            _ = try await node.controller.registerUnfenced(2, incarnation: 21)
            let after = await node.follower.followed.image
            #expect(after.topics.values.flatMap(\.partitions).allSatisfy { $0.leader == 3 && $0.leaderEpoch == 1 })
            await node.stop()
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aPartitionWhoseLastISRMemberIsFencedIsOfflineUntilThatBrokerIsUnfencedAgain(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let node = try await Node.start(1, on: fixture.store, brokerSessionTimeout: .seconds(3600))
            try await bootstrap(node.controller)
            let epoch2 = try await node.controller.registerUnfenced(2, incarnation: 20)
            try await node.controller.createTopic("solo", assignment: [[2]])
            try await node.controller.createTopic("pair", assignment: [[2, 1]])

            // Broker 2 asks to be fenced.
            let fenced = try await node.controller.heartbeat(
                BrokerHeartbeat(
                    nodeID: 2,
                    brokerEpoch: epoch2,
                    appliedRevision: epoch2,
                    wantFence: true,
                    wantShutDown: false
                )
            )
            #expect(fenced.isFenced)
            var image = await node.follower.followed.image
            #expect(
                image.topics["solo"]?.partitions[0]
                    == PartitionState(replicas: [2], isr: [2], leader: nil, leaderEpoch: 1, partitionEpoch: 1)
            )
            #expect(
                image.topics["pair"]?.partitions[0]
                    == PartitionState(replicas: [2, 1], isr: [1], leader: 1, leaderEpoch: 1, partitionEpoch: 1)
            )

            // Its restart registers fenced (the partition stays offline), and its unfencing elects it.
            let restarted = try await node.controller.register(processRegistration(2, incarnation: 21))
            #expect(await node.follower.followed.image.topics["solo"]?.partitions[0].leader == nil)
            _ = try await node.controller.heartbeat(
                BrokerHeartbeat(
                    nodeID: 2,
                    brokerEpoch: restarted,
                    appliedRevision: restarted,
                    wantFence: false,
                    wantShutDown: false
                )
            )
            image = await node.follower.followed.image
            #expect(
                image.topics["solo"]?.partitions[0]
                    == PartitionState(replicas: [2], isr: [2], leader: 2, leaderEpoch: 2, partitionEpoch: 2)
            )
            // Out of the ISR, it leads nothing until its leader lets it back in.
            #expect(image.topics["pair"]?.partitions[0].leader == 1)
            await node.stop()
        }
    }

    @Test func aSilentLeadersPartitionsMoveOnceItsSessionLapses() async throws {
        try await withStore(.local) { fixture in
            let node = try await Node.start(1, on: fixture.store, brokerSessionTimeout: .seconds(1))
            try await bootstrap(node.controller)
            _ = try await node.controller.registerUnfenced(2, incarnation: 20)
            try await node.controller.createTopic("t", assignment: [[2, 1], [1, 2]])
            let moved = await node.follower.waitUntil(timeout: .seconds(60)) {
                $0.image.topics["t"]?.partitions[0].leader == 1
            }
            #expect(moved)
            let partitions = try #require(await node.follower.followed.image.topics["t"]?.partitions)
            #expect(
                partitions[0]
                    == PartitionState(replicas: [2, 1], isr: [1], leader: 1, leaderEpoch: 1, partitionEpoch: 1)
            )
            #expect(
                partitions[1]
                    == PartitionState(replicas: [1, 2], isr: [1], leader: 1, leaderEpoch: 0, partitionEpoch: 1)
            )
            await node.stop()
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aControlledShutdownMovesTheLeadershipsAwayBeforeTheBrokerMayStop(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let node = try await Node.start(1, on: fixture.store, brokerSessionTimeout: .seconds(3600))
            try await bootstrap(node.controller)
            let epoch2 = try await node.controller.registerUnfenced(2, incarnation: 20)
            _ = try await node.controller.registerUnfenced(3, incarnation: 30)
            try await node.controller.createTopic("t", assignment: [[2, 3, 1], [1, 2, 3]])
            try await node.controller.createTopic("solo", assignment: [[2]])
            let applied = await node.follower.followed.revision
            func stopping(applied: Int64) async throws -> BrokerHeartbeatAnswer {
                try await node.controller.heartbeat(
                    BrokerHeartbeat(
                        nodeID: 2,
                        brokerEpoch: epoch2,
                        appliedRevision: applied,
                        wantFence: false,
                        wantShutDown: true
                    )
                )
            }

            // The first request moves its leaderships; it may not stop before it has applied that move.
            let first = try await stopping(applied: applied)
            #expect(first.isFenced && !first.shouldShutDown)
            let image = await node.follower.followed.image
            let partitions = try #require(image.topics["t"]?.partitions)
            #expect(
                partitions[0]
                    == PartitionState(replicas: [2, 3, 1], isr: [3, 1], leader: 3, leaderEpoch: 1, partitionEpoch: 1)
            )
            #expect(
                partitions[1]
                    == PartitionState(replicas: [1, 2, 3], isr: [1, 3], leader: 1, leaderEpoch: 0, partitionEpoch: 1)
            )
            // Its only replica: offline, with it as the last ISR member.
            #expect(
                image.topics["solo"]?.partitions[0]
                    == PartitionState(replicas: [2], isr: [2], leader: nil, leaderEpoch: 1, partitionEpoch: 1)
            )
            // Still registered, its session alive: another process with its node id is refused meanwhile.
            #expect(image.brokers[2]?.brokerEpoch == epoch2)
            #expect(await node.controller.brokerSessions()[2]?.wantsShutDown == true)
            await #expect(throws: ClusterControlError.duplicateBrokerRegistration(2)) {
                try await node.controller.register(processRegistration(2, incarnation: 21))
            }

            let caughtUp = try await stopping(applied: image.revision)
            #expect(caughtUp.isFenced && caughtUp.shouldShutDown)
            #expect(await node.follower.followed.image == image, "nothing more to move")

            // The stopped process's closed connection ends its session: its next process may register.
            await node.controller.heartbeatConnectionClosed(nodeID: 2, brokerEpoch: epoch2)
            _ = try await node.controller.register(processRegistration(2, incarnation: 21))
            await node.stop()
        }
    }
}
