import ClusterControl
import Foundation
import KafkaRecords
import KafkaWire
import LogBrokerServer
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
        // A whole broker, as the daemon assembles it: the controller's elections reach the replica manager.
        try await withInProcessBroker { broker in
            let storage = try #require(broker.storage)
            let controller = broker.controller
            let directory = try #require(broker.configuration.logDirs.first)
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
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            builder.append(timestamp: now, key: nil, value: ByteBuffer(string: "x"))
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
}
