import Foundation
import GroupCoordinator
import KafkaMessages
import KafkaWire
import LogStorage
import Replication
import SystemPackage
import Testing

@testable import LogBrokerServer

/// OffsetFetch while the coordinator has not loaded `__consumer_offsets` yet: COORDINATOR_LOAD_IN_PROGRESS where
/// each version can carry it (Kafka's `OffsetFetchRequest.getErrorResponse`), so a client retries instead of reading
/// "no offset".
@Suite struct OffsetFetchLoadingTests {
    /// A store the coordinator is never loaded from: its requests must wait for `load`.
    struct UnloadedStore: GroupStore {
        func persist(groupID: String, offsets: [(TopicPartition, CommittedOffset?)]) async throws {}
        func persist(groupID: String, group: StoredGroup?) async throws {}
    }

    @Test func eachVersionCarriesLoadInProgressWhereItCan() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("loading-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let pool = DiskIOPool(threadCount: 1)
        defer {
            pool.shutdown()
            try? FileManager.default.removeItem(atPath: directory)
        }
        let logManager = try LogManager(config: LogManagerConfig(logDirectories: [FilePath(directory)]), ioPool: pool)
        defer { try? logManager.shutdown() }
        let replicas = ReplicaManager(
            logManager: logManager,
            ioPool: pool,
            configuration: ReplicaManagerConfiguration(brokerID: 1)
        )
        let handler = OffsetFetchHandler(coordinator: GroupCoordinator(store: UnloadedStore()), replicas: replicas)
        let request = OffsetFetchRequest(
            groupID: "g",
            topics: [.init(name: "t", partitionIndexes: [0, 1])],
            groups: [.init(groupID: "g", topics: [.init(name: "t", partitionIndexes: [0, 1])])]
        )
        for version in Int16(0)...9 {
            let context = ZeroCopyTests.context(version: version, correlationID: 1)
            let response = await handler.handle(request, context: context)
            switch version {
            case 0...1:
                // No group error field: every partition asked for carries it, with offset -1.
                let partitions = response.topics.flatMap(\.partitions)
                #expect(partitions.map(\.partitionIndex) == [0, 1], "v\(version)")
                #expect(partitions.allSatisfy { $0.errorCode == 14 && $0.committedOffset == -1 }, "v\(version)")
            case 2...7:
                #expect(response.errorCode == 14, "v\(version)")
                #expect(response.topics.isEmpty, "v\(version)")
            default:
                #expect(response.groups.map(\.groupID) == ["g"], "v\(version)")
                #expect(response.groups.first?.errorCode == 14, "v\(version)")
            }
        }
    }
}
