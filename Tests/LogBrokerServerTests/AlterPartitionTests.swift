import ClusterControl
import EtcdMetadataStore
import EtcdTestSupport
import KafkaMessages
import KafkaNIO
import KafkaWire
import Testing

@testable import LogBrokerServer

/// AlterPartition (key 56) over a real socket on a controller listener (its whole handler table) of a controller
/// over a real etcd, from brokers registered by hand: Kafka's answers for each version and each refusal, and
/// nothing written on a refusal.
@Suite(.timeLimit(.minutes(3))) struct AlterPartitionTests {
    struct Cluster: Sendable {
        let controller: Controller
        let port: Int
        let store: EtcdMetadataStore
    }

    static func withCluster(_ body: @Sendable (Cluster) async throws -> Void) async throws {
        try await EtcdServer.with { etcd in
            let log = CapturedLog()
            let store = try EtcdMetadataStore(configuration: .init(endpoints: [etcd.endpoint]), logger: log.logger())
            let controller = Controller(
                store: store,
                nodeID: 100,
                logger: log.logger(),
                brokerSessionTimeout: .seconds(600)
            )
            let handlers = ControllerListener.handlers(controller: controller, configuration: try testConfiguration())
            try await withServer(handlers: handlers, log: log) { port in
                try await controller.start(
                    registration: nil,
                    controllerEndpoint: BrokerEndpoint(listener: "CONTROLLER", host: "127.0.0.1", port: Int32(port))
                )
                do {
                    try await body(Cluster(controller: controller, port: port, store: store))
                } catch {
                    await controller.stop()
                    throw error
                }
                await controller.stop()
            }
            await store.shutdown()
        }
    }

    /// One partition's part of an AlterPartition request.
    static func partition(
        _ index: Int32 = 0,
        leaderEpoch: Int32 = 0,
        partitionEpoch: Int32,
        isr: [Int32],
        epochs: [Int64]? = nil
    ) -> AlterPartitionRequest.PartitionData {
        AlterPartitionRequest.PartitionData(
            partitionIndex: index,
            leaderEpoch: leaderEpoch,
            newIsr: isr,
            newIsrWithEpochs: zip(isr, epochs ?? isr.map { _ in -1 }).map { .init(brokerID: $0, brokerEpoch: $1) },
            partitionEpoch: partitionEpoch
        )
    }

    @Test func aLeaderShrinksAndGrowsItsISRAndGetsKafkasErrorsForEveryRefusal() async throws {
        try await Self.withCluster { cluster in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: cluster.port) { connection in
                // The controller listener advertises AlterPartition v0–3.
                let versions = try await connection.send(
                    ApiVersionsRequest(clientSoftwareName: "logbroker-tests", clientSoftwareVersion: "1.0"),
                    version: 3
                )
                #expect(versions.apiKeys.contains { $0.apiKey == 56 && $0.minVersion == 0 && $0.maxVersion == 3 })

                let clusterID = await cluster.controller.follower.followed.image.clusterID
                let epoch7 = try await BrokerLifecycleTests.registerByHand(7, clusterID: clusterID, on: connection)
                let epoch8 = try await BrokerLifecycleTests.registerByHand(8, clusterID: clusterID, on: connection)
                let topic = try await cluster.controller.createTopic(
                    "t",
                    partitions: 1,
                    replicationFactor: 2,
                    assignment: [[7, 8]]
                )
                func send(
                    _ partitions: [AlterPartitionRequest.PartitionData],
                    from broker: Int32 = 7,
                    brokerEpoch: Int64? = nil,
                    topicID: KafkaUUID? = nil,
                    name: String = "t",
                    version: Int16
                ) async throws -> AlterPartitionResponse {
                    try await connection.send(
                        AlterPartitionRequest(
                            brokerID: broker,
                            brokerEpoch: brokerEpoch ?? (broker == 7 ? epoch7 : epoch8),
                            topics: [.init(topicName: name, topicID: topicID ?? topic.id, partitions: partitions)]
                        ),
                        version: version
                    )
                }
                func errorCode(_ response: AlterPartitionResponse) -> ErrorCode {
                    ErrorCode(response.topics.first?.partitions.first?.errorCode ?? -1)
                }

                // v2: the leader drops 8 from the ISR; the answer carries the committed state.
                let shrunk = try await send([Self.partition(partitionEpoch: 0, isr: [7])], version: 2)
                #expect(shrunk.errorCode == 0)
                #expect(shrunk.topics.map(\.topicID) == [topic.id])
                #expect(
                    shrunk.topics.first?.partitions
                        == [
                            .init(
                                partitionIndex: 0,
                                errorCode: 0,
                                leaderID: 7,
                                leaderEpoch: 0,
                                isr: [7],
                                partitionEpoch: 1
                            )
                        ]
                )
                #expect(await cluster.controller.follower.followed.image.topics["t"]?.partitions[0].isr == [7])

                // Refusals, each writing nothing.
                let revision = try await cluster.store.revision()
                let stale = try await send([Self.partition(partitionEpoch: 0, isr: [7, 8])], version: 2)
                #expect(errorCode(stale) == .invalidUpdateVersion)
                let fencedEpoch = try await send(
                    [Self.partition(leaderEpoch: -1, partitionEpoch: 1, isr: [7, 8])],
                    version: 2
                )
                #expect(errorCode(fencedEpoch) == .fencedLeaderEpoch)
                let notLeader = try await send([Self.partition(partitionEpoch: 1, isr: [7, 8])], from: 8, version: 2)
                #expect(errorCode(notLeader) == .invalidRequest)
                let withoutLeader = try await send([Self.partition(partitionEpoch: 1, isr: [8])], version: 2)
                #expect(errorCode(withoutLeader) == .invalidRequest)
                let notReplica = try await send([Self.partition(partitionEpoch: 1, isr: [7, 9])], version: 2)
                #expect(errorCode(notReplica) == .invalidRequest)
                let unknownPartition = try await send([Self.partition(3, partitionEpoch: 1, isr: [7])], version: 2)
                #expect(errorCode(unknownPartition) == .unknownTopicOrPartition)
                let unknownID = try await send(
                    [Self.partition(partitionEpoch: 1, isr: [7])],
                    topicID: KafkaUUID(mostSignificantBits: 5, leastSignificantBits: 5),
                    version: 2
                )
                #expect(errorCode(unknownID) == .unknownTopicID)
                let unknownName = try await send(
                    [Self.partition(partitionEpoch: 1, isr: [7])],
                    name: "nope",
                    version: 1
                )
                #expect(errorCode(unknownName) == .unknownTopicOrPartition)
                let staleBroker = try await send(
                    [Self.partition(partitionEpoch: 1, isr: [7])],
                    brokerEpoch: epoch7 - 1,
                    version: 2
                )
                #expect(staleBroker.errorCode == ErrorCode.staleBrokerEpoch.rawValue && staleBroker.topics.isEmpty)
                // v3: 8 comes back with a broker epoch that is not its registration's (a restarted replica).
                let wrongEpoch = try await send(
                    [Self.partition(partitionEpoch: 1, isr: [7, 8], epochs: [epoch7, epoch8 - 1])],
                    version: 3
                )
                #expect(errorCode(wrongEpoch) == .ineligibleReplica)
                let recovering = try await send(
                    [.init(partitionIndex: 0, leaderEpoch: 0, newIsr: [7], leaderRecoveryState: 1, partitionEpoch: 1)],
                    version: 1
                )
                #expect(errorCode(recovering) == .invalidRequest)
                #expect(try await cluster.store.revision() == revision)

                // v3 with the right epochs: 8 rejoins.
                let grown = try await send(
                    [Self.partition(partitionEpoch: 1, isr: [8, 7], epochs: [epoch8, epoch7])],
                    version: 3
                )
                #expect(errorCode(grown) == .none)
                #expect(grown.topics.first?.partitions.first?.isr == [7, 8])
                #expect(grown.topics.first?.partitions.first?.partitionEpoch == 2)

                // v0 by name; a fenced member is OPERATION_NOT_ATTEMPTED there (INELIGIBLE_REPLICA from v2).
                let fenced8 = try await connection.send(
                    BrokerHeartbeatRequest(
                        brokerID: 8,
                        brokerEpoch: epoch8,
                        currentMetadataOffset: epoch8,
                        wantFence: true
                    ),
                    version: 1
                )
                #expect(fenced8.isFenced)
                let state = try #require(await cluster.controller.follower.followed.image.topics["t"]?.partitions[0])
                #expect(state.isr == [7] && state.partitionEpoch == 3, "fencing 8 took it out of the ISR")
                let byName = try await send(
                    [Self.partition(partitionEpoch: 3, isr: [7, 8])],
                    topicID: .zero,
                    version: 0
                )
                #expect(byName.topics.first?.topicName == "t")
                #expect(errorCode(byName) == .operationNotAttempted)
                let ineligible = try await send([Self.partition(partitionEpoch: 3, isr: [7, 8])], version: 2)
                #expect(errorCode(ineligible) == .ineligibleReplica)
                let sameByName = try await send(
                    [Self.partition(partitionEpoch: 3, isr: [7])],
                    topicID: .zero,
                    version: 0
                )
                #expect(errorCode(sameByName) == .none)
                #expect(sameByName.topics.first?.partitions.first?.partitionEpoch == 3, "nothing to change")
            }
        }
    }
}
