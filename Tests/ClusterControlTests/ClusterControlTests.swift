import ClusterControl
import Foundation
import KafkaWire
import Logging
import MetadataStore
import Synchronization
import Testing

@Suite struct ClusterImageTests {
    static let id = KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 2)

    @Test func aTopicIsPlacedOnTheLiveBrokersAsKafkaPlacesIt() throws {
        let image = ClusterImage(clusterID: "c")
        let topic = try image.creatingTopic("t", id: Self.id, partitions: 4, replicationFactor: 2, live: [3, 1, 2])
        // After a round of three partitions the followers shift by one more broker: [1, 3], not [1, 2] again.
        #expect(topic.partitions.map(\.replicas) == [[1, 2], [2, 3], [3, 1], [1, 3]])
        #expect(topic.partitions.allSatisfy { $0.isr == $0.replicas && $0.leader == $0.replicas.first })
        #expect(topic.partitions.allSatisfy { $0.leaderEpoch == 0 && $0.partitionEpoch == 0 })
    }

    @Test func preferredLeadersAndReplicasSpreadEvenly() throws {
        let image = ClusterImage(clusterID: "c")
        let topic = try image.creatingTopic("t", id: Self.id, partitions: 12, replicationFactor: 3, live: [1, 2, 3])
        let leaders = Dictionary(grouping: topic.partitions.compactMap(\.leader), by: { $0 }).mapValues(\.count)
        #expect(leaders == [1: 4, 2: 4, 3: 4])
        #expect(topic.partitions.allSatisfy { Set($0.replicas) == [1, 2, 3] })
        // Added partitions continue the same placement.
        var grown = image
        grown.topics["t"] = try image.creatingTopic(
            "t", id: Self.id, partitions: 4, replicationFactor: 2, live: [1, 2, 3])
        let added = try grown.addingPartitions(to: "t", count: 12, assignment: nil, live: [1, 2, 3])
        let whole = try image.creatingTopic("t", id: Self.id, partitions: 12, replicationFactor: 2, live: [1, 2, 3])
        #expect(added.partitions.map(\.replicas) == whole.partitions.map(\.replicas))
    }

    @Test func replicasGoToDistinctRacksFirst() throws {
        var image = ClusterImage(clusterID: "c")
        let racks: [Int32: String] = [1: "a", 2: "a", 3: "b", 4: "b", 5: "c", 6: "c"]
        for (id, rack) in racks { image.brokers[id] = BrokerRegistration(nodeID: id, endpoints: [], rack: rack) }
        let live = Set(racks.keys)
        let three = try image.creatingTopic("t", id: Self.id, partitions: 12, replicationFactor: 3, live: live)
        #expect(three.partitions.allSatisfy { Set($0.replicas.map { racks[$0]! }) == ["a", "b", "c"] })
        let leaders = Dictionary(grouping: three.partitions.compactMap(\.leader), by: { $0 }).mapValues(\.count)
        #expect(leaders == [1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2])
        // Brokers alternate between racks: a's first, b's first, c's first, then each rack's second.
        #expect(three.partitions.prefix(6).compactMap(\.leader) == [1, 3, 5, 2, 4, 6])
        // Four replicas on three racks: every rack, and one rack twice on distinct brokers.
        let four = try image.creatingTopic("u", id: Self.id, partitions: 6, replicationFactor: 4, live: live)
        #expect(four.partitions.allSatisfy { Set($0.replicas).count == 4 })
        #expect(four.partitions.allSatisfy { Set($0.replicas.map { racks[$0]! }).count == 3 })
        // A broker without a rack: racks are ignored, as placement must still succeed.
        image.brokers[7] = BrokerRegistration(nodeID: 7, endpoints: [])
        let mixed = try image.creatingTopic(
            "v", id: Self.id, partitions: 7, replicationFactor: 3, live: live.union([7]))
        #expect(mixed.partitions.allSatisfy { Set($0.replicas).count == 3 })
    }

    @Test func refusalsCarryKafkasErrorCodes() throws {
        var image = ClusterImage(clusterID: "c")
        #expect(throws: ClusterControlError.invalidReplicationFactor(2, liveBrokers: 1)) {
            try image.creatingTopic("t", id: Self.id, partitions: 1, replicationFactor: 2, live: [1])
        }
        #expect(
            ClusterControlError.invalidReplicationFactor(2, liveBrokers: 1).kafkaErrorCode == .invalidReplicationFactor
        )
        image.topics["t"] = try image.creatingTopic("t", id: Self.id, partitions: 1, replicationFactor: 1, live: [1])
        #expect(throws: ClusterControlError.topicAlreadyExists("t")) {
            try image.creatingTopic("t", id: Self.id, partitions: 1, replicationFactor: 1, live: [1])
        }
        #expect(throws: ClusterControlError.invalidPartitions(0)) {
            try image.creatingTopic("u", id: Self.id, partitions: 0, replicationFactor: 1, live: [1])
        }
    }

    @Test(arguments: ["", ".", "..", "a b", "tópico", "a/b", String(repeating: "x", count: 250)])
    func invalidTopicNames(name: String) {
        #expect {
            try TopicName.validate(name)
        } throws: { error in
            (error as? ClusterControlError)?.kafkaErrorCode == .invalidTopicException
        }
    }

    @Test(arguments: ["a", "A.b_c-9", "...", String(repeating: "x", count: 249)])
    func validTopicNames(name: String) throws {
        try TopicName.validate(name)
    }

    @Test func everyElectionBumpsTheEpochsEvenForTheSameLeader() {
        let state = PartitionState(replicas: [1], isr: [1], leader: 1, leaderEpoch: 4, partitionEpoch: 7)
        let again = state.electingLeader(live: [1])
        #expect(again.leader == 1 && again.leaderEpoch == 5 && again.partitionEpoch == 8)
        let none = state.electingLeader(live: [])
        #expect(none.leader == nil && none.isr == [1] && none.leaderEpoch == 5)
        let other = PartitionState(replicas: [1, 2], isr: [1, 2], leader: 1, leaderEpoch: 0, partitionEpoch: 0)
            .electingLeader(live: [2])
        #expect(other.leader == 2 && other.isr == [2] && other.leaderEpoch == 1)
        #expect(other.offlineReplicas(live: [2]) == [1])
    }

    @Test func reelectionTouchesOnlyThePartitionsOfTheBroker() throws {
        var image = ClusterImage(clusterID: "c")
        image.topics["a"] = try image.creatingTopic(
            "a",
            id: Self.id,
            partitions: 2,
            replicationFactor: 1,
            live: [1, 2]
        )
        let next = image.reelecting(after: 2, live: [1, 2])
        #expect(next.count == 1)
        #expect(next[0].partitions.map(\.leaderEpoch) == [0, 1])
    }
}

/// A fresh directory for one test's store file.
func temporaryStorePath() throws -> (directory: String, path: String) {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("cluster-control-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    return (directory, directory + "/metadata")
}

let registration = BrokerRegistration(
    nodeID: 1,
    endpoints: [BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: 9092)]
)

@Suite struct ControllerTests {
    let logger = Logger(label: "test")

    @Test func aRestartKeepsTopicIdsAndGrowsLeaderEpochs() async throws {
        let (directory, path) = try temporaryStorePath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = Controller(store: try LocalMetadataStore(path: path), nodeID: 1, logger: self.logger)
        let started = try await first.start(registration: registration)
        #expect(started.brokers[1]?.endpoints == registration.endpoints && started.brokers[1]?.fenced == false)
        #expect(!started.clusterID.isEmpty)
        let topic = try await first.createTopic("orders", partitions: 3, replicationFactor: 1)
        #expect(topic.partitions.map(\.leaderEpoch) == [0, 0, 0])
        #expect(topic.id != .zero)

        var previous = topic
        for restart in 1...3 {
            let controller = Controller(store: try LocalMetadataStore(path: path), nodeID: 1, logger: self.logger)
            let image = try await controller.start(registration: registration)
            #expect(image.clusterID == started.clusterID)
            let reloaded = try #require(image.topics["orders"])
            #expect(reloaded.id == topic.id)
            #expect(reloaded.partitions.map(\.leaderEpoch) == [Int32](repeating: Int32(restart), count: 3))
            #expect(zip(reloaded.partitions, previous.partitions).allSatisfy { $0.leaderEpoch > $1.leaderEpoch })
            #expect(reloaded.partitions.allSatisfy { $0.leader == 1 })
            previous = reloaded
        }
    }

    @Test func concurrentCreatesOfOneTopicGiveOneTopic() async throws {
        let (directory, path) = try temporaryStorePath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try LocalMetadataStore(path: path)
        let first = Controller(store: store, nodeID: 1, logger: self.logger)
        try await first.start(registration: registration)
        // A second controller on the same store stands by: the first holds the election key, so only it writes.
        let second = Controller(store: store, nodeID: 1, logger: self.logger)
        try await second.start(registration: registration)
        let ids = try await withThrowingTaskGroup(of: KafkaUUID?.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    do {
                        return try await first.createTopic("t", partitions: 2, replicationFactor: 1).id
                    } catch let error as ClusterControlError where error == .topicAlreadyExists("t") {
                        return nil
                    }
                }
            }
            return try await group.reduce(into: [KafkaUUID]()) { if let id = $1 { $0.append(id) } }
        }
        #expect(ids.count == 1)
        await #expect(throws: ClusterControlError.notController(activeNodeID: 1)) {
            try await second.createTopic("t", partitions: 2, replicationFactor: 1)
        }
        #expect(try await first.image().topics["t"]?.id == ids.first)
        let revision = try await store.revision()
        await second.follower.waitUntilApplied(revision)
        #expect(try await second.image().topics["t"]?.id == ids.first)
        #expect(try await store.range(prefix: "topics/").entries.count == 1)
        await first.stop()
        await second.stop()
    }

    @Test func listenersLearnOfLeadershipsWithTheirEpochs() async throws {
        let (directory, path) = try temporaryStorePath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let seen = Mutex<[PartitionLeadership]>([])
        do {
            let controller = Controller(store: try LocalMetadataStore(path: path), nodeID: 1, logger: self.logger)
            await controller.addListener { change in
                if case .leadership(let leadership) = change { seen.withLock { $0.append(leadership) } }
            }
            try await controller.start(registration: registration)
            let topic = try await controller.createTopic("t", partitions: 2, replicationFactor: 1)
            #expect(seen.withLock { $0 }.map(\.partition) == [0, 1])
            #expect(
                seen.withLock { $0 }.allSatisfy { $0.topicID == topic.id && $0.leaderEpoch == 0 && $0.topic == "t" }
            )
        }
        seen.withLock { $0 = [] }
        let restarted = Controller(store: try LocalMetadataStore(path: path), nodeID: 1, logger: self.logger)
        try await restarted.start(registration: registration)
        await restarted.addListener { change in
            if case .leadership(let leadership) = change { seen.withLock { $0.append(leadership) } }
        }
        #expect(seen.withLock { $0 }.map(\.leaderEpoch) == [1, 1])
    }

    @Test func aBatchListenerHearsEachCommitAndTheStartsReelectionsAsOneList() async throws {
        let (directory, path) = try temporaryStorePath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let batches = Mutex<[[MetadataChange]]>([])
        do {
            let controller = Controller(store: try LocalMetadataStore(path: path), nodeID: 1, logger: self.logger)
            try await controller.start(registration: registration)
            await controller.addListener(batches: { changes in batches.withLock { $0.append(changes) } })
            _ = try await controller.createTopic("a", partitions: 3, replicationFactor: 1)
            _ = try await controller.createTopic("b", partitions: 2, replicationFactor: 1)
            // One list per commit: the topic's configs, then its partitions in order.
            let lists = batches.withLock { $0 }
            #expect(lists.count == 2)
            #expect(lists.first?.first == .topicConfigs(topic: "a", configs: [:]))
            #expect(lists.map { $0.filter { if case .leadership = $0 { true } else { false } }.count } == [3, 2])
        }
        batches.withLock { $0 = [] }
        // A restart re-elects every partition in one commit, heard as one list, every epoch one more.
        let restarted = Controller(store: try LocalMetadataStore(path: path), nodeID: 1, logger: self.logger)
        await restarted.addListener(batches: { changes in batches.withLock { $0.append(changes) } })
        try await restarted.start(registration: registration)
        let lists = batches.withLock { $0 }
        #expect(lists.count == 1)
        let epochs = lists.first?.compactMap { change -> Int32? in
            if case .leadership(let leadership) = change { leadership.leaderEpoch } else { nil }
        }
        #expect(epochs == [1, 1, 1, 1, 1])
    }

    @Test func aReplicationFactorAboveTheBrokerCountIsRefused() async throws {
        let (directory, path) = try temporaryStorePath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let controller = Controller(store: try LocalMetadataStore(path: path), nodeID: 1, logger: self.logger)
        await #expect(throws: ClusterControlError.notStarted) {
            try await controller.createTopic("t", partitions: 1, replicationFactor: 1)
        }
        try await controller.start(registration: registration)
        await #expect(throws: ClusterControlError.invalidReplicationFactor(3, liveBrokers: 1)) {
            try await controller.createTopic("t", partitions: 1, replicationFactor: 3)
        }
        await #expect(throws: ClusterControlError.self) {
            try await controller.createTopic("bad name", partitions: 1, replicationFactor: 1)
        }
        #expect(try await controller.image().topics.isEmpty)
    }

    /// A started controller on a fresh store, and a function that removes the store.
    func started() async throws -> (Controller, LocalMetadataStore, () -> Void) {
        let (directory, path) = try temporaryStorePath()
        let store = try LocalMetadataStore(path: path)
        let controller = Controller(store: store, nodeID: 1, logger: self.logger)
        try await controller.start(registration: registration)
        return (controller, store, { try? FileManager.default.removeItem(atPath: directory) })
    }

    @Test func aDeletedTopicsNameCanBeCreatedAgainAtOnceWithANewID() async throws {
        let (controller, store, cleanup) = try await self.started()
        defer { cleanup() }
        let changes = Mutex<[MetadataChange]>([])
        await controller.addListener { change in changes.withLock { $0.append(change) } }
        let first = try await controller.createTopic("t", partitions: 2, replicationFactor: 1, configs: ["a": "1"])
        #expect(try await controller.deleteTopic(named: "t") == first)
        let second = try await controller.createTopic("t", partitions: 3, replicationFactor: 1)
        #expect(second.id != first.id && second.partitions.count == 3 && second.configs.isEmpty)
        let seen = changes.withLock { $0 }
        // Configs before leaderships, the deletion heard before the new topic.
        #expect(seen.first == .topicConfigs(topic: "t", configs: ["a": "1"]))
        #expect(seen[3] == .topicDeleted(first))
        #expect(seen[4] == .topicConfigs(topic: "t", configs: [:]))
        #expect(seen.count == 8)
        await #expect(throws: ClusterControlError.unknownTopic("t2")) { try await controller.deleteTopic(named: "t2") }
        #expect(try await controller.deleteTopic(named: nil, id: second.id).name == "t")
        await #expect(throws: ClusterControlError.unknownTopicID(second.id)) {
            try await controller.deleteTopic(named: nil, id: second.id)
        }
        #expect(try await store.range(prefix: "topics/").entries.isEmpty)
    }

    @Test func internalTopicsCannotBeDeleted() async throws {
        let (controller, _, cleanup) = try await self.started()
        defer { cleanup() }
        try await controller.createTopic("__consumer_offsets", partitions: 1, replicationFactor: 1)
        #expect(try await controller.image().topics["__consumer_offsets"]?.isInternal == true)
        await #expect {
            try await controller.deleteTopic(named: "__consumer_offsets")
        } throws: { error in
            (error as? ClusterControlError)?.kafkaErrorCode == .invalidRequest
        }
        #expect(try await controller.image().topics["__consumer_offsets"] != nil)
    }

    @Test func namesThatCollideOnceDotsAreUnderscoresAreRefused() async throws {
        let (controller, _, cleanup) = try await self.started()
        defer { cleanup() }
        try await controller.createTopic("a.b", partitions: 1, replicationFactor: 1)
        await #expect {
            try await controller.createTopic("a_b", partitions: 1, replicationFactor: 1)
        } throws: { error in
            (error as? ClusterControlError)?.kafkaErrorCode == .invalidTopicException
                && "\(error)".contains("a.b")
        }
        await #expect(throws: ClusterControlError.topicAlreadyExists("a.b")) {
            try await controller.createTopic("a.b", partitions: 1, replicationFactor: 1)
        }
    }

    @Test func validateOnlyWritesNothing() async throws {
        let (controller, store, cleanup) = try await self.started()
        defer { cleanup() }
        let before = try await store.revision()
        let topic = try await controller.createTopic("t", partitions: 4, replicationFactor: 1, validateOnly: true)
        #expect(topic.partitions.count == 4)
        #expect(try await controller.image().topics.isEmpty)
        #expect(try await store.revision() == before)
    }

    @Test func manualAssignmentsAreChecked() async throws {
        let (controller, _, cleanup) = try await self.started()
        defer { cleanup() }
        let topic = try await controller.createTopic("t", partitions: -1, replicationFactor: -1, assignment: [[1], [1]])
        #expect(topic.partitions.map(\.replicas) == [[1], [1]])
        for bad: [[Int32]] in [[[2]], [[1, 1]], [[]], [[1], []]] {
            await #expect {
                try await controller.createTopic("u", partitions: -1, replicationFactor: -1, assignment: bad)
            } throws: { error in
                (error as? ClusterControlError)?.kafkaErrorCode == .invalidReplicaAssignment
            }
        }
    }

    @Test func partitionsOnlyGrow() async throws {
        let (controller, _, cleanup) = try await self.started()
        defer { cleanup() }
        let leaderships = Mutex<[Int32]>([])
        await controller.addListener { change in
            if case .leadership(let leadership) = change { leaderships.withLock { $0.append(leadership.partition) } }
        }
        try await controller.createTopic("t", partitions: 2, replicationFactor: 1)
        let grown = try await controller.createPartitions("t", count: 5, assignment: nil)
        #expect(grown.partitions.count == 5)
        #expect(leaderships.withLock { $0 } == [0, 1, 2, 3, 4])
        for count: Int32 in [5, 3] {
            await #expect {
                try await controller.createPartitions("t", count: count, assignment: nil)
            } throws: { error in
                (error as? ClusterControlError)?.kafkaErrorCode == .invalidPartitions
            }
        }
        await #expect(throws: ClusterControlError.unknownTopic("u")) {
            try await controller.createPartitions("u", count: 2, assignment: nil)
        }
        #expect(try await controller.createPartitions("t", count: 6, assignment: [[1]]).partitions.count == 6)
    }

    @Test func concurrentConfigChangesAreAllKeptAcrossAControllerChange() async throws {
        let (directory, path) = try temporaryStorePath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try LocalMetadataStore(path: path)
        let first = Controller(store: store, nodeID: 1, logger: self.logger)
        let second = Controller(store: store, nodeID: 1, logger: self.logger)
        try await first.start(registration: registration)
        try await first.createTopic("t", partitions: 1, replicationFactor: 1)
        try await second.start(registration: registration)
        // Each change decides on the image as the changes before it left it, so none is lost.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<100 {
                group.addTask {
                    try await first.alterTopicConfigs("t") { configs in
                        configs.merging(["key\(index)": "\(index)"]) { $1 }
                    }
                }
            }
            try await group.waitForAll()
        }
        // The first resigns; the standby wins the election and goes on from the image it followed.
        await first.stop()
        #expect(await second.activeController?.waitUntilActive(timeout: .seconds(30)) == true)
        let configs = try await second.alterTopicConfigs("t") { $0.merging(["key100": "100"]) { $1 } }
        #expect(configs.count == 101)
        await second.stop()
        let restarted = Controller(store: store, nodeID: 1, logger: self.logger)
        let image = try await restarted.start(registration: registration)
        #expect(image.topics["t"]?.configs.count == 101)
        await restarted.stop()
    }

    @Test func configsSurviveARestart() async throws {
        let (directory, path) = try temporaryStorePath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let controller = Controller(store: try LocalMetadataStore(path: path), nodeID: 1, logger: self.logger)
            try await controller.start(registration: registration)
            try await controller.createTopic("t", partitions: 1, replicationFactor: 1, configs: ["retention.ms": "5"])
            try await controller.alterBrokerConfigs("") { _ in ["log.retention.ms": "7"] }
            try await controller.alterBrokerConfigs("1") { _ in ["message.max.bytes": "9"] }
            try await controller.alterBrokerConfigs("1") { _ in [:] }
        }
        let controller = Controller(store: try LocalMetadataStore(path: path), nodeID: 1, logger: self.logger)
        let changes = Mutex<[MetadataChange]>([])
        await controller.addListener { change in changes.withLock { $0.append(change) } }
        let image = try await controller.start(registration: registration)
        #expect(image.topics["t"]?.configs == ["retention.ms": "5"])
        #expect(image.brokerConfigs == ["": ["log.retention.ms": "7"]])
        // The start replays the whole image: the broker's logs were opened before it was read.
        #expect(changes.withLock { Array($0.prefix(2)) } == [
            .brokerConfigs(resource: "", configs: ["log.retention.ms": "7"]),
            .topicConfigs(topic: "t", configs: ["retention.ms": "5"]),
        ])
    }

    @Test func preferredElectionOnOneBrokerIsNotNeeded() async throws {
        let (controller, _, cleanup) = try await self.started()
        defer { cleanup() }
        try await controller.createTopic("t", partitions: 2, replicationFactor: 1)
        let results = try await controller.electPreferredLeaders(of: "t", partitions: [0, 1, 7])
        #expect(results.map(\.partition) == [0, 1, 7])
        #expect(results.map { $0.error?.kafkaErrorCode } == [.electionNotNeeded, .electionNotNeeded, .unknownTopicOrPartition])
        #expect(try await controller.image().topics["t"]?.partitions.map(\.leaderEpoch) == [0, 0])
    }
}
