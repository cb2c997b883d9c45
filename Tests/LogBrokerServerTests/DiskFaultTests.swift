import ClusterControl
import Foundation
import KafkaRecords
import KafkaWire
import LogBrokerServer
import Logging
import NIOCore
import Replication
import SystemPackage
import Testing

@testable import LogStorage

@Suite struct DiskFaultTests {
    /// A partition this broker is elected to lead whose log cannot be created (EMFILE opening its files, injected
    /// for its directory: exhausting this process's descriptors would break the tests beside it) is not served at
    /// first, and is opened by the broker's retry once descriptors are back, without a restart; it then takes
    /// appends.
    @Test func aPartitionWhoseLogCannotBeCreatedIsOpenedOnceDescriptorsAreBack() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("faults-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = try testConfiguration([("log.dirs", directory)])
        let logger = Logger(label: "test")
        let storage = try BrokerStorage(configuration: configuration, logger: logger)
        defer {
            try? storage.logManager.shutdown()
            storage.ioPool.shutdown()
        }
        let controller = try MetadataHandler.makeController(configuration: configuration, logger: logger)
        await storage.follow(controller)
        try await controller.start(registration: BrokerRegistration(nodeID: configuration.nodeID, endpoints: []))

        let partition = TopicPartition("events", 0)
        let partitionDirectory = FilePath(directory).appending(partition.directoryName)
        FileIO.injectOpenFault(under: partitionDirectory, .tooManyOpenFiles)
        defer { FileIO.injectOpenFault(under: partitionDirectory, nil) }
        // Applied by the listeners before it returns: the first attempt to open the log has failed.
        try await controller.createTopic("events", partitions: 1, replicationFactor: 1)
        #expect(storage.replicas.partition(partition) == nil)

        FileIO.injectOpenFault(under: partitionDirectory, nil)
        let deadline = ContinuousClock.now + .seconds(30)
        while storage.replicas.partition(partition) == nil {
            guard ContinuousClock.now < deadline else {
                Issue.record("the partition was not opened after descriptors came back")
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        var builder = RecordBatchBuilder()
        builder.append(timestamp: Int64(Date().timeIntervalSince1970 * 1000), key: nil, value: ByteBuffer(string: "x"))
        let result = await storage.replicas.append(
            topic: "events",
            partition: 0,
            records: try builder.build().buffer,
            requiredAcks: -1
        )
        #expect(result.error == .none)
        #expect(result.baseOffset == 0)
    }
}
