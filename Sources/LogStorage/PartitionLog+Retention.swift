import Logging
import Synchronization

/// What one retention pass did.
public struct RetentionResult: Hashable, Sendable {
    /// The base offsets of the segments deleted (renamed `.deleted`, unlinked after `file.delete.delay.ms`).
    public var deletedSegments: [Int64]
    /// The log start offset after the pass.
    public var logStartOffset: Int64
}

extension PartitionLog {
    /// Why a segment may go, as Kafka's `deleteOldSegments` predicates: given the segment, its size and the next
    /// segment's base offset (nil for the active one).
    private enum RetentionReason: CustomStringConvertible {
        case time(retentionMs: Int64, largestTimestamp: Int64)
        case size(retentionBytes: Int64)
        case logStartOffset(Int64)

        var description: String {
            switch self {
            case .time(let retentionMs, let largestTimestamp):
                "retention.ms \(retentionMs) breached (largest timestamp \(largestTimestamp))"
            case .size(let retentionBytes): "retention.bytes \(retentionBytes) breached"
            case .logStartOffset(let offset): "below the log start offset \(offset)"
            }
        }
    }

    /// One retention pass (Kafka's `deleteOldSegments` for `cleanup.policy=delete`; with `compact` alone the caller
    /// skips time and size by passing `timeAndSize: false`, and only segments below the log start go):
    ///
    /// 1. `retention.ms`: oldest first, segments whose largest record timestamp is more than `retention.ms` before
    ///    `nowMs` (the time index, not the file's mtime);
    /// 2. `retention.bytes`: oldest first, whole segments while the log stays at or above the limit without them;
    /// 3. segments wholly below the log start offset (after DeleteRecords).
    ///
    /// Each pass stops at the first segment that must stay. A segment is only deleted if every offset in it is
    /// below `highWatermark`, so the log start never passes it. When every segment goes, the active one is rolled
    /// first (an empty segment at the log end remains). Deleted segments are renamed `.deleted` and unlinked by
    /// `deleteExpiredFiles` after `file.delete.delay.ms`, so a fetch already sending one completes. The log start
    /// moves to the first remaining segment; the epoch cache and producer snapshots are trimmed to it (producer
    /// entries stay until they expire, as in Kafka, so a producer whose batches were deleted is still known).
    ///
    /// Nothing is written before segments go, so a pass works on a full disk: the `leader-epoch-checkpoint` write
    /// after it is retried later if it fails (`LeaderEpochCache.needsFlush`), and a roll that fails keeps the
    /// active segment while the older ones still go.
    @discardableResult
    public func deleteOldSegments(
        nowMs: Int64 = PartitionLog.nowMs(),
        highWatermark: Int64,
        timeAndSize: Bool = true
    ) throws(StorageError) -> RetentionResult {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            var deleted: [Int64] = []
            do throws(StorageError) {
                if timeAndSize && state.config.retentionMs >= 0 {
                    let retentionMs = state.config.retentionMs
                    deleted += try self.deleteSegments(&state, highWatermark: highWatermark, nowMs: nowMs) {
                        (segment, _, _) throws(StorageError) in
                        let largest = try segment.largestTimestamp()
                        return nowMs - largest > retentionMs
                            ? .time(retentionMs: retentionMs, largestTimestamp: largest) : nil
                    }
                }
                if timeAndSize && state.config.retentionBytes >= 0 {
                    let retentionBytes = state.config.retentionBytes
                    var excess = state.segments.reduce(0) { $0 + $1.size } - retentionBytes
                    deleted += try self.deleteSegments(&state, highWatermark: highWatermark, nowMs: nowMs) {
                        (segment, _, _) throws(StorageError) in
                        guard excess - segment.size >= 0 else { return nil }
                        excess -= segment.size
                        return .size(retentionBytes: retentionBytes)
                    }
                }
                deleted += try self.deleteSegments(&state, highWatermark: highWatermark, nowMs: nowMs) {
                    (_, nextBaseOffset, logStartOffset) throws(StorageError) in
                    guard let nextBaseOffset, nextBaseOffset <= logStartOffset else { return nil }
                    return .logStartOffset(logStartOffset)
                }
            } catch {
                // A transient failure (no space, no descriptor) fails this pass only: the next one retries.
                throw error.errno != nil ? self.takeOffline(&state, error) : error
            }
            return RetentionResult(deletedSegments: deleted, logStartOffset: state.logStartOffset)
        }
    }

    /// Deletes the oldest segments while `reason` names one, each also wholly below `highWatermark`; returns their
    /// base offsets.
    private func deleteSegments(
        _ state: inout State,
        highWatermark: Int64,
        nowMs: Int64,
        reason: (Segment, Int64?, Int64) throws(StorageError) -> RetentionReason?
    ) throws(StorageError) -> [Int64] {
        var deletable: [(Segment, RetentionReason)] = []
        for (number, segment) in state.segments.enumerated() {
            let next = number + 1 < state.segments.count ? state.segments[number + 1].baseOffset : nil
            let upperBound = next ?? state.nextOffset
            guard highWatermark >= upperBound, next != nil || segment.size > 0,
                let why = try reason(segment, next, state.logStartOffset)
            else { break }
            deletable.append((segment, why))
        }
        guard !deletable.isEmpty else { return [] }
        if deletable.count == state.segments.count {
            // At least one segment must remain: roll, so that the old active segment can go too. On a full disk
            // (or without descriptors) the roll fails; the older segments still go, which is what frees the space.
            do throws(StorageError) {
                try self.roll(&state, baseOffset: state.nextOffset, nowMs: nowMs)
            } catch let error where error.isTransient {
                self.logger.warning(
                    "Retention keeps the active segment: it could not roll",
                    metadata: ["error": "\(error)"]
                )
                deletable.removeLast()
                guard !deletable.isEmpty else { return [] }
            }
        }
        for (segment, why) in deletable {
            self.logger.info(
                "Deleting segment",
                metadata: ["baseOffset": "\(segment.baseOffset)", "reason": "\(why)"]
            )
            self.scheduleDeletion(&state, segment, nowMs: nowMs)
        }
        state.segments.removeFirst(deletable.count)
        try self.advanceLogStart(&state, to: state.segments[0].baseOffset)
        try state.producers.deleteSnapshots(before: state.segments[0].baseOffset)
        return deletable.map { $0.0.baseOffset }
    }

    /// Moves the log start up to `offset` (never down) and trims the epoch cache to it.
    private func advanceLogStart(_ state: inout State, to offset: Int64) throws(StorageError) {
        guard offset > state.logStartOffset else { return }
        state.logStartOffset = offset
        try state.epochCache.truncate(fromStart: offset)
    }

    /// DeleteRecords: moves the log start offset to `offset` (records below it can no longer be read; whole segments
    /// below it go at the next `deleteOldSegments`). An offset at or below the current log start changes nothing.
    /// Returns the log start offset (the low watermark DeleteRecords answers with).
    /// - Throws: `offsetOutOfRange` (OFFSET_OUT_OF_RANGE) for a negative offset or one above `highWatermark`, as
    ///   Kafka's `Partition.deleteRecordsOnLeader` does; the caller turns DeleteRecords' -1 into the high watermark.
    @discardableResult
    public func deleteRecords(before offset: Int64, highWatermark: Int64) throws(StorageError) -> Int64 {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            guard offset >= 0, offset <= highWatermark, offset <= state.nextOffset else {
                throw .offsetOutOfRange(
                    "\(self.topicPartition)",
                    offset: offset,
                    logStartOffset: state.logStartOffset,
                    logEndOffset: min(highWatermark, state.nextOffset)
                )
            }
            do throws(StorageError) {
                try self.advanceLogStart(&state, to: offset)
            } catch {
                throw self.takeOffline(&state, error)
            }
            return state.logStartOffset
        }
    }
}
