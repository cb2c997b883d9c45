import Foundation
import KafkaWire
import Logging
import MetadataStore
import Synchronization
import Testing

@testable import ClusterControl

/// One control-plane node of a test: its image follower and its controller role.
struct Node {
    let follower: ImageFollower
    let controller: ActiveController

    /// A node on `store` that has read the image and started campaigning.
    static func start(
        _ nodeID: Int32,
        on store: any MetadataStore,
        leaseTTLSeconds: Int64 = 10,
        brokerSessionTimeout: Duration = ActiveController.defaultBrokerSessionTimeout
    ) async throws -> Node {
        let logger = Logger(label: "node-\(nodeID)")
        let follower = ImageFollower(
            store: store,
            nodeID: nodeID,
            logger: logger,
            backoff: .milliseconds(10) ... .milliseconds(100)
        )
        try await follower.start()
        let controller = ActiveController(
            store: store,
            follower: follower,
            nodeID: nodeID,
            leaseTTLSeconds: leaseTTLSeconds,
            brokerSessionTimeout: brokerSessionTimeout,
            logger: logger
        )
        await controller.start(endpoint: BrokerEndpoint(listener: "CONTROLLER", host: "127.0.0.1", port: 9090 + nodeID))
        return Node(follower: follower, controller: controller)
    }

    func stop() async {
        await self.controller.stop()
        await self.follower.stop()
    }
}

/// Waits until each of `nodes` has won or lost its election; answers the active one and the others.
func elected(_ nodes: [Node]) async throws -> (active: Node, standbys: [Node]) {
    for node in nodes {
        let settled = await node.controller.waitUntil(timeout: .seconds(30)) { role in
            switch role {
            case .active, .standby: return true
            case .campaigning, .stopped: return false
            }
        }
        try #require(settled)
    }
    var active: [Node] = []
    var standbys: [Node] = []
    for node in nodes {
        if await node.controller.epoch != nil { active.append(node) } else { standbys.append(node) }
    }
    try #require(active.count == 1)
    return (active[0], standbys)
}

private func broker(_ id: Int32) -> BrokerRegistration {
    BrokerRegistration(nodeID: id, endpoints: [BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: 9092)])
}

/// Creates the cluster and registers broker 1 through `controller`, once it is active when `waiting`.
func bootstrap(_ controller: ActiveController, waiting: Bool = true) async throws {
    if waiting { try #require(await controller.waitUntilActive(timeout: .seconds(30))) }
    _ = try await controller.perform { image, _ in ControllerDecisions.creatingCluster(image, id: "test-cluster") }
    try await controller.registerBroker(broker(1))
}

private func createTopic(
    _ name: String,
    partitions: Int32 = 1,
    through controller: ActiveController
) async throws -> TopicImage {
    let id = KafkaUUID(mostSignificantBits: UInt64.random(in: 1...UInt64.max), leastSignificantBits: 1)
    return try await controller.perform { image, live throws(ClusterControlError) in
        try ControllerDecisions.creatingTopic(
            image,
            name,
            id: id,
            partitions: partitions,
            replicationFactor: 1,
            assignment: nil,
            configs: [:],
            validateOnly: false,
            live: live
        )
    }.answer
}

@Suite struct ActiveControllerTests {
    @Test(arguments: StoreKind.allCases)
    func exactlyOneOfTwoControllersIsActive(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let nodes = [try await Node.start(1, on: fixture.store), try await Node.start(2, on: fixture.store)]
            let (active, standbys) = try await elected(nodes)
            let epoch = try #require(await active.controller.epoch)
            let key = try #require(try await fixture.store.get(ImageKeys.controller))
            #expect(key.createRevision == epoch)
            #expect(key.leaseID != nil)
            let leader = ControllerLeader(
                nodeID: active.controller.nodeID,
                endpoint: BrokerEndpoint(
                    listener: "CONTROLLER",
                    host: "127.0.0.1",
                    port: 9090 + active.controller.nodeID
                ),
                epoch: epoch
            )
            #expect(await standbys[0].controller.role == .standby(leader: leader))
            // Every follower sees the same controller.
            for node in nodes {
                #expect(await node.follower.waitUntil(timeout: .seconds(30)) { $0.controller == leader })
            }
            // Only the active one writes.
            try await bootstrap(active.controller)
            await #expect(throws: ClusterControlError.notController(activeNodeID: active.controller.nodeID)) {
                try await bootstrap(standbys[0].controller, waiting: false)
            }
            for node in nodes { await node.stop() }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aStandbyTakesOverWhenTheLeaseIsRevoked(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let nodes = [try await Node.start(1, on: fixture.store), try await Node.start(2, on: fixture.store)]
            let (old, standbys) = try await elected(nodes)
            try await bootstrap(old.controller)
            let oldEpoch = try #require(await old.controller.epoch)
            let key = try #require(try await fixture.store.get(ImageKeys.controller))
            try await fixture.store.revoke(MetadataLease(id: try #require(key.leaseID), ttlSeconds: 10))
            let new = standbys[0]
            #expect(await new.controller.waitUntilActive(timeout: .seconds(30)))
            let newEpoch = try #require(await new.controller.epoch)
            #expect(newEpoch > oldEpoch)
            // The old one saw its key go, stepped down and now stands by behind the new one.
            #expect(
                await old.controller.waitUntil(timeout: .seconds(30)) {
                    $0 != .active(epoch: oldEpoch) && $0 != .campaigning
                }
            )
            #expect(await old.controller.epoch == nil)
            // The new one picks up from the image: broker 1 is there, and it writes.
            let topic = try await createTopic("after", through: new.controller)
            #expect(await new.follower.image?.topics["after"] == topic)
            #expect(await new.follower.image?.brokers[1]?.endpoints == broker(1).endpoints)
            for node in nodes { await node.stop() }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aPausedControllersLeaseLapsesAndItsLaterWritesAreRefused(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            // The first node's short lease (4 s) makes the usual case quick. Whichever node is active when both
            // have settled is paused, and then the other one's 10 s lease is waited out.
            let first = try await Node.start(1, on: fixture.store, leaseTTLSeconds: 4)
            try #require(try await elected([first]).active.controller === first.controller)
            let second = try await Node.start(2, on: fixture.store)
            let nodes = [first, second]
            let (old, standbys) = try await elected(nodes)
            let new = standbys[0]
            try await bootstrap(old.controller)
            let oldEpoch = try #require(await old.controller.epoch)
            // As SIGSTOP: no keep-alives, no watching; the lease lapses and the standby wins.
            await old.controller.pause()
            #expect(await new.controller.waitUntilActive(timeout: .seconds(30)))
            let newEpoch = try #require(await new.controller.epoch)
            #expect(newEpoch > oldEpoch)
            #expect(await old.controller.epoch == oldEpoch)  // it has not noticed yet
            try await new.controller.registerBroker(broker(1))
            let before = try await fixture.store.range(prefix: "")

            // Resumed, the old controller still believes it is active; its write's fence compare fails.
            // (The active node it names is what its follower has seen so far, so only the code is checked.)
            await #expect {
                _ = try await createTopic("late", through: old.controller)
            } throws: { error in
                (error as? ClusterControlError)?.kafkaErrorCode == .notController
            }
            #expect(await old.controller.epoch == nil)
            let after = try await fixture.store.range(prefix: "")
            #expect(after.entries.first { $0.key == ImageKeys.topic("late") } == nil)
            // Nothing was written after its epoch ended: the store is as the new controller left it.
            #expect(after == before)
            #expect(
                await old.controller.waitUntil(timeout: .seconds(30)) { role in
                    if case .standby = role { return true }
                    return false
                }
            )
            for node in nodes { await node.stop() }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aChangeOverTheOperationLimitIsSplitIntoFencedTransactions(kind: StoreKind) async throws {
        try await withStore(kind, maxOperationsPerTransaction: 4) { fixture in
            let store = SeveredStore(fixture.store)
            let node = try await Node.start(1, on: store)
            try await bootstrap(node.controller)
            for index in 0..<10 { _ = try await createTopic("t\(index)", partitions: 2, through: node.controller) }
            let epoch = try #require(await node.controller.epoch)
            _ = store.takeCommitted()

            // A restart's registration records the broker (a new broker epoch) and re-elects ten topics: eleven keys,
            // three per transaction besides the fence.
            let (topics, revision) = try await node.controller.registerBroker(broker(1))
            #expect(topics == 10)
            let transactions = store.takeCommitted()
            #expect(transactions.map(\.operations.count) == [3, 3, 3, 2])
            for transaction in transactions {
                #expect(transaction.compares.first == .createRevision(of: ImageKeys.controller, equals: epoch))
                #expect(transaction.operationCount <= 4)
            }
            // A follower that did not take part ends with the whole change.
            let observer = ImageFollower(store: fixture.store, nodeID: 1, logger: Logger(label: "observer"))
            try await observer.start()
            #expect(await observer.waitUntil(timeout: .seconds(30)) { $0.revision >= revision })
            let image = try #require(await observer.image)
            #expect(image.topics.count == 10)
            #expect(image.topics.values.allSatisfy { $0.partitions.allSatisfy { $0.leaderEpoch == 1 } })
            await observer.stop()
            await node.stop()
        }
    }
}

@Suite struct ImageFollowerTests {
    @Test(arguments: StoreKind.allCases)
    func aFollowerAppliesTransactionsInOrderAndEndsEqualToAFreshRead(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let node = try await Node.start(1, on: fixture.store)
            try await bootstrap(node.controller)
            let observer = ImageFollower(store: fixture.store, nodeID: 1, logger: Logger(label: "observer"))
            try await observer.start()
            let batches = Mutex<[[MetadataChange]]>([])
            await observer.addListener(batches: { changes in batches.withLock { $0.append(changes) } })

            let first = try await createTopic("a", partitions: 2, through: node.controller)
            _ = try await node.controller.perform { image, _ throws(ClusterControlError) in
                try ControllerDecisions.alteringTopicConfigs(image, "a", validateOnly: false) { _ in
                    ["retention.ms": "5"]
                }
            }
            _ = try await createTopic("b", through: node.controller)
            _ = try await node.controller.perform { image, _ throws(ClusterControlError) in
                try ControllerDecisions.deletingTopic(image, named: "a", id: nil)
            }
            let second = try await createTopic("a", partitions: 3, through: node.controller)
            _ = try await node.controller.perform { image, live throws(ClusterControlError) in
                try ControllerDecisions.addingPartitions(
                    image,
                    to: "b",
                    count: 2,
                    assignment: nil,
                    validateOnly: false,
                    live: live
                )
            }
            _ = try await node.controller.perform { image, _ throws(ClusterControlError) in
                try ControllerDecisions.alteringBrokerConfigs(image, "", validateOnly: false) { _ in ["x": "1"] }
            }
            _ = try await node.controller.perform { image, _ throws(ClusterControlError) in
                try ControllerDecisions.allocatingProducerIDBlock(image)
            }

            let fresh = try await fixture.store.range(prefix: "")
            #expect(await observer.waitUntil(timeout: .seconds(30)) { $0.revision >= fresh.revision })
            #expect(await observer.followed == (try FollowedImage(range: fresh)))
            #expect(await observer.waitUntilPublished(fresh.revision))
            let leadership = { (topic: TopicImage, partition: Int32) in
                MetadataChange.leadership(
                    PartitionLeadership(
                        topic: topic.name,
                        topicID: topic.id,
                        partition: partition,
                        leaderEpoch: 0,
                        isr: [1]
                    )
                )
            }
            // One batch per transaction, in revision order.
            #expect(
                batches.withLock { $0 } == [
                    [.topicConfigs(topic: "a", configs: [:]), leadership(first, 0), leadership(first, 1)],
                    [.topicConfigs(topic: "a", configs: ["retention.ms": "5"])],
                    [
                        .topicConfigs(topic: "b", configs: [:]),
                        leadership(try #require(await observer.image?.topics["b"]), 0),
                    ],
                    [
                        .topicDeleted(
                            TopicImage(
                                name: "a",
                                id: first.id,
                                partitions: first.partitions,
                                configs: ["retention.ms": "5"]
                            )
                        )
                    ],
                    [.topicConfigs(topic: "a", configs: [:])] + (0..<3).map { leadership(second, $0) },
                    [leadership(try #require(await observer.image?.topics["b"]), 1)],
                    [.brokerConfigs(resource: "", configs: ["x": "1"])],
                ]
            )
            await observer.stop()
            await node.stop()
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aFollowerCutOffWhileTheHistoryIsCompactedReloadsAndConverges(kind: StoreKind) async throws {
        try await withStore(kind) { fixture in
            let node = try await Node.start(1, on: fixture.store)
            try await bootstrap(node.controller)
            let gone = try await createTopic("gone", through: node.controller)
            let severed = SeveredStore(fixture.store)
            let follower = ImageFollower(
                store: severed,
                nodeID: 1,
                logger: Logger(label: "severed"),
                backoff: .milliseconds(10) ... .milliseconds(50)
            )
            try await follower.start()
            let batches = Mutex<[[MetadataChange]]>([])
            await follower.addListener(batches: { changes in batches.withLock { $0.append(changes) } })
            let applied = await follower.appliedRevision

            severed.sever()
            try await eventually { await follower.isStoreUnreachable }
            _ = try await node.controller.perform { image, _ throws(ClusterControlError) in
                try ControllerDecisions.deletingTopic(image, named: "gone", id: nil)
            }
            let born = try await createTopic("born", through: node.controller)
            _ = try await node.controller.perform { image, _ throws(ClusterControlError) in
                try ControllerDecisions.alteringBrokerConfigs(image, "", validateOnly: false) { _ in ["x": "1"] }
            }
            try await fixture.compact(try await fixture.store.revision())
            // Cut off, it keeps the image it had and invents nothing.
            #expect(await follower.appliedRevision == applied)
            #expect(await follower.image?.topics["gone"] == gone)

            severed.restore()
            let fresh = try await fixture.store.range(prefix: "")
            #expect(await follower.waitUntil(timeout: .seconds(30)) { $0.revision >= fresh.revision })
            #expect(await follower.followed == (try FollowedImage(range: fresh)))
            #expect(await follower.waitUntilPublished(fresh.revision))
            #expect(await follower.isStoreUnreachable == false)
            // The reload is heard as the difference: the deletion first, then the broker config, then the new topic.
            let last = try #require(batches.withLock { $0 }.last)
            #expect(
                last == [
                    .topicDeleted(gone),
                    .brokerConfigs(resource: "", configs: ["x": "1"]),
                    .topicConfigs(topic: "born", configs: [:]),
                    .leadership(
                        PartitionLeadership(topic: "born", topicID: born.id, partition: 0, leaderEpoch: 0, isr: [1])
                    ),
                ]
            )
            await follower.stop()
            await node.stop()
        }
    }

    @Test func heldChangesAreHeardAsTheWholeImageOnRelease() async throws {
        try await withStore(.local) { fixture in
            let node = try await Node.start(1, on: fixture.store)
            try await bootstrap(node.controller)
            let topic = try await createTopic("t", through: node.controller)
            let follower = ImageFollower(store: fixture.store, nodeID: 1, logger: Logger(label: "held"))
            let batches = Mutex<[[MetadataChange]]>([])
            await follower.addListener(batches: { changes in batches.withLock { $0.append(changes) } })
            try await follower.start(holdingChanges: true)
            // Re-elected while held: only the final epoch is heard, once.
            try await node.controller.registerBroker(broker(1))
            #expect(
                await follower.waitUntil(timeout: .seconds(30)) { $0.image.topics["t"]?.partitions[0].leaderEpoch == 1 }
            )
            #expect(batches.withLock { $0 }.isEmpty)
            await follower.releaseChanges()
            #expect(
                batches.withLock { $0 } == [
                    [
                        .topicConfigs(topic: "t", configs: [:]),
                        .leadership(
                            PartitionLeadership(topic: "t", topicID: topic.id, partition: 0, leaderEpoch: 1, isr: [1])
                        ),
                    ]
                ]
            )
            await follower.stop()
            await node.stop()
        }
    }
}

@Suite struct ControllerDecisionTests {
    @Test func aDecisionWritesOnlyTheKeysItChangesInAnOrderValidAtEveryPrefix() throws {
        var image = ClusterImage(clusterID: "")
        let created = ControllerDecisions.creatingCluster(image, id: "c")
        #expect(created.writes == [ImageWrite(key: ImageKeys.clusterID, value: Array("c".utf8))])
        image.clusterID = "c"
        #expect(ControllerDecisions.creatingCluster(image, id: "other").writes.isEmpty)

        image.brokers[1] = broker(1)
        let topic = try ControllerDecisions.creatingTopic(
            image,
            "t",
            id: KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 1),
            partitions: 2,
            replicationFactor: 1,
            assignment: nil,
            configs: [:],
            validateOnly: false,
            live: [1]
        )
        #expect(topic.writes.map(\.key) == [ImageKeys.topic("t")])
        image.topics["t"] = topic.answer
        image.topics["u"] = TopicImage(
            name: "u",
            id: KafkaUUID(mostSignificantBits: 2, leastSignificantBits: 2),
            partitions: topic.answer.partitions
        )
        // A new broker that replicates nothing writes its key only; a restarted one re-elects its topics, one key
        // per topic, by name (its registration is unchanged).
        let registered = ControllerDecisions.registeringBroker(image, broker(2), live: [1, 2])
        #expect(registered.writes.map(\.key) == [ImageKeys.broker(2)])
        let reelected = ControllerDecisions.registeringBroker(image, broker(1), live: [1])
        #expect(reelected.writes.map(\.key) == [ImageKeys.topic("t"), ImageKeys.topic("u")])
        #expect(reelected.answer == 2)
        // Checks that write nothing answer at once.
        let validated = try ControllerDecisions.creatingTopic(
            image,
            "v",
            id: KafkaUUID(mostSignificantBits: 3, leastSignificantBits: 3),
            partitions: 1,
            replicationFactor: 1,
            assignment: nil,
            configs: [:],
            validateOnly: true,
            live: [1]
        )
        #expect(validated.writes.isEmpty && validated.answer.name == "v")
        let deleted = try ControllerDecisions.deletingTopic(image, named: "u", id: nil)
        #expect(deleted.writes == [ImageWrite(key: ImageKeys.topic("u"), value: nil)])
    }
}
