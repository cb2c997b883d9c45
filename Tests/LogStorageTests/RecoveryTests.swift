import KafkaRecords
import NIOCore
import SystemPackage
import Testing

@testable import LogStorage

/// The index entries Kafka's rule gives for a segment's `.log` bytes, computed here independently of the code
/// under test: (relative offset, position) and (max timestamp so far, relative offset), plus the final time
/// index entry written when the segment closes.
func expectedIndexes(logBytes: [UInt8], baseOffset: Int64, interval: Int) -> (offsets: [UInt8], times: [UInt8]) {
    var offsets = ByteBuffer()
    var times = ByteBuffer()
    var splitter = RecordBatchSplitter(ByteBuffer(bytes: logBytes))
    var position = 0
    var sinceLast = 0
    var maxTimestamp: Int64 = -1
    var offsetOfMax = baseOffset
    var lastTimeEntry: Int64 = Int64.min
    while let batch = try! splitter.next() {
        if batch.maxTimestamp > maxTimestamp { (maxTimestamp, offsetOfMax) = (batch.maxTimestamp, batch.lastOffset) }
        if sinceLast > interval {
            offsets.writeInteger(Int32(batch.lastOffset - baseOffset))
            offsets.writeInteger(Int32(position))
            if maxTimestamp > lastTimeEntry {
                times.writeInteger(maxTimestamp)
                times.writeInteger(Int32(offsetOfMax - baseOffset))
                lastTimeEntry = maxTimestamp
            }
            sinceLast = 0
        }
        sinceLast += batch.sizeInBytes
        position += batch.sizeInBytes
    }
    if maxTimestamp >= 0, maxTimestamp > lastTimeEntry {
        times.writeInteger(maxTimestamp)
        times.writeInteger(Int32(offsetOfMax - baseOffset))
    }
    return (Array(offsets.readableBytesView), Array(times.readableBytesView))
}

@Suite struct RecoveryTests {
    static let config = smallConfig(segmentBytes: 1_500, indexInterval: 100)

    /// Writes 16 small batches (epochs 1, then 2 from the 14th, then 3 for the last), closes cleanly, and returns
    /// the files of the partition directory by name.
    static func writeLog(in directory: TemporaryDirectory) throws -> [String: [UInt8]] {
        let log = try PartitionLog(logDirectory: directory.path, topicPartition: partition, config: Self.config)
        for number in 0..<16 {
            let epoch: Int32 = number < 13 ? 1 : number < 15 ? 2 : 3
            _ = try log.appendAsLeader(
                Batches.make(count: 3 + number % 3, firstTimestamp: 1_000 + Int64(number) * 10, valueSize: 12),
                leaderEpoch: epoch
            )
        }
        try log.close()
        var files: [String: [UInt8]] = [:]
        let partitionDirectory = directory.appending(partition.directoryName)
        for name in try FileIO.listDirectory(partitionDirectory) {
            files[name] = TestFiles.read(partitionDirectory.appending(name))
        }
        return files
    }

    @Test func tornTailCutAtEveryByteOfTheLastThreeBatches() throws {
        let original = TemporaryDirectory()
        defer { original.remove() }
        let files = try Self.writeLog(in: original)
        let lastBase = files.keys.compactMap { Loader.baseOffset(of: $0, suffix: ".log") }.max()!
        let activeName = Segment.fileName(lastBase, ".log")
        let active = files[activeName]!
        let batches = Batches.headers(ByteBuffer(bytes: active))
        #expect(batches.count >= 3)
        #expect(batches.allSatisfy { $0.size <= 200 })
        var starts: [Int] = []
        var position = 0
        for batch in batches {
            starts.append(position)
            position += batch.size
        }
        let firstCut = starts[batches.count - 3]

        for cut in firstCut..<active.count {
            let directory = TemporaryDirectory()
            defer { directory.remove() }
            let partitionDirectory = directory.appending(partition.directoryName)
            try FileIO.makeDirectory(partitionDirectory)
            for (name, bytes) in files { try TestFiles.write(partitionDirectory.appending(name), bytes) }
            try TestFiles.truncate(partitionDirectory.appending(activeName), to: cut)

            let surviving = starts.lastIndex { $0 + batches[starts.firstIndex(of: $0)!].size <= cut }
            let expectedEnd = surviving.map { batches[$0].last + 1 } ?? lastBase
            let log = try PartitionLog(
                logDirectory: directory.path, topicPartition: partition, config: Self.config,
                recoveryPoint: lastBase, hadCleanShutdown: false
            )
            #expect(log.logEndOffset == expectedEnd, "cut at \(cut)")
            #expect(log.epochEntries.allSatisfy { $0.startOffset < expectedEnd }, "cut at \(cut)")
            #expect(log.epochEntries.last?.epoch == (surviving.map { batches[$0].epoch } ?? 1), "cut at \(cut)")
            try log.close()

            let logBytes = TestFiles.read(partitionDirectory.appending(activeName))!
            #expect(logBytes.count == (surviving.map { starts[$0] + batches[$0].size } ?? 0), "cut at \(cut)")
            let expected = expectedIndexes(
                logBytes: logBytes, baseOffset: lastBase, interval: Self.config.indexIntervalBytes)
            #expect(
                TestFiles.read(partitionDirectory.appending(Segment.fileName(lastBase, ".index"))) == expected.offsets)
            #expect(
                TestFiles.read(partitionDirectory.appending(Segment.fileName(lastBase, ".timeindex"))) == expected.times
            )

            // Offsets continue without a gap.
            let reopened = try PartitionLog(
                logDirectory: directory.path, topicPartition: partition, config: Self.config)
            #expect(try reopened.appendAsLeader(Batches.make(count: 1), leaderEpoch: 9).firstOffset == expectedEnd)
            try reopened.close()
        }
    }

    @Test(arguments: [false, true])
    func garbageAfterTheLastBatchIsCut(zeros: Bool) throws {
        try TemporaryDirectory.with { directory in
            let files = try Self.writeLog(in: directory)
            let partitionDirectory = directory.appending(partition.directoryName)
            let lastBase = files.keys.compactMap { Loader.baseOffset(of: $0, suffix: ".log") }.max()!
            let activePath = partitionDirectory.appending(Segment.fileName(lastBase, ".log"))
            let cleanSize = TestFiles.size(activePath)!
            var generator = SystemRandomNumberGenerator()
            for length in [1, 11, 61, 200, 1_024] {
                let garbage = (0..<length).map { _ in zeros ? 0 : UInt8.random(in: 0...255, using: &generator) }
                try TestFiles.append(activePath, garbage)
                let log = try PartitionLog(
                    logDirectory: directory.path, topicPartition: partition, config: Self.config,
                    recoveryPoint: lastBase, hadCleanShutdown: false
                )
                #expect(log.logEndOffset == 63)
                #expect(TestFiles.size(activePath) == cleanSize)
                #expect(
                    log.epochEntries == [
                        .init(epoch: 1, startOffset: 0), .init(epoch: 2, startOffset: 51),
                        .init(epoch: 3, startOffset: 60),
                    ])
                try log.close()
            }
        }
    }

    @Test func deletedIndexFilesAreRebuiltWithTheSameLookUps() throws {
        try TemporaryDirectory.with { directory in
            let files = try Self.writeLog(in: directory)
            let partitionDirectory = directory.appending(partition.directoryName)
            var indexNames: [String] = []
            for name in files.keys where name.hasSuffix("index") {
                indexNames.append(name)
                try FileIO.unlink(partitionDirectory.appending(name))
            }
            #expect(indexNames.count >= 4)
            let log = try PartitionLog(logDirectory: directory.path, topicPartition: partition, config: Self.config)
            #expect(log.logEndOffset == 63)
            for offset in Int64(0)..<63 {
                let range = try log.read(from: offset, maxBytes: 1).range!
                let header = Batches.headers(ByteBuffer(bytes: try range.readBytes()))[0]
                #expect(header.base <= offset && offset <= header.last)
            }
            #expect(try log.offset(for: .timestamp(1_071))?.offset == 28)
            try log.close()
            for name in indexNames {
                #expect(TestFiles.read(partitionDirectory.appending(name)) == files[name], "\(name)")
            }
        }
    }
}
