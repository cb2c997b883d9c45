import KafkaRecords
import NIOCore
import Synchronization
import SystemPackage

/// What one cleaning pass did, for its log line and the cleaner's checkpoint.
public struct CleaningResult: Hashable, Sendable {
    /// Where the next pass starts: records below it are clean (the `cleaner-offset-checkpoint` value).
    public var firstDirtyOffset: Int64
    public var segmentsRewritten: Int
    public var bytesRead: Int64
    public var bytesWritten: Int64
    public var recordsRemoved: Int
    public var dirtyRatioBefore: Double
    public var dirtyRatioAfter: Double
}

/// A step of the segment swap after which a test makes the cleaner stop, as a crash there would.
public enum CleanerCrashPoint: Hashable, Sendable {
    /// The `.cleaned` file is written and synced.
    case cleanedWritten
    /// It is renamed `.swap`.
    case renamedToSwap
    /// The old segment's files are renamed `.deleted`.
    case oldSegmentDeleted
}

/// The stop a test asked for with a `CleanerCrashPoint`.
public struct CleanerCrash: Error, Hashable, Sendable {
    public let point: CleanerCrashPoint
}

extension PartitionLog {
    /// Bytes the cleaner may use for its key map (`log.cleaner.dedupe.buffer.size`) count each key's bytes plus this.
    static let offsetMapEntryOverhead = 32

    /// The dirty part of the log: the share of the cleanable bytes (segments below the active one, below the high
    /// watermark, older than `min.compaction.lag.ms`) at or above `firstDirtyOffset`, and whether its oldest dirty
    /// segment has waited longer than `max.compaction.lag.ms`. nil when nothing is cleanable.
    public func dirtiness(
        firstDirtyOffset: Int64,
        highWatermark: Int64,
        nowMs: Int64 = PartitionLog.nowMs()
    ) throws(StorageError) -> (ratio: Double, overdue: Bool)? {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            let cleanable = try Self.cleanableSegments(state, highWatermark: highWatermark, nowMs: nowMs)
            let firstDirty = max(firstDirtyOffset, state.logStartOffset)
            let clean = cleanable.filter { $0.next <= firstDirty }.reduce(0) { $0 + $1.segment.size }
            let dirty = cleanable.filter { $0.next > firstDirty }
            let dirtyBytes = dirty.reduce(0) { $0 + $1.segment.size }
            guard dirtyBytes > 0 else { return nil }
            var overdue = false
            if let oldest = dirty.first, state.config.maxCompactionLagMs < Int64.max {
                overdue = try nowMs - oldest.segment.largestTimestamp() > state.config.maxCompactionLagMs
            }
            return (Double(dirtyBytes) / Double(clean + dirtyBytes), overdue)
        }
    }

    /// One cleaning pass, as Kafka's `LogCleaner` does it: a map of the latest offset of every key in the dirty part
    /// (from `firstDirtyOffset`, up to what `dedupeBufferBytes` holds), then every cleanable segment rewritten
    /// without the records a later one of the same key supersedes, without records that have no key, and without
    /// tombstones (null values) older than `delete.retention.ms`. Offsets never change; a rewritten batch keeps its
    /// producer fields and codec, and a producer's last batch stays (as an empty batch if all its records go), so
    /// its state survives a restart. The active segment and records younger than `min.compaction.lag.ms` are never
    /// touched.
    ///
    /// Each segment is swapped crash-safely: written as `<base>.log.cleaned` and synced, renamed `.log.swap`, the
    /// old files renamed `.deleted` (unlinked after `file.delete.delay.ms`, so reads in flight finish), the swap
    /// renamed `.log` and its indexes rebuilt. A restart discards a `.cleaned` file and completes a `.swap`.
    ///
    /// Holds the partition lock throughout: appends to this partition wait while it is cleaned.
    /// - Returns: nil when there is nothing to clean.
    public func clean(
        firstDirtyOffset: Int64,
        highWatermark: Int64,
        dedupeBufferBytes: Int,
        nowMs: Int64 = PartitionLog.nowMs(),
        crashAt: CleanerCrashPoint? = nil
    ) throws(StorageError) -> CleaningResult? {
        try self.state.withLock { state throws(StorageError) -> CleaningResult? in
            try self.checkOnline(state)
            let cleanable = try Self.cleanableSegments(state, highWatermark: highWatermark, nowMs: nowMs)
            guard let cleanableEnd = cleanable.last?.next else { return nil }
            let firstDirty = max(firstDirtyOffset, state.logStartOffset)
            guard firstDirty < cleanableEnd else { return nil }
            let before = Self.ratio(cleanable, firstDirty: firstDirty)

            let compression = CompressionContext()
            let allocator = ByteBufferAllocator()
            var map = OffsetMap(budget: dedupeBufferBytes)
            var bytesRead: Int64 = 0
            mapping: for (segment, next) in cleanable where next > firstDirty {
                try self.use(&state, segment)
                var headers: [StoredBatchHeader] = []
                try segment.forEachBatchHeader(from: max(firstDirty, segment.baseOffset)) { headers.append($0) }
                for header in headers where !header.isControl && header.lastOffset >= firstDirty {
                    let batch = try segment.readBatch(header, allocator: allocator)
                    bytesRead += Int64(header.sizeInBytes)
                    var keys: [([UInt8], Int64)] = []
                    do {
                        var records = try batch.makeRecordIterator(
                            compression: compression,
                            maxDecompressedBytes: Int(Int32.max)
                        )
                        while let record = try records.next() {
                            guard record.offset >= firstDirty, let key = record.key else { continue }
                            keys.append((Array(key.readableBytesView), record.offset))
                        }
                    } catch {
                        throw .corruptBatch(segment.logPath, at: header.position, "\(error)")
                    }
                    // A batch is mapped whole or not at all, so the map ends at a batch boundary; the first batch
                    // is mapped even past the budget, so every pass makes progress.
                    guard map.isEmpty || map.fits(keys.map(\.0)) else { break mapping }
                    for (key, offset) in keys { map.put(key, offset: offset) }
                    map.mappedThrough = header.lastOffset
                }
            }
            guard map.mappedThrough >= firstDirty else { return nil }

            let deleteHorizon = nowMs - state.config.deleteRetentionMs
            let lastBatchOfProducer = Set(state.producers.producers.values.compactMap { $0.batches.last?.lastOffset })
            var result = CleaningResult(
                firstDirtyOffset: min(map.mappedThrough + 1, cleanableEnd),
                segmentsRewritten: 0,
                bytesRead: bytesRead,
                bytesWritten: 0,
                recordsRemoved: 0,
                dirtyRatioBefore: before,
                dirtyRatioAfter: 0
            )
            for (index, (segment, _)) in cleanable.enumerated() where segment.baseOffset <= map.mappedThrough {
                try self.use(&state, segment)
                var output = allocator.buffer(capacity: Int(segment.size))
                var changed = false
                var headers: [StoredBatchHeader] = []
                try segment.forEachBatchHeader(from: segment.baseOffset) { headers.append($0) }
                for header in headers {
                    let batch = try segment.readBatch(header, allocator: allocator)
                    result.bytesRead += segment.baseOffset < firstDirty ? Int64(header.sizeInBytes) : 0
                    guard !header.isControl else {
                        output.writeImmutableBuffer(batch.buffer)
                        continue
                    }
                    let retained: RetainedRecords
                    var removed = 0
                    do {
                        retained = try batch.retainingRecords(
                            compression: compression,
                            maxDecompressedBytes: Int(Int32.max)
                        ) { record in
                            let keep = Self.retains(record, map: map, batchTimestamp: batch.maxTimestamp,
                                                    deleteHorizon: deleteHorizon)
                            if !keep { removed += 1 }
                            return keep
                        }
                    } catch {
                        throw .corruptBatch(segment.logPath, at: header.position, "\(error)")
                    }
                    result.recordsRemoved += removed
                    switch retained {
                    case .whole:
                        output.writeImmutableBuffer(batch.buffer)
                    case .some(let rewritten):
                        changed = true
                        output.writeImmutableBuffer(rewritten.buffer)
                    case .none:
                        changed = true
                        if header.producerId >= 0, lastBatchOfProducer.contains(header.lastOffset) {
                            do {
                                output.writeImmutableBuffer(try batch.emptied().buffer)
                            } catch {
                                throw .corruptBatch(segment.logPath, at: header.position, "\(error)")
                            }
                        }
                    }
                }
                guard changed else { continue }
                let replacement = try self.swap(&state, segment, with: output, crashAt: crashAt, nowMs: nowMs)
                state.segments[index] = replacement
                result.segmentsRewritten += 1
                result.bytesWritten += Int64(output.readableBytes)
            }
            let after = try Self.cleanableSegments(state, highWatermark: highWatermark, nowMs: nowMs)
            result.dirtyRatioAfter = Self.ratio(after, firstDirty: result.firstDirtyOffset)
            return result
        }
    }

    /// Whether the cleaner keeps `record`: records past the map are dirty data for a later pass; a keyless record
    /// cannot be kept by key (Kafka drops it); a record superseded by a later one of its key goes; a tombstone goes
    /// once its batch is older than `delete.retention.ms`.
    static func retains(_ record: Record, map: OffsetMap, batchTimestamp: Int64, deleteHorizon: Int64) -> Bool {
        guard record.offset <= map.mappedThrough else { return true }
        guard let key = record.key else { return false }
        if let latest = map.offset(of: Array(key.readableBytesView)), record.offset < latest { return false }
        return record.value != nil || batchTimestamp > deleteHorizon
    }

    /// Replaces `segment` by the batches in `bytes`, through `.cleaned` and `.swap` files (see `clean`); returns the
    /// new segment, its indexes rebuilt.
    private func swap(
        _ state: inout State,
        _ segment: Segment,
        with bytes: ByteBuffer,
        crashAt: CleanerCrashPoint?,
        nowMs: Int64
    ) throws(StorageError) -> Segment {
        let logPath = segment.logPath
        let cleaned = FilePath(logPath.string + ".cleaned")
        let swap = FilePath(logPath.string + ".swap")
        let descriptor = try FileIO.open(cleaned, .writeOnly, options: [.create, .truncate])
        do {
            try bytes.withUnsafeReadableBytes { raw in
                Result { () throws(StorageError) in try FileIO.writeAll(descriptor, raw, at: 0, path: cleaned) }
            }.get()
            try FileIO.sync(descriptor, path: cleaned)
        } catch {
            FileIO.close(descriptor)
            // A full disk: the partial copy must not keep the space the log needs until the next start.
            try? FileIO.unlink(cleaned)
            throw error
        }
        FileIO.close(descriptor)
        if crashAt == .cleanedWritten { throw CleanerCrash(point: .cleanedWritten).storageError }
        try FileIO.rename(cleaned, to: swap)
        try FileIO.syncDirectory(self.directory)
        if crashAt == .renamedToSwap { throw CleanerCrash(point: .renamedToSwap).storageError }
        self.scheduleDeletion(&state, segment, nowMs: nowMs)
        if crashAt == .oldSegmentDeleted { throw CleanerCrash(point: .oldSegmentDeleted).storageError }
        try FileIO.rename(swap, to: logPath)
        try FileIO.syncDirectory(self.directory)
        return try self.openCleaned(baseOffset: segment.baseOffset, config: state.config, nowMs: nowMs)
    }

    /// Opens a cleaned segment and rebuilds its indexes from its batches.
    private func openCleaned(baseOffset: Int64, config: LogConfig, nowMs: Int64) throws(StorageError) -> Segment {
        let replacement = try Segment(
            directory: self.directory,
            baseOffset: baseOffset,
            indexCapacity: config.segmentIndexBytes,
            nowMs: nowMs
        )
        if let (position, reason) = try replacement.recover(config: config, onBatch: { _ in }) {
            throw .corruptBatch(replacement.logPath, at: position, reason)
        }
        try replacement.onBecomeInactive()
        if let budget = self.budget {
            replacement.account = Segment.Account(owner: self, budget: budget)
            budget.chargeSegment(self, baseOffset: baseOffset, active: false)
        }
        return replacement
    }

    /// The segments the cleaner may rewrite, each with the base offset of the next: below the active segment, wholly
    /// below `highWatermark`, and older than `min.compaction.lag.ms` (a prefix: cleaning stops at the first
    /// younger one).
    private static func cleanableSegments(
        _ state: borrowing State,
        highWatermark: Int64,
        nowMs: Int64
    ) throws(StorageError) -> [(segment: Segment, next: Int64)] {
        var cleanable: [(segment: Segment, next: Int64)] = []
        for number in 0..<max(0, state.segments.count - 1) {
            let segment = state.segments[number]
            let next = state.segments[number + 1].baseOffset
            guard next <= highWatermark,
                try nowMs - segment.largestTimestamp() >= state.config.minCompactionLagMs
            else { break }
            cleanable.append((segment, next))
        }
        return cleanable
    }

    private static func ratio(_ cleanable: [(segment: Segment, next: Int64)], firstDirty: Int64) -> Double {
        let total = cleanable.reduce(Int64(0)) { $0 + $1.segment.size }
        let dirty = cleanable.filter { $0.next > firstDirty }.reduce(Int64(0)) { $0 + $1.segment.size }
        return total == 0 ? 0 : Double(dirty) / Double(total)
    }
}

extension CleanerCrash {
    /// As a storage error, so it leaves `clean` like a failed disk call would.
    var storageError: StorageError { .io("cleaner stopped by a test at \(self.point)", FilePath("/"), .ioError) }
}

/// The cleaner's map from each key to the offset of its latest record in the dirty part (Kafka's
/// `SkimpyOffsetMap`), within a byte budget. Kafka keeps 16-byte hashes of the keys; this keeps the keys, so no
/// hash collision can drop a live record, and charges each entry its key's bytes plus a fixed overhead.
/// A value type.
struct OffsetMap {
    let budget: Int
    private(set) var usedBytes = 0
    private var offsets: [[UInt8]: Int64] = [:]
    /// The last offset of the last batch mapped; -1 before any.
    var mappedThrough: Int64 = -1

    init(budget: Int) {
        self.budget = budget
    }

    var isEmpty: Bool { self.offsets.isEmpty }

    /// Whether the new keys among `keys` fit in what is left of the budget.
    func fits(_ keys: [[UInt8]]) -> Bool {
        var needed = 0
        var seen: Set<[UInt8]> = []
        for key in keys where self.offsets[key] == nil && seen.insert(key).inserted {
            needed += key.count + PartitionLog.offsetMapEntryOverhead
        }
        return self.usedBytes + needed <= self.budget
    }

    mutating func put(_ key: [UInt8], offset: Int64) {
        if self.offsets.updateValue(offset, forKey: key) == nil {
            self.usedBytes += key.count + PartitionLog.offsetMapEntryOverhead
        }
    }

    func offset(of key: [UInt8]) -> Int64? { self.offsets[key] }
}
