import KafkaRecords
import LogStorage
import NIOCore
import Replication
import SystemPackage

#if canImport(Glibc)
    import Glibc
#endif

/// A ReplicaManager over a fresh log directory under /tmp, for one test; `close()` stops it and removes the files.
/// Not thread-safe: used by one test.
final class ReplicaFixture {
    let directory: String
    let pool: DiskIOPool
    let logManager: LogManager
    let replicas: ReplicaManager

    init(
        topicConfig: @escaping @Sendable (String) -> LogConfig = { _ in LogConfig() },
        configuration: ReplicaManagerConfiguration = ReplicaManagerConfiguration(brokerID: 1),
        isrChanges: (any ISRChangeSending)? = nil,
        fetching: (any ReplicaFetching)? = nil
    ) throws {
        var template = Array("/tmp/replication-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        self.directory = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.pool = DiskIOPool(threadCount: 2)
        self.logManager = try LogManager(
            config: LogManagerConfig(logDirectories: [FilePath(self.directory)], topicConfig: topicConfig),
            ioPool: self.pool
        )
        self.replicas = ReplicaManager(
            logManager: self.logManager,
            ioPool: self.pool,
            configuration: configuration,
            fetching: fetching,
            isrChanges: isrChanges
        )
    }

    func close() {
        try? self.logManager.shutdown()
        self.pool.shutdown()
        Self.removeTree(self.directory)
    }

    private static func removeTree(_ path: String) {
        if let handle = opendir(path) {
            var names: [String] = []
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(handle)
            for name in names { Self.removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}

/// Record batches for tests.
enum TestBatches {
    /// One batch of `count` records "value-0", "value-1", ... with the given timestamps (now by default).
    static func make(
        count: Int,
        codec: CompressionCodec = .none,
        timestamp: Int64 = PartitionLog.nowMs(),
        isTransactional: Bool = false,
        isControl: Bool = false
    ) throws -> ByteBuffer {
        var builder = RecordBatchBuilder(codec: codec, isTransactional: isTransactional, isControl: isControl)
        for index in 0..<count {
            builder.append(
                timestamp: timestamp + Int64(index),
                key: nil,
                value: ByteBuffer(string: "value-\(index)")
            )
        }
        return try builder.build().buffer
    }

    /// The batches in `buffer`: base offset, leader epoch and record count of each.
    static func headers(_ buffer: ByteBuffer) throws -> [(baseOffset: Int64, epoch: Int32, count: Int32)] {
        var splitter = RecordBatchSplitter(buffer)
        var result: [(Int64, Int32, Int32)] = []
        while let batch = try splitter.next() {
            result.append((batch.baseOffset, batch.partitionLeaderEpoch, batch.recordCount))
        }
        return result
    }
}
