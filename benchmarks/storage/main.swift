// logbroker-storagebench: one phase of the storage benchmark per run, so that each phase's resident memory and
// start-up are measured in a fresh process. benchmarks/storage.sh runs the phases and prints the table.
//
//   append DIR MEGABYTES [leader|follower]
//                            appends ~1 MiB batches of 100-byte records to one partition as leader (default) or
//                            follower (no fsync), then exits without a clean stop: the log is an unrecovered tail
//   recover DIR              opens DIR after that unclean exit: recovery scans (CRC, record walk) the whole tail,
//                            then stops cleanly
//   read DIR                 opens DIR (clean) and reads the partition from its start as a fetch would
//   create DIR PARTITIONS    creates PARTITIONS partitions of three segments each, then stops cleanly
//   open DIR                 opens DIR (clean) and reports time, VmRSS and open descriptors, then reads every
//                            partition once (reopening closed ones under the descriptor budget)
//   crash DIR stop|hold      the child process of a LogStorageTests SIGKILL test (see the phase)
//
// Output: `key value` lines on stdout.

import KafkaRecords
import KafkaWire
import LogStorage
import NIOCore
import SystemPackage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

func fail(_ message: String) -> Never {
    let standardError = FileDescriptor.standardError
    _ = try? standardError.writeAll(Array("logbroker-storagebench: \(message)\n".utf8))
    exit(2)
}

func report(_ key: String, _ value: Any) {
    print("\(key) \(value)")
}

func seconds(_ duration: Duration) -> Double {
    let parts = duration.components
    return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
}

/// VmRSS from /proc/self/status, in kB.
func residentKB() -> Int {
    guard let fd = try? FileDescriptor.open("/proc/self/status", .readOnly) else { return -1 }
    defer { try? fd.close() }
    var bytes = [UInt8](repeating: 0, count: 8192)
    let count = (try? bytes.withUnsafeMutableBytes { try fd.read(into: $0) }) ?? 0
    let text = String(decoding: bytes.prefix(count), as: UTF8.self)
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? -1
    }
    return -1
}

func openDescriptors() -> Int {
    guard let directory = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(directory) }
    var count = 0
    while readdir(directory) != nil { count += 1 }
    return count - 3  // ".", ".." and the directory's own descriptor
}

/// One batch of 100-byte records, as close to 1 MiB as whole records allow.
func oneMegabyteBatch() -> ByteBuffer {
    let value = ByteBuffer(repeating: 0x61, count: 100)
    var count = 9_000
    while true {
        var builder = RecordBatchBuilder(codec: .none)
        for index in 0..<count { builder.append(timestamp: 1_700_000_000_000 + Int64(index), key: nil, value: value) }
        let batch = try! builder.build(baseOffset: 0, partitionLeaderEpoch: 0, compression: CompressionContext())
        if batch.sizeInBytes > 1 << 20 {
            count -= 1
            continue
        }
        if batch.sizeInBytes + 120 > 1 << 20 { return batch.buffer }
        count += 1
    }
}

func makeManager(_ directory: String, topicConfig: LogConfig = LogConfig(), pool: DiskIOPool) -> LogManager {
    let config = LogManagerConfig(
        logDirectories: [FilePath(directory)],
        metaProperties: MetaProperties(clusterID: "storagebench", nodeID: 1),
        topicConfig: { _ in topicConfig }
    )
    do {
        return try LogManager(config: config, ioPool: pool)
    } catch {
        fail("\(error)")
    }
}

let arguments = CommandLine.arguments
guard arguments.count >= 3 else { fail("usage: logbroker-storagebench append|recover|create|open DIR [N]") }
let directory = arguments[2]
let pool = DiskIOPool(threadCount: 2)
let clock = ContinuousClock()

switch arguments[1] {
case "append":
    // One timed phase per process, so the script can settle the page cache between it and dd.
    let megabytes = Int(arguments.count > 3 ? arguments[3] : "1024") ?? 1024
    let asFollower = arguments.count > 4 && arguments[4] == "follower"
    let batch = oneMegabyteBatch()
    let manager = makeManager(directory, pool: pool)
    let log = try manager.getOrCreateLog(topic: "bench", partition: 0, config: LogConfig())
    var appended = 0
    let appendTime: Duration
    if asFollower {
        // Follower appends keep the batch's offsets: the caller's buffer is written as is.
        var followerBatch = batch
        var nextOffset: Int64 = 0
        appendTime = try clock.measure {
            for _ in 0..<megabytes {
                followerBatch.setInteger(nextOffset, at: followerBatch.readerIndex)
                let info = try log.appendAsFollower(followerBatch)
                nextOffset = info.lastOffset + 1
                appended += followerBatch.readableBytes
            }
        }
    } else {
        appendTime = try clock.measure {
            for _ in 0..<megabytes {
                _ = try log.appendAsLeader(batch, leaderEpoch: 0)
                appended += batch.readableBytes
            }
        }
    }
    report("batch_bytes", batch.readableBytes)
    report("append_bytes", appended)
    report("append_seconds", seconds(appendTime))
    report("log_end_offset", log.logEndOffset)
    // No clean stop: the next start finds no marker and recovers the whole log (its recovery point is 0, unless a
    // roll's background flush moved it; the recover phase reports what it scanned).
    exit(0)

case "read":
    // Reads as a fetch would: find the file range, then copy it out (pread into one reused buffer; the broker
    // sends it with sendfile instead). The next offset comes from the batch headers in the range.
    let manager = makeManager(directory, pool: pool)
    guard let log = manager.log(for: TopicPartition("bench", 0)) else { fail("no partition bench-0 in \(directory)") }
    var read = 0
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 << 20, alignment: 4096)
    defer { buffer.deallocate() }
    let readTime = try clock.measure {
        try log.withLog { (log) throws(StorageError) in
            var offset = log.logStartOffset
            let end = log.logEndOffset
            while offset < end {
                guard let range = try log.read(from: offset, maxBytes: 1 << 20).range else { break }
                let count = pread(
                    range.file.descriptor.rawValue,
                    buffer.baseAddress,
                    range.length,
                    off_t(range.position)
                )
                guard count == range.length else { fail("short read") }
                read += count
                var position = 0
                while position + 27 <= count {
                    let base = Int64(bigEndian: buffer.loadUnaligned(fromByteOffset: position, as: Int64.self))
                    let length = Int(
                        Int32(bigEndian: buffer.loadUnaligned(fromByteOffset: position + 8, as: Int32.self))
                    )
                    let delta = Int32(bigEndian: buffer.loadUnaligned(fromByteOffset: position + 23, as: Int32.self))
                    offset = base + Int64(delta) + 1
                    position += 12 + length
                }
            }
        }
    }
    report("read_bytes", read)
    report("read_seconds", seconds(readTime))
    report("read_segments", try log.withLog { (log) throws(StorageError) in log.segmentBaseOffsets.count })
    try manager.shutdown()

case "recover":
    let before = clock.now
    let manager = makeManager(directory, pool: pool)
    let elapsed = clock.now - before
    var bytes: Int64 = 0
    var endOffsets: Int64 = 0
    var recoveryPoints: Int64 = 0
    for log in manager.allLogs {
        bytes += try log.withLog { (log) throws(StorageError) in log.size }
        endOffsets += log.logEndOffset
    }
    // What start-up was given: the checkpointed recovery points (all 0 unless a checkpoint ran before the exit).
    for log in manager.allLogs { recoveryPoints += min(log.recoveryPoint, log.logEndOffset) }
    report("recover_recovery_points", recoveryPoints)
    report("recover_seconds", seconds(elapsed))
    report("recover_bytes", bytes)
    report("recovered_log_end_offsets", endOffsets)
    try manager.shutdown()

case "create":
    let partitions = Int(arguments.count > 3 ? arguments[3] : "10000") ?? 10_000
    var config = LogConfig()
    config.segmentBytes = 1_000
    config.segmentIndexBytes = 4096
    let manager = makeManager(directory, topicConfig: config, pool: pool)
    var builder = RecordBatchBuilder(codec: .none)
    for index in 0..<8 {
        builder.append(
            timestamp: 1_700_000_000_000 + Int64(index),
            key: nil,
            value: ByteBuffer(repeating: 0x62, count: 100)
        )
    }
    let batch = try builder.build(baseOffset: 0, partitionLeaderEpoch: 0, compression: CompressionContext()).buffer
    let elapsed = try clock.measure {
        for partition in 0..<partitions {
            let log = try manager.getOrCreateLog(topic: "p", partition: Int32(partition), config: config)
            for _ in 0..<3 { _ = try log.appendAsLeader(batch, leaderEpoch: 0) }
        }
        try manager.shutdown()
    }
    report("create_partitions", partitions)
    report("create_seconds", seconds(elapsed))

case "open":
    let rssBefore = residentKB()
    let before = clock.now
    let manager = makeManager(directory, pool: pool)
    let elapsed = clock.now - before
    report("open_partitions", manager.startupReport.loadedPartitions)
    report("open_seconds", seconds(elapsed))
    report("open_rss_before_kb", rssBefore)
    report("open_rss_after_kb", residentKB())
    report("open_descriptors", openDescriptors())
    report("open_budget", manager.budget.limit)
    report("open_logs_open", manager.budget.openLogs)
    report("open_segments_open", manager.budget.openSegments)
    var segments = 0
    let touchTime = try clock.measure {
        for log in manager.allLogs {
            segments += try log.withLog { (log) throws(StorageError) in
                _ = try log.read(from: log.logStartOffset, maxBytes: 1 << 20)
                return log.segmentBaseOffsets.count
            }
        }
    }
    report("touch_seconds", seconds(touchTime))
    report("touch_segments", segments)
    report("touch_rss_after_kb", residentKB())
    report("touch_descriptors", openDescriptors())
    report("touch_evictions", manager.budget.evictions)
    report("touch_segment_evictions", manager.budget.segmentEvictions)
    report("touch_logs_open", manager.budget.openLogs)
    try manager.shutdown()

case "crash":
    // Not a measurement: the child process of LogStorageTests' SIGKILL test. `crash DIR stop` appends three
    // batches of two records to t-0 and stops cleanly; `crash DIR hold` starts (a clean start, which removes the
    // marker), appends one more batch, prints `appended <log end offset>` and waits to be killed.
    let manager = makeManager(directory, pool: pool)
    let log = try manager.getOrCreateLog(topic: "t", partition: 0, config: LogConfig())
    var builder = RecordBatchBuilder(codec: .none)
    for index in 0..<2 {
        builder.append(timestamp: 1_000 + Int64(index), key: nil, value: ByteBuffer(repeating: 0x63, count: 10))
    }
    let batch = try builder.build(baseOffset: 0, partitionLeaderEpoch: -1, compression: CompressionContext()).buffer
    if arguments.count > 3 && arguments[3] == "hold" {
        _ = try log.appendAsLeader(batch, leaderEpoch: 0)
        // Straight to the descriptor: print's buffer would never be flushed before the kill.
        _ = try FileDescriptor.standardOutput.writeAll(Array("appended \(log.logEndOffset)\n".utf8))
        while true { pause() }
    }
    for _ in 0..<3 { _ = try log.appendAsLeader(batch, leaderEpoch: 0) }
    try manager.shutdown()
    report("stopped", log.logEndOffset)

case "clean":
    // The log cleaner's throughput: MB of keyed records (100-byte values, batches of 1,000), of which `live` percent
    // of the keys are distinct (the others update them), then one cleaning pass over everything, timed.
    let megabytes = Int(arguments.count > 3 ? arguments[3] : "1024") ?? 1024
    let livePercent = Int(arguments.count > 4 ? arguments[4] : "10") ?? 10
    var config = LogConfig()
    config.compacts = true
    config.deletesOldSegments = false
    config.segmentBytes = 256 << 20
    let manager = makeManager(directory, topicConfig: config, pool: pool)
    let log = try manager.getOrCreateLog(topic: "bench", partition: 0, config: config)
    let recordsPerBatch = 1_000
    let value = ByteBuffer(repeating: 0x61, count: 100)
    var written = 0
    var record = 0
    var batches = 0
    while written < megabytes << 20 {
        var builder = RecordBatchBuilder(codec: .none)
        for _ in 0..<recordsPerBatch {
            // Keys cycle over `live` percent of all records written, so each key is updated 100 / live times.
            let keySpace = max(1, (megabytes << 20) / 130 * livePercent / 100)
            builder.append(timestamp: 1_000, key: ByteBuffer(string: "key-\(record % keySpace)"), value: value)
            record += 1
        }
        let batch = try builder.build(compression: CompressionContext()).buffer
        _ = try log.appendAsLeader(batch, leaderEpoch: 0)
        written += batch.readableBytes
        batches += 1
    }
    try log.withLog { (log) throws(StorageError) in try log.roll() }
    log.highWatermark = log.logEndOffset
    var result: CleaningResult?
    let cleanTime = try clock.measure {
        result = try log.withLog { (log) throws(StorageError) in
            try log.clean(firstDirtyOffset: 0, highWatermark: log.logEndOffset, dedupeBufferBytes: 512 << 20)
        }
    }
    report("log_bytes", written)
    report("records", record)
    report("clean_seconds", seconds(cleanTime))
    report("bytes_read", result?.bytesRead ?? 0)
    report("bytes_written", result?.bytesWritten ?? 0)
    report("records_removed", result?.recordsRemoved ?? 0)
    try manager.shutdown()

default:
    fail("unknown phase \(arguments[1])")
}
pool.shutdown()
