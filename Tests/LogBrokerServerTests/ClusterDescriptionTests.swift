import ClusterControl
import Foundation
import KafkaMessages
import KafkaNIO
import KafkaRecords
import KafkaWire
import LogStorage
import Logging
import MetadataStore
import NIOCore
import Replication
import Testing

@testable import LogBrokerServer

/// What clients see of a cluster of three nodes following one metadata store (node 1 the active controller, node 2
/// a standby controller, node 3 a broker only), each serving Metadata, DescribeCluster, DescribeQuorum and the data
/// path on a real socket as `Broker` assembles them: every broker lists the unfenced brokers with their racks and
/// the active controller, partitions with their replicas and offline replicas from one image; a partition another
/// broker leads answers NOT_LEADER_OR_FOLLOWER; DescribeQuorum is answered by the active controller only.
@Suite struct ClusterDescriptionTests {
    /// One node of the test cluster.
    struct Node: Sendable {
        let nodeID: Int32
        let controller: Controller
        let storage: BrokerStorage
        let port: Int
    }

    /// The nodes, and their broker epochs (each registered over the active controller's API).
    struct Cluster: Sendable {
        let nodes: [Node]
        let brokerEpochs: [Int32: Int64]

        var active: ActiveController { self.nodes[0].controller.activeController! }

        /// Waits until every node has applied what the active controller's node has, and its replica layer has
        /// heard it.
        func converge() async {
            let revision = await self.nodes[0].controller.follower.appliedRevision
            for node in self.nodes { await node.controller.follower.waitUntilPublished(revision) }
        }
    }

    static func rack(_ nodeID: Int32) -> String { "rack-\(nodeID)" }

    static func randomIncarnation() -> KafkaUUID {
        KafkaUUID(mostSignificantBits: .random(in: 1...UInt64.max), leastSignificantBits: .random(in: 1...UInt64.max))
    }

    /// Runs `body` with the three nodes started and their brokers registered and unfenced.
    static func withCluster(_ body: @Sendable (Cluster) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let logger = Logger(label: "test")
        let store = try LocalMetadataStore(path: directory + "/metadata.lbmeta", logger: logger)
        var nodes: [(configuration: BrokerConfiguration, controller: Controller, storage: BrokerStorage)] = []
        for nodeID in Int32(1)...3 {
            let configuration = try testConfiguration([
                ("node.id", "\(nodeID)"), ("log.dirs", directory + "/logs-\(nodeID)"),
                ("broker.rack", Self.rack(nodeID)),
            ])
            let controller = Controller(
                store: store,
                nodeID: nodeID,
                logger: logger,
                isController: nodeID != 3,
                brokerSessionTimeout: .seconds(120)
            )
            let storage = try BrokerStorage(configuration: configuration, logger: logger)
            await storage.follow(controller)
            nodes.append((configuration, controller, storage))
        }
        let configurations = nodes.map(\.configuration)
        let controllers = nodes.map(\.controller)
        let storages = nodes.map(\.storage)
        defer {
            for storage in storages {
                try? storage.logManager.shutdown()
                storage.ioPool.shutdown()
            }
        }
        let tables = (0..<3).map { index in
            var table = HandlerTable()
            table.register(MetadataHandler(controller: controllers[index], configuration: configurations[index]))
            table.register(DescribeClusterHandler(controller: controllers[index], nodeID: Int32(index + 1)))
            table.register(DescribeQuorumHandler(controller: controllers[index]))
            storages[index].register(in: &table)
            return table
        }
        try await withServer(handlers: tables[0], configuration: configurations[0]) { port1 in
            try await withServer(handlers: tables[1], configuration: configurations[1]) { port2 in
                try await withServer(handlers: tables[2], configuration: configurations[2]) { port3 in
                    let ports = [port1, port2, port3]
                    func registration(_ index: Int) -> BrokerRegistration {
                        BrokerRegistration(
                            nodeID: Int32(index + 1),
                            endpoints: [
                                BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: Int32(ports[index]))
                            ],
                            rack: Self.rack(Int32(index + 1)),
                            incarnationID: Self.randomIncarnation()
                        )
                    }
                    // As in a cluster: nothing registers in-process; each broker registers with the active
                    // controller and is unfenced by a caught-up heartbeat.
                    try await controllers[0].start(registration: nil)
                    try await controllers[1].start(registration: nil)
                    try await controllers[2].start(registration: nil)
                    let active = try #require(controllers[0].activeController)
                    var epochs: [Int32: Int64] = [:]
                    for index in 0...2 {
                        let nodeID = Int32(index + 1)
                        let epoch = try await active.register(registration(index))
                        await controllers[index].follower.waitUntilApplied(epoch)
                        let answer = try await active.heartbeat(
                            BrokerHeartbeat(
                                nodeID: nodeID,
                                brokerEpoch: epoch,
                                appliedRevision: await controllers[index].follower.appliedRevision,
                                wantFence: false,
                                wantShutDown: false
                            )
                        )
                        #expect(!answer.isFenced)
                        epochs[nodeID] = epoch
                    }
                    let cluster = Cluster(
                        nodes: (0..<3).map {
                            Node(
                                nodeID: Int32($0 + 1),
                                controller: controllers[$0],
                                storage: storages[$0],
                                port: ports[$0]
                            )
                        },
                        brokerEpochs: epochs
                    )
                    await cluster.converge()
                    do {
                        try await body(cluster)
                    } catch {
                        for controller in controllers { await controller.stop() }
                        throw error
                    }
                    for controller in controllers { await controller.stop() }
                }
            }
        }
    }

    static func send<Request: KafkaRequest>(
        _ request: Request,
        version: Int16,
        to node: Node
    ) async throws -> Request.Response {
        try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: node.port) { connection in
            try await connection.send(request, version: version)
        }
    }

    @Test func everyBrokerListsTheUnfencedBrokersTheControllerAndTheReplicasFromOneImage() async throws {
        try await Self.withCluster { cluster in
            let controller = cluster.nodes[0].controller
            try await controller.createTopic("spread", partitions: 12, replicationFactor: 3)
            await cluster.converge()
            var answers: [MetadataResponse] = []
            for node in cluster.nodes {
                let response = try await Self.send(MetadataRequest(topics: nil), version: 12, to: node)
                #expect(
                    response.brokers
                        == cluster.nodes.map {
                            .init(
                                nodeID: $0.nodeID,
                                host: "127.0.0.1",
                                port: Int32($0.port),
                                rack: Self.rack($0.nodeID)
                            )
                        }
                )
                #expect(response.controllerID == 1)
                #expect(response.clusterID == (try await controller.image().clusterID))
                answers.append(response)
            }
            #expect(answers.allSatisfy { $0 == answers[0] }, "every broker at one revision answers alike")
            let spread = try #require(answers[0].topics.first { $0.name == "spread" })
            #expect(spread.partitions.count == 12)
            for partition in spread.partitions {
                #expect(partition.replicaNodes.count == 3 && Set(partition.replicaNodes) == [1, 2, 3])
                #expect(partition.leaderID == partition.replicaNodes[0])
                #expect(partition.isrNodes == partition.replicaNodes)
                #expect(partition.offlineReplicas.isEmpty)
            }
            let leaders = Dictionary(grouping: spread.partitions, by: \.leaderID).mapValues(\.count)
            #expect(leaders == [1: 4, 2: 4, 3: 4])

            // Broker 3 asks to be fenced: no broker lists it, and every replica on it is offline.
            let answer = try await cluster.active.heartbeat(
                BrokerHeartbeat(
                    nodeID: 3,
                    brokerEpoch: try #require(cluster.brokerEpochs[3]),
                    appliedRevision: await cluster.nodes[2].controller.follower.appliedRevision,
                    wantFence: true,
                    wantShutDown: false
                )
            )
            #expect(answer.isFenced)
            await cluster.converge()
            for node in cluster.nodes {
                let response = try await Self.send(MetadataRequest(topics: nil), version: 12, to: node)
                #expect(response.brokers.map(\.nodeID) == [1, 2])
                let partitions = try #require(response.topics.first { $0.name == "spread" }?.partitions)
                #expect(partitions.allSatisfy { $0.offlineReplicas == [3] })
                let described = try await Self.send(DescribeClusterRequest(), version: 1, to: node)
                #expect(described.errorCode == 0 && described.controllerID == 1)
                #expect(described.brokers.map(\.brokerID) == [1, 2])
                #expect(described.brokers.map(\.rack) == [Self.rack(1), Self.rack(2)])
            }
        }
    }

    @Test func aPartitionAnotherBrokerLeadsAnswersNotLeaderOrFollower() async throws {
        try await Self.withCluster { cluster in
            try await cluster.nodes[0].controller.createTopic(
                "placed",
                partitions: 3,
                replicationFactor: 1,
                assignment: [[1], [2], [3]]
            )
            await cluster.converge()
            let node2 = cluster.nodes[1]
            let asked: [Int32] = [0, 1, 2, 7]
            // Broker 2 leads partition 1; 0 and 2 are led elsewhere; 7 does not exist.
            let expected: [Int16] = [6, 0, 6, 3]

            var batch = RecordBatchBuilder(codec: .none)
            batch.append(
                timestamp: Int64(Date().timeIntervalSince1970 * 1000),
                key: nil,
                value: ByteBuffer(string: "x")
            )
            let records = try batch.build().buffer
            let produced = try await Self.send(
                ProduceRequest(
                    acks: -1,
                    timeoutMs: 10_000,
                    topicData: [
                        .init(name: "placed", partitionData: asked.map { .init(index: $0, records: records) }),
                        .init(name: "missing", partitionData: [.init(index: 0, records: records)]),
                    ]
                ),
                version: 9,
                to: node2
            )
            #expect(produced.responses[0].partitionResponses.map(\.errorCode) == expected)
            #expect(produced.responses[1].partitionResponses.map(\.errorCode) == [3])

            let fetched = try await Self.send(
                FetchRequest(
                    maxWaitMs: 0,
                    minBytes: 1,
                    maxBytes: 1 << 20,
                    topics: [
                        .init(
                            topic: "placed",
                            partitions: asked.map { .init(partition: $0, fetchOffset: 0, partitionMaxBytes: 1 << 16) }
                        )
                    ]
                ),
                version: 12,
                to: node2
            )
            #expect(fetched.responses.flatMap(\.partitions).map(\.errorCode) == expected)

            let listed = try await Self.send(
                ListOffsetsRequest(
                    replicaID: -1,
                    topics: [.init(name: "placed", partitions: asked.map { .init(partitionIndex: $0, timestamp: -1) })]
                ),
                version: 7,
                to: node2
            )
            #expect(listed.topics.flatMap(\.partitions).map(\.errorCode) == expected)

            let epochs = try await Self.send(
                OffsetForLeaderEpochRequest(
                    replicaID: -1,
                    topics: [
                        .init(
                            topic: "placed",
                            partitions: asked.map { .init(partition: $0, currentLeaderEpoch: -1, leaderEpoch: 0) }
                        )
                    ]
                ),
                version: 4,
                to: node2
            )
            #expect(epochs.topics.flatMap(\.partitions).map(\.errorCode) == expected)
        }
    }

    @Test func aBrokerThatLostTheLeadershipStopsServingThePartition() async throws {
        try await Self.withCluster { cluster in
            try await cluster.nodes[0].controller.createTopic(
                "moving",
                partitions: 1,
                replicationFactor: 2,
                assignment: [[2, 1]]
            )
            await cluster.converge()
            let (node1, node2) = (cluster.nodes[0], cluster.nodes[1])
            let request = ListOffsetsRequest(
                replicaID: -1,
                topics: [.init(name: "moving", partitions: [.init(partitionIndex: 0, timestamp: -1)])]
            )
            #expect(try await Self.send(request, version: 7, to: node2).topics[0].partitions[0].errorCode == 0)
            #expect(try await Self.send(request, version: 7, to: node1).topics[0].partitions[0].errorCode == 6)
            // Brokers 2 and 1 fenced (the partition moves to 1, then is offline with 1 as its last ISR member), then
            // broker 1 registers again (a restart) and is unfenced: that elects it. Broker 2 keeps its log but no
            // longer answers for it.
            for node in [node2, node1] {
                _ = try await cluster.active.heartbeat(
                    BrokerHeartbeat(
                        nodeID: node.nodeID,
                        brokerEpoch: try #require(cluster.brokerEpochs[node.nodeID]),
                        appliedRevision: await node.controller.follower.appliedRevision,
                        wantFence: true,
                        wantShutDown: false
                    )
                )
            }
            let restarted = try await cluster.active.register(
                BrokerRegistration(
                    nodeID: 1,
                    endpoints: [BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: Int32(node1.port))],
                    rack: Self.rack(1),
                    incarnationID: Self.randomIncarnation()
                )
            )
            _ = try await cluster.active.heartbeat(
                BrokerHeartbeat(nodeID: 1, brokerEpoch: restarted, appliedRevision: restarted, wantFence: false,
                                wantShutDown: false)
            )
            await cluster.converge()
            #expect(try await node1.controller.image().topics["moving"]?.partitions[0].leader == 1)
            #expect(node2.storage.replicas.partition(TopicPartition("moving", 0)) != nil)
            #expect(try await Self.send(request, version: 7, to: node2).topics[0].partitions[0].errorCode == 6)
            #expect(try await Self.send(request, version: 7, to: node1).topics[0].partitions[0].errorCode == 0)
        }
    }

    @Test func theActiveControllerDescribesTheQuorum() async throws {
        try await Self.withCluster { cluster in
            let request = DescribeQuorumRequest(
                topics: [.init(topicName: "__cluster_metadata", partitions: [.init(partitionIndex: 0)])]
            )
            let before = Int64(Date().timeIntervalSince1970 * 1000)
            let epoch = try #require(await cluster.active.epoch)
            for version in Int16(0)...2 {
                let response = try await Self.send(request, version: version, to: cluster.nodes[0])
                #expect(response.errorCode == 0)
                let partition = try #require(response.topics.first?.partitions.first)
                let revision = await cluster.nodes[0].controller.follower.appliedRevision
                #expect(partition.errorCode == 0 && partition.leaderID == 1)
                #expect(Int64(partition.leaderEpoch) == epoch)
                #expect(partition.highWatermark == revision)
                #expect(partition.currentVoters.map(\.replicaID) == [1])
                #expect(partition.observers.map(\.replicaID) == [1, 2, 3])
                #expect(partition.observers.allSatisfy { $0.logEndOffset > 0 && $0.logEndOffset <= revision })
                if version >= 1 {
                    #expect(partition.observers.allSatisfy { abs($0.lastFetchTimestamp - before) < 60_000 })
                }
            }
            // The standby controller and the broker-only node are not the quorum's leader.
            for node in cluster.nodes.dropFirst() {
                let response = try await Self.send(request, version: 2, to: node)
                #expect(response.errorCode == 0)
                #expect(response.topics.first?.partitions.first?.errorCode == 6)
            }
            let wrong = DescribeQuorumRequest(topics: [
                .init(topicName: "other", partitions: [.init(partitionIndex: 0)])
            ])
            #expect(try await Self.send(wrong, version: 2, to: cluster.nodes[0]).errorCode == 3)
        }
    }

    @Test func theControllerIDClientsAreGiven() {
        // The active controller when it is a live broker; else this broker when live (it forwards); else -1.
        #expect(ClusterView.controllerID(active: 2, live: [1, 2, 3], nodeID: 1) == 2)
        #expect(ClusterView.controllerID(active: 9, live: [1, 2, 3], nodeID: 1) == 1)
        #expect(ClusterView.controllerID(active: 9, live: [2, 3], nodeID: 1) == -1)
        #expect(ClusterView.controllerID(active: nil, live: [1, 2, 3], nodeID: 1) == -1)
    }
}
