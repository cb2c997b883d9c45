import KafkaRecords
import KafkaWire
import NIOCore
import SystemPackage
import Testing

@testable import LogStorage

/// Batches from an idempotent producer: `count` records from `sequence` on, timestamps from `timestamp`.
func producerBatch(
    producerId: Int64,
    epoch: Int16 = 0,
    sequence: Int32,
    count: Int = 2,
    timestamp: Int64,
    baseOffset: Int64 = 0,
    leaderEpoch: Int32 = -1,
    valueSize: Int = 20
) -> ByteBuffer {
    var builder = RecordBatchBuilder(producerID: producerId, producerEpoch: epoch, baseSequence: sequence)
    let value = ByteBuffer(repeating: 0x61, count: valueSize)
    for index in 0..<count { builder.append(timestamp: timestamp + Int64(index), key: nil, value: value) }
    return try! builder.build(baseOffset: baseOffset, partitionLeaderEpoch: leaderEpoch).buffer
}

/// The Kafka error code a throwing storage call gave, nil if it did not throw.
func storageErrorCode(_ body: () throws -> Void) -> ErrorCode? {
    do {
        try body()
        return nil
    } catch {
        return (error as? StorageError)?.kafkaErrorCode
    }
}

@Suite struct ProducerStateCheckTests {
    static func batch(_ epoch: Int16, _ first: Int32, _ count: Int32 = 1, offset: Int64 = 100) -> ProducerBatch {
        ProducerBatch(
            producerId: 7,
            producerEpoch: epoch,
            baseSequence: first,
            firstOffset: offset,
            lastOffset: offset + Int64(count) - 1,
            maxTimestamp: 5
        )
    }

    /// An entry at `epoch` that has appended `batches` batches of two records from sequence 0, at offsets 0, 2, ...
    static func entry(epoch: Int16 = 3, batches: Int) -> ProducerStateEntry {
        var entry = ProducerStateEntry(producerId: 7, producerEpoch: epoch, lastTimestamp: -1)
        for number in 0..<batches {
            entry.apply(Self.batch(epoch, Int32(number * 2), 2, offset: Int64(number * 2)))
        }
        return entry
    }

    func kind(_ result: Result<ProducerCheck, ProducerStateError>) -> ProducerStateError.Kind? {
        if case .failure(let error) = result { return error.kind }
        return nil
    }

    @Test func unknownProducerIsAcceptedAtAnySequence() {
        // Kafka since KIP-360: no state (expired, retention, DeleteRecords) means any sequence is accepted.
        #expect(checkProducerBatch(Self.batch(0, 0), current: nil) == .success(.append))
        #expect(checkProducerBatch(Self.batch(4, 42), current: nil) == .success(.append))
    }

    @Test func sequencesMustContinueWithoutAGap() {
        let entry = Self.entry(batches: 3)  // sequences 0...5
        #expect(entry.lastSequence == 5)
        #expect(checkProducerBatch(Self.batch(3, 6), current: entry) == .success(.append))
        #expect(kind(checkProducerBatch(Self.batch(3, 7), current: entry)) == .outOfOrderSequence)
        #expect(kind(checkProducerBatch(Self.batch(3, 5, 2), current: entry)) == .outOfOrderSequence)
        if case .failure(let failure) = checkProducerBatch(Self.batch(3, 9), current: entry) {
            #expect(failure.kafkaErrorCode == .outOfOrderSequenceNumber)
        }
    }

    @Test func retriesOfTheLastFiveBatchesAreDuplicates() {
        let entry = Self.entry(batches: 7)  // batches at sequences 0,2,...,12; the last five are 4...13
        #expect(entry.batches.count == 5)
        for number in 2..<7 {
            let result = checkProducerBatch(Self.batch(3, Int32(number * 2), 2), current: entry)
            #expect(
                result
                    == .success(
                        .duplicate(
                            ProducerBatchMetadata(
                                firstSequence: Int32(number * 2),
                                lastSequence: Int32(number * 2 + 1),
                                firstOffset: Int64(number * 2),
                                lastOffset: Int64(number * 2 + 1),
                                timestamp: 5
                            )
                        )
                    )
            )
        }
        // Older than the five retained: not recognised, so out of order (the client treats it as such).
        #expect(kind(checkProducerBatch(Self.batch(3, 2, 2), current: entry)) == .outOfOrderSequence)
        // A retry under another epoch is not a duplicate.
        #expect(kind(checkProducerBatch(Self.batch(2, 12, 2), current: entry)) == .invalidProducerEpoch)
    }

    @Test func epochs() {
        let entry = Self.entry(epoch: 3, batches: 2)
        if case .failure(let error) = checkProducerBatch(Self.batch(2, 4), current: entry) {
            #expect(error.kind == .invalidProducerEpoch)
            #expect(error.kafkaErrorCode == .invalidProducerEpoch)
        } else {
            Issue.record("an older epoch was accepted")
        }
        #expect(checkProducerBatch(Self.batch(4, 0), current: entry) == .success(.append))
        #expect(kind(checkProducerBatch(Self.batch(4, 4), current: entry)) == .outOfOrderSequence)
        // Applying a new epoch forgets the old epoch's batches.
        var bumped = entry
        bumped.apply(Self.batch(4, 0, 3, offset: 50))
        #expect(bumped.producerEpoch == 4)
        #expect(bumped.batches.map(\.firstSequence) == [0])
        #expect(bumped.lastSequence == 2)
    }

    @Test func sequenceWrapsAtInt32Max() {
        #expect(ProducerBatch.sequence(Int32.max - 1, plus: 3) == 1)
        let wrapped = Self.batch(0, Int32.max - 1, 3)
        #expect(wrapped.lastSequence == 0)
        var entry = ProducerStateEntry(producerId: 7, producerEpoch: 0, lastTimestamp: -1)
        entry.apply(Self.batch(0, Int32.max - 1, 2))
        #expect(entry.lastSequence == Int32.max)
        #expect(checkProducerBatch(Self.batch(0, 0), current: entry) == .success(.append))
    }

    @Test func laterBatchesOfOneAppendContinueFromTheEarlierOnes() {
        let entry = Self.entry(batches: 1)  // sequences 0...1
        var pending = ProducerStateEntry(producerId: 7, producerEpoch: 3, lastTimestamp: -1)
        pending.apply(Self.batch(3, 2, 2))
        #expect(checkProducerBatch(Self.batch(3, 4), current: entry, pending: pending) == .success(.append))
        #expect(kind(checkProducerBatch(Self.batch(3, 2), current: entry, pending: pending)) == .outOfOrderSequence)
    }
}

@Suite struct ProducerStateLogTests {
    static let config = smallConfig(segmentBytes: 600, indexInterval: 100)
    static let now = PartitionLog.nowMs()

    static func open(_ directory: TemporaryDirectory, clean: Bool = true, nowMs: Int64 = Self.now) throws
        -> PartitionLog
    {
        try PartitionLog(
            logDirectory: directory.path,
            topicPartition: partition,
            config: Self.config,
            recoveryPoint: 0,
            hadCleanShutdown: clean,
            nowMs: nowMs
        )
    }

    /// Appends, as the leader, producer 1 (sequences 0, 2, ...) interleaved with producer 2 and a batch without a
    /// producer id, rolling several segments; returns the state after each append, by log end offset.
    static func fill(_ log: PartitionLog, batches: Int = 12) throws -> [Int64: [Int64: ProducerStateEntry]] {
        var states: [Int64: [Int64: ProducerStateEntry]] = [log.logEndOffset: log.producerStates]
        for number in 0..<batches {
            let bytes: ByteBuffer
            switch number % 3 {
            case 0, 1:
                bytes = producerBatch(
                    producerId: 1,
                    sequence: Int32(number - number / 3) * 2,
                    timestamp: Self.now + Int64(number)
                )
            default:
                bytes =
                    number % 2 == 0
                    ? Batches.make(count: 2, firstTimestamp: Self.now, valueSize: 20)
                    : producerBatch(
                        producerId: 2,
                        epoch: 5,
                        sequence: Int32((number - 5) / 6) * 2,
                        timestamp: Self.now + 100
                    )
            }
            let info = try log.appendAsLeader(bytes, leaderEpoch: 1)
            #expect(!info.isDuplicate)
            states[log.logEndOffset] = log.producerStates
        }
        return states
    }

    @Test func leaderAppendsDeduplicateAndRefuseGapsAndStaleEpochs() throws {
        try TemporaryDirectory.with { directory in
            let log = try Self.open(directory)
            var offsets: [Int64] = []
            for sequence in stride(from: Int32(0), to: 10, by: 2) {
                let info = try log.appendAsLeader(
                    producerBatch(producerId: 9, epoch: 1, sequence: sequence, timestamp: Self.now),
                    leaderEpoch: 0
                )
                offsets.append(info.firstOffset)
            }
            let end = log.logEndOffset
            let size = log.size
            // A retry of any of the last five: the original offsets, nothing written.
            for (number, sequence) in stride(from: Int32(0), to: 10, by: 2).enumerated() {
                let retry = try log.appendAsLeader(
                    producerBatch(producerId: 9, epoch: 1, sequence: sequence, timestamp: Self.now),
                    leaderEpoch: 0
                )
                #expect(retry.isDuplicate)
                #expect(retry.firstOffset == offsets[number] && retry.lastOffset == offsets[number] + 1)
            }
            #expect(log.logEndOffset == end && log.size == size)

            // A gap, a stale epoch, a new epoch not at 0: refused, nothing written.
            #expect(
                storageErrorCode {
                    _ = try log.appendAsLeader(
                        producerBatch(producerId: 9, epoch: 1, sequence: 12, timestamp: Self.now),
                        leaderEpoch: 0
                    )
                } == .outOfOrderSequenceNumber
            )
            #expect(
                storageErrorCode {
                    _ = try log.appendAsLeader(
                        producerBatch(producerId: 9, epoch: 0, sequence: 10, timestamp: Self.now),
                        leaderEpoch: 0
                    )
                } == .invalidProducerEpoch
            )
            #expect(
                storageErrorCode {
                    _ = try log.appendAsLeader(
                        producerBatch(producerId: 9, epoch: 2, sequence: 10, timestamp: Self.now),
                        leaderEpoch: 0
                    )
                } == .outOfOrderSequenceNumber
            )
            #expect(log.logEndOffset == end && log.size == size)
            // Two batches in one append: the second must continue the first.
            #expect(
                storageErrorCode {
                    _ = try log.appendAsLeader(
                        Batches.concatenate([
                            producerBatch(producerId: 9, epoch: 1, sequence: 10, timestamp: Self.now),
                            producerBatch(producerId: 9, epoch: 1, sequence: 13, timestamp: Self.now),
                        ]),
                        leaderEpoch: 0
                    )
                } == .outOfOrderSequenceNumber
            )
            #expect(log.logEndOffset == end)

            // The next sequence, then a new epoch from 0.
            #expect(
                try log.appendAsLeader(
                    producerBatch(producerId: 9, epoch: 1, sequence: 10, timestamp: Self.now + 1),
                    leaderEpoch: 0
                ).firstOffset == end
            )
            _ = try log.appendAsLeader(
                producerBatch(producerId: 9, epoch: 2, sequence: 0, count: 3, timestamp: Self.now + 2),
                leaderEpoch: 0
            )
            let entry = log.producerStates[9]!
            #expect(entry.producerEpoch == 2)
            #expect(
                entry.batches == [
                    ProducerBatchMetadata(
                        firstSequence: 0,
                        lastSequence: 2,
                        firstOffset: end + 2,
                        lastOffset: end + 4,
                        timestamp: Self.now + 4
                    )
                ]
            )
            #expect(entry.lastTimestamp == Self.now + 4)
            try log.close()
        }
    }

    @Test func followerAppendsUpdateTheStateWithoutChecks() throws {
        try TemporaryDirectory.with { directory in
            let log = try Self.open(directory)
            _ = try log.appendAsFollower(
                Batches.concatenate([
                    producerBatch(producerId: 4, epoch: 3, sequence: 0, timestamp: Self.now, baseOffset: 0),
                    producerBatch(producerId: 4, epoch: 3, sequence: 7, timestamp: Self.now, baseOffset: 2),
                    producerBatch(producerId: 4, epoch: 2, sequence: 0, timestamp: Self.now, baseOffset: 4),
                ])
            )
            let entry = log.producerStates[4]!
            // Kafka's replication origin: no sequence check, an older epoch only logged, and the state follows it.
            #expect(entry.producerEpoch == 2)
            #expect(entry.batches.map(\.firstOffset) == [4])
            try log.close()
        }
    }

    @Test func snapshotsAtRollAndCleanReopenGiveTheSameState() throws {
        try TemporaryDirectory.with { directory in
            let log = try Self.open(directory)
            let states = try Self.fill(log)
            let bases = log.segmentBaseOffsets
            #expect(bases.count >= 3)
            // One snapshot per roll, at the new segment's base offset.
            #expect(log.producerSnapshotOffsets == Array(bases.dropFirst()))
            let state = log.producerStates
            #expect(state == states[log.logEndOffset])
            #expect(state[1]!.batches.count == 5 && state[2]!.batches.count == 2)
            try log.close()
            #expect(
                TestFiles.exists(directory.appending("orders-0/" + Segment.fileName(log.logEndOffset, ".snapshot")))
            )

            let reopened = try Self.open(directory)
            #expect(reopened.producerStates == state)
            // After the restart a retry of each of the last five batches is still recognised.
            for batch in state[1]!.batches {
                let retry = try reopened.appendAsLeader(
                    producerBatch(producerId: 1, sequence: batch.firstSequence, timestamp: Self.now),
                    leaderEpoch: 1
                )
                #expect(retry.isDuplicate && retry.firstOffset == batch.firstOffset)
            }
            try reopened.close()
        }
    }

    /// Start-up reads only the batch headers after the newest snapshot: a producer id rewritten (CRC not checked on
    /// a clean start) in a batch of the first segment is not seen while a later snapshot covers it, and is seen
    /// once every snapshot is gone (so the first check was not vacuous).
    @Test func startUpReplaysOnlyTheTailAfterTheNewestSnapshot() throws {
        try TemporaryDirectory.with { directory in
            let log = try Self.open(directory)
            _ = try Self.fill(log)
            let state = log.producerStates
            try log.close()
            let partitionDirectory = directory.appending(partition.directoryName)
            let firstLog = partitionDirectory.appending(Segment.fileName(0, ".log"))
            var bytes = TestFiles.read(firstLog)!
            #expect(Batches.headers(ByteBuffer(bytes: bytes)).count >= 2)
            var producerId = ByteBuffer()
            producerId.writeInteger(Int64(999))
            bytes.replaceSubrange(43..<51, with: producerId.readableBytesView)
            try TestFiles.write(firstLog, bytes)

            let reopened = try Self.open(directory)
            #expect(reopened.producerStates == state)
            try reopened.close()
            for name in try FileIO.listDirectory(partitionDirectory) where name.hasSuffix(".snapshot") {
                try FileIO.unlink(partitionDirectory.appending(name))
            }
            let replayed = try Self.open(directory)
            #expect(replayed.producerStates[999] != nil)
            try replayed.close()
        }
    }

    @Test(arguments: [false, true])
    func uncleanReopenRebuildsTheStateFromTheLog(tornSnapshot: Bool) throws {
        try TemporaryDirectory.with { directory in
            let log = try Self.open(directory)
            let states = try Self.fill(log)
            let end = log.logEndOffset
            let snapshots = log.producerSnapshotOffsets
            // No close: the process died. The state must come back from the last roll snapshot plus the tail.
            let partitionDirectory = directory.appending(partition.directoryName)
            if tornSnapshot {
                // The newest snapshot is torn: it is dropped and an older one loaded, with more log replayed.
                let path = partitionDirectory.appending(Segment.fileName(snapshots.last!, ".snapshot"))
                try TestFiles.truncate(path, to: TestFiles.size(path)! - 3)
            }
            let reopened = try Self.open(directory, clean: false)
            #expect(reopened.logEndOffset == end)
            #expect(reopened.producerStates == states[end])
            #expect(reopened.producerSnapshotOffsets == (tornSnapshot ? Array(snapshots.dropLast()) : snapshots))
            try reopened.close()

            // A torn last batch: the state is the one before that batch's append.
            let lastBase = reopened.segmentBaseOffsets.last!
            let active = partitionDirectory.appending(Segment.fileName(lastBase, ".log"))
            try TestFiles.truncate(active, to: TestFiles.size(active)! - 1)
            let previousEnd = states.keys.filter { $0 < end }.max()!
            let cut = try Self.open(directory, clean: false)
            #expect(cut.logEndOffset == previousEnd)
            #expect(cut.producerStates == states[previousEnd])
            // The close snapshot (at the old end) described batches that are gone: deleted.
            #expect(cut.producerSnapshotOffsets.allSatisfy { $0 <= previousEnd })
            try cut.close()
        }
    }

    @Test func truncationRollsTheStateBack() throws {
        try TemporaryDirectory.with { directory in
            let log = try Self.open(directory)
            var states = try Self.fill(log, batches: 15)
            let ends = states.keys.sorted()
            // Truncate to each earlier batch boundary in turn, newest first.
            for end in ends.reversed().dropFirst() where end >= ends[ends.count / 2] {
                try log.truncate(to: end)
                #expect(log.logEndOffset == end)
                #expect(log.producerStates == states[end], "truncated to \(end)")
                #expect(log.producerSnapshotOffsets.allSatisfy { $0 <= end })
            }
            // Appends continue from the rolled-back state: the retry of a truncated batch is a new batch again.
            let entry = log.producerStates[1]!
            let next = try log.appendAsLeader(
                producerBatch(producerId: 1, sequence: entry.lastSequence + 1, timestamp: Self.now),
                leaderEpoch: 2
            )
            #expect(!next.isDuplicate)
            states = [:]
            try log.truncateFullyAndStart(at: 500)
            #expect(log.producerStates.isEmpty)
            #expect(log.producerSnapshotOffsets.isEmpty)
            try log.close()
            let reopened = try Self.open(directory)
            #expect(reopened.producerStates.isEmpty)
            try reopened.close()
        }
    }

    @Test func producersExpireAfterProducerIdExpirationMs() throws {
        try TemporaryDirectory.with { directory in
            let log = try PartitionLog(
                logDirectory: directory.path,
                topicPartition: partition,
                config: Self.config,
                producerIdExpirationMs: 1_000,
                nowMs: 0
            )
            _ = try log.appendAsLeader(producerBatch(producerId: 1, sequence: 0, timestamp: 10_000), leaderEpoch: 0)
            _ = try log.appendAsLeader(producerBatch(producerId: 2, sequence: 0, timestamp: 10_500), leaderEpoch: 0)
            // lastTimestamp is the batch's max timestamp: 10_001 and 10_501.
            log.removeExpiredProducers(nowMs: 11_000)
            #expect(log.producerStates.keys.sorted() == [1, 2])
            log.removeExpiredProducers(nowMs: 11_001)
            #expect(log.producerStates.keys.sorted() == [2])
            // An expired producer is unknown: any sequence is accepted (Kafka, KIP-360), and then it is tracked.
            _ = try log.appendAsLeader(producerBatch(producerId: 1, sequence: 40, timestamp: 11_001), leaderEpoch: 0)
            #expect(log.producerStates[1]?.lastSequence == 41)
            try log.close()
            // Loading a snapshot skips producers already expired.
            let reopened = try PartitionLog(
                logDirectory: directory.path,
                topicPartition: partition,
                config: Self.config,
                producerIdExpirationMs: 1_000,
                nowMs: 11_600
            )
            #expect(reopened.producerStates.keys.sorted() == [1])
            try reopened.close()
        }
    }
}
