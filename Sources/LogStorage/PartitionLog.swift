import KafkaRecords
import KafkaWire
import Logging
import NIOCore
import Synchronization
import SystemPackage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What an append did: the offsets it assigned or kept, and the max timestamp it stored.
public struct LogAppendInfo: Hashable, Sendable {
    public var firstOffset: Int64
    public var lastOffset: Int64
    /// The batches' largest max timestamp (the broker's clock for LogAppendTime topics).
    public var maxTimestamp: Int64
    /// The LogAppendTime stamped on the batches, or -1 for CreateTime.
    public var logAppendTime: Int64
    public var batchCount: Int
    /// True when the batch was a producer's retry of one already in the log: nothing was written, and the offsets
    /// and timestamp are the original batch's (Produce answers NONE with them).
    public var isDuplicate = false
}

/// A ListOffsets query.
public enum OffsetSpec: Hashable, Sendable {
    case earliest
    case latest
    case maxTimestamp
    /// The first offset whose record timestamp is >= the value.
    case timestamp(Int64)
}

/// A found offset with its timestamp (-1 when the spec has none) and the leader epoch of its batch.
public struct TimestampAndOffset: Hashable, Sendable {
    public var timestamp: Int64
    public var offset: Int64
    public var leaderEpoch: Int32?
}

/// What a read found: the bytes as a file range (nil when there is nothing to send) and the log's bounds then.
public struct LogReadInfo: Sendable {
    public var range: FileRange?
    public var logStartOffset: Int64
    public var logEndOffset: Int64
}

/// One partition's log on disk: `<log.dir>/<topic>-<partition>/`, its segments, its leader-epoch cache.
///
/// Thread-safe: all state is behind one `Mutex`, so appends to one partition are serialised while different
/// partitions proceed in parallel. Reads take the lock only to find their file range, and send it without it.
/// Every method makes blocking disk calls: call them from `DiskIOPool`, never from an event loop.
public final class PartitionLog: Sendable {
    public let topicPartition: TopicPartition
    public let directory: FilePath
    /// Internal (not private) so the retention extension in PartitionLog+Retention.swift can use it.
    let state: Mutex<State>
    let logger: Logger
    /// The descriptor budget the segments' files are charged to; nil: cold segments stay open once opened.
    let budget: FileHandleBudget?

    struct State: ~Copyable {
        var config: LogConfig
        var segments: [Segment]
        var logStartOffset: Int64
        var nextOffset: Int64
        var recoveryPoint: Int64
        var epochCache: LeaderEpochCache
        var offlineReason: String?
        var producers: ProducerStateManager
        var pendingDeletes: [(deadlineMs: Int64, paths: [FilePath])] = []
        /// Counts truncations, so a flush that ran without the lock does not move the recovery point over bytes
        /// that were cut and written again meanwhile.
        var truncations: UInt64 = 0
    }

    /// The wall clock in milliseconds, as Kafka's `time.milliseconds()`.
    public static func nowMs() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }

    /// Opens the partition in `logDirectory`, creating its directory if new. After an unclean stop
    /// (`hadCleanShutdown` false) the segments from `recoveryPoint` on are checked batch by batch and the log is
    /// cut at the first torn or corrupt batch; any segment whose index is missing or fails its sanity check is
    /// rebuilt. Corruption found while rebuilding below the recovery point takes the partition offline instead.
    /// Only the active segment's files stay open; the others reopen when a read or look-up needs them, charged to
    /// `budget`.
    public init(
        logDirectory: FilePath,
        topicPartition: TopicPartition,
        config: LogConfig = LogConfig(),
        recoveryPoint: Int64 = 0,
        logStartOffset: Int64 = 0,
        hadCleanShutdown: Bool = true,
        producerIdExpirationMs: Int64 = 86_400_000,
        nowMs: Int64 = PartitionLog.nowMs(),
        budget: FileHandleBudget? = nil,
        logger: Logger = Logger(label: "LogStorage")
    ) throws(StorageError) {
        let directory = logDirectory.appending(topicPartition.directoryName)
        var logger = logger
        logger[metadataKey: "partition"] = "\(topicPartition)"
        self.topicPartition = topicPartition
        self.directory = directory
        self.logger = logger
        self.budget = budget
        try FileIO.makeDirectory(directory)
        let (epochCache, epochCacheDamaged) = try LeaderEpochCache.loadOrReset(
            path: directory.appending(LeaderEpochCache.fileName),
            logger: logger
        )
        var loader = Loader(
            directory: directory,
            config: config,
            epochCache: epochCache,
            logger: logger,
            partition: "\(topicPartition)"
        )
        let loaded = try loader.load(
            recoveryPoint: recoveryPoint,
            logStartOffset: logStartOffset,
            hadCleanShutdown: hadCleanShutdown
        )
        let producers = try ProducerStateManager(
            directory: directory,
            producerIdExpirationMs: producerIdExpirationMs,
            logger: logger
        )
        if loaded.offlineReason == nil && epochCacheDamaged {
            try epochCache.rebuild(
                from: loaded.segments,
                logStartOffset: loaded.logStartOffset,
                logEndOffset: loaded.nextOffset
            )
        }
        if loaded.offlineReason == nil {
            try producers.removeStraySnapshots(segmentBaseOffsets: Set(loaded.segments.map(\.baseOffset)))
            try Self.rebuildProducerState(
                producers,
                segments: loaded.segments,
                logStartOffset: loaded.logStartOffset,
                logEndOffset: loaded.nextOffset,
                nowMs: nowMs
            )
        }
        self.state = Mutex(
            State(
                config: config,
                segments: loaded.segments,
                logStartOffset: loaded.logStartOffset,
                nextOffset: loaded.nextOffset,
                recoveryPoint: min(recoveryPoint, loaded.nextOffset),
                epochCache: epochCache,
                offlineReason: loaded.offlineReason,
                producers: producers
            )
        )
        if let budget {
            self.state.withLock { state in
                for segment in state.segments {
                    segment.account = Segment.Account(owner: self, budget: budget)
                    if segment.isOpen {
                        let active = segment === state.segments.last
                        budget.chargeSegment(self, baseOffset: segment.baseOffset, active: active)
                    }
                }
            }
        }
    }

    deinit {
        self.budget?.releaseAll(ObjectIdentifier(self))
    }

    /// Reloads the newest snapshot at or below `logEndOffset` and replays the batch headers after it (Kafka's
    /// `rebuildProducerState`): at start-up after the loader, and after every truncation.
    private static func rebuildProducerState(
        _ producers: ProducerStateManager,
        segments: [Segment],
        logStartOffset: Int64,
        logEndOffset: Int64,
        nowMs: Int64
    ) throws(StorageError) {
        let from = try producers.truncateAndReload(
            logStartOffset: logStartOffset,
            logEndOffset: logEndOffset,
            nowMs: nowMs
        )
        if from < logEndOffset {
            for segment in segments[Self.segmentIndex(segments, containing: from)...] {
                let wasOpen = segment.isOpen
                try segment.forEachBatchHeader(from: from) { (header) throws(StorageError) in
                    if header.lastOffset < logEndOffset, let batch = header.producerBatch { producers.apply(batch) }
                }
                // A cold segment opened only for this replay closes again, so it holds no descriptor.
                if !wasOpen && segment !== segments.last { try segment.closeFiles() }
            }
        }
        producers.updateMapEndOffset(logEndOffset)
    }

    // MARK: Bounds

    public var logEndOffset: Int64 { self.state.withLock { $0.nextOffset } }
    public var logStartOffset: Int64 { self.state.withLock { $0.logStartOffset } }
    public var recoveryPoint: Int64 { self.state.withLock { $0.recoveryPoint } }
    public var segmentBaseOffsets: [Int64] { self.state.withLock { $0.segments.map(\.baseOffset) } }
    public var epochEntries: [EpochEntry] { self.state.withLock { $0.epochCache.entries } }
    public var isOffline: Bool { self.state.withLock { $0.offlineReason != nil } }
    /// Why the partition went offline (the failure's description), nil while it is online.
    public var offlineReason: String? { self.state.withLock { $0.offlineReason } }
    /// The producer state per producer id (what DescribeProducers shows).
    public var producerStates: [Int64: ProducerStateEntry] { self.state.withLock { $0.producers.producers } }
    /// The offsets of the producer snapshot files on disk, ascending.
    public var producerSnapshotOffsets: [Int64] { self.state.withLock { $0.producers.snapshotOffsets } }

    /// The idempotent-producer checks for `batch` against the current state, without appending (appendAsLeader
    /// runs the same checks under the same lock as its write, so callers need not call this first).
    public func checkProducer(_ batch: ProducerBatch) -> Result<ProducerCheck, ProducerStateError> {
        self.state.withLock { $0.producers.check(batch) }
    }

    /// Forgets producers idle for `producer.id.expiration.ms`; the log manager calls it periodically (Kafka:
    /// every `producer.id.expiration.check.interval.ms`, 10 minutes).
    public func removeExpiredProducers(nowMs: Int64 = PartitionLog.nowMs()) {
        self.state.withLock { $0.producers.removeExpiredProducers(nowMs: nowMs) }
    }
    public var size: Int64 { self.state.withLock { $0.segments.reduce(0) { $0 + $1.size } } }

    /// The settings the next append, roll and retention check obey.
    public var config: LogConfig { self.state.withLock { $0.config } }

    /// Applies a changed topic config from the next operation on (segments already rolled keep their size).
    public func updateConfig(_ config: LogConfig) {
        self.state.withLock { $0.config = config }
    }

    /// OffsetForLeaderEpoch's answer from the epoch cache.
    public func endOffset(forEpoch epoch: Int32) -> (epoch: Int32, endOffset: Int64) {
        self.state.withLock { $0.epochCache.endOffset(for: epoch, logEndOffset: $0.nextOffset) }
    }

    func checkOnline(_ state: borrowing State) throws(StorageError) {
        if let reason = state.offlineReason { throw .partitionOffline("\(self.topicPartition)", reason) }
    }

    /// Marks the partition offline (its bookkeeping is unreadable), so every later call fails fast with
    /// KAFKA_STORAGE_ERROR; nothing is deleted.
    func takeOffline(_ error: StorageError) {
        self.state.withLock { state in _ = self.takeOffline(&state, error, force: true) }
    }

    /// Marks the partition offline after a failed disk call that may have left its data wrong, so later calls fail
    /// fast with KAFKA_STORAGE_ERROR; returns `error` for the caller to throw. A transient failure (no descriptor, no
    /// space: `StorageError.isTransient`) fails only the operation that met it, and the partition stays online,
    /// unless `force` (the operation could not undo what it had half done).
    func takeOffline(_ state: inout State, _ error: StorageError, force: Bool = false) -> StorageError {
        if error.isTransient && !force {
            self.logger.warning(
                "A disk call failed transiently; the partition stays online",
                metadata: ["error": "\(error)"]
            )
            return error
        }
        if state.offlineReason == nil {
            state.offlineReason = error.description
            self.logger.error("Taking partition offline", metadata: ["error": "\(error)"])
        }
        return error
    }

    /// Records that `leaderEpoch` starts at the log end, as Kafka's new leader does on election
    /// (`maybeAssignEpochStartOffset`), so OffsetForLeaderEpoch and ListOffsets answer for the new epoch before
    /// anything is appended in it. An epoch at or below the latest cached one changes nothing.
    public func assignLeaderEpoch(_ leaderEpoch: Int32) throws(StorageError) {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            try state.epochCache.assign(epoch: leaderEpoch, startOffset: state.nextOffset)
        }
    }

    /// `assignLeaderEpoch` for one of many partitions elected at once: `leader-epoch-checkpoint` is rewritten
    /// without fsync, and the caller makes every such file durable with one sync of the file system
    /// (`LogManager.syncLogDirectories`), then passes the returned token to `confirmLeaderEpochSynced`. Until then
    /// a flush syncs the file before it moves the recovery point. Returns nil when the file was not left unsynced.
    public func assignLeaderEpochAwaitingSync(_ leaderEpoch: Int32) throws(StorageError) -> UInt64? {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            try state.epochCache.assign(epoch: leaderEpoch, startOffset: state.nextOffset, durable: false)
            return state.epochCache.awaitingSync ? state.epochCache.writeCount : nil
        }
    }

    /// Whether `leader-epoch-checkpoint` was written without fsync and awaits a confirmed sync.
    public var leaderEpochCheckpointAwaitingSync: Bool { self.state.withLock { $0.epochCache.awaitingSync } }

    /// The file as this log opened it was written without fsync while the log was closed
    /// (`ManagedLog.assignLeaderEpochAwaitingSync`).
    func markLeaderEpochCheckpointAwaitingSync() {
        self.state.withLock { $0.epochCache.markAwaitingSync() }
    }

    /// A sync of the file system that began after `assignLeaderEpochAwaitingSync` returned `token` succeeded.
    public func confirmLeaderEpochSynced(_ token: UInt64) {
        self.state.withLock { $0.epochCache.confirmSynced(writeCount: token) }
    }

    /// Writes `leader-epoch-checkpoint` with fsync if it awaits a sync (the batch's file-system sync failed).
    public func syncLeaderEpochCheckpoint() throws(StorageError) {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            try state.epochCache.syncIfNeeded()
        }
    }

    // MARK: Appending

    /// Appends validated batches as the leader: offsets assigned from the log end (base offset rewritten in
    /// place), `leaderEpoch` stamped into each (neither is covered by the CRC), and for LogAppendTime topics the
    /// timestamp type and max timestamp set to `nowMs` with the CRC recomputed. The epoch cache learns `leaderEpoch`.
    ///
    /// Batches with a producer id are checked against the producer state first (`checkProducerBatch`), all before
    /// anything is written: a retry of one of the producer's last five batches writes nothing and returns the
    /// original offsets with `isDuplicate`; a sequence gap or stale epoch throws `producerRejected`
    /// (OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH).
    public func appendAsLeader(
        _ batches: ByteBuffer,
        leaderEpoch: Int32,
        nowMs: Int64 = PartitionLog.nowMs()
    ) throws(StorageError) -> LogAppendInfo {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            var bytes = batches
            var splitter = RecordBatchSplitter(bytes, maxBatchSize: Int(Int32.max))
            var offset = state.nextOffset
            var position = bytes.readerIndex
            let logAppendTime = state.config.logAppendTime
            var pending: [Int64: ProducerStateEntry] = [:]
            while let batch = try Self.nextBatch(&splitter, partition: "\(self.topicPartition)") {
                if batch.producerID >= 0 {
                    let producerBatch = ProducerBatch(
                        producerId: batch.producerID,
                        producerEpoch: batch.producerEpoch,
                        baseSequence: batch.baseSequence,
                        firstOffset: offset,
                        lastOffset: offset + Int64(batch.lastOffsetDelta),
                        maxTimestamp: logAppendTime ? nowMs : batch.maxTimestamp,
                        isControl: batch.attributes.isControl
                    )
                    switch state.producers.check(producerBatch, pending: pending[batch.producerID]) {
                    case .failure(let error):
                        throw .producerRejected("\(self.topicPartition)", error)
                    case .success(.duplicate(let original)):
                        return LogAppendInfo(
                            firstOffset: original.firstOffset,
                            lastOffset: original.lastOffset,
                            maxTimestamp: original.timestamp,
                            logAppendTime: logAppendTime ? original.timestamp : -1,
                            batchCount: 0,
                            isDuplicate: true
                        )
                    case .success(.append):
                        let current = state.producers.producers[batch.producerID]
                        pending[
                            batch.producerID,
                            default: ProducerStateEntry(
                                producerId: batch.producerID,
                                producerEpoch: current?.producerEpoch ?? -1,
                                lastTimestamp: -1
                            )
                        ].apply(producerBatch)
                    }
                }
                if logAppendTime {
                    var stamped = batch
                    stamped.baseOffset = offset
                    stamped.partitionLeaderEpoch = leaderEpoch
                    stamped.setLogAppendTime(nowMs)
                    bytes.setBuffer(stamped.buffer, at: position)
                }
                // Otherwise the caller's bytes stay as they are: `write` assigns the offsets and the segment writes
                // each batch's stamped head from a scratch buffer (no copy of the request's bytes).
                offset += Int64(batch.lastOffsetDelta) + 1
                position += batch.sizeInBytes
            }
            guard splitter.remainingBytes == 0 else {
                throw .invalidAppend(
                    "\(self.topicPartition)",
                    "\(splitter.remainingBytes) bytes after the last whole batch"
                )
            }
            return try self.write(
                bytes,
                state: &state,
                leaderEpoch: leaderEpoch,
                nowMs: nowMs,
                logAppendTime: logAppendTime ? nowMs : -1
            )
        }
    }

    /// Appends batches as a follower: offsets and leader epochs kept as the leader wrote them. The first batch
    /// must start at or after the log end; the epoch cache learns each batch's epoch.
    public func appendAsFollower(
        _ batches: ByteBuffer,
        nowMs: Int64 = PartitionLog.nowMs()
    ) throws(StorageError) -> LogAppendInfo {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            return try self.write(batches, state: &state, leaderEpoch: nil, nowMs: nowMs, logAppendTime: -1)
        }
    }

    private static func nextBatch(_ splitter: inout RecordBatchSplitter, partition: String) throws(StorageError)
        -> RecordBatch?
    {
        do {
            return try splitter.next()
        } catch {
            throw .invalidAppend(partition, "\(error)")
        }
    }

    /// Splits `bytes` into batches, rolls where needed and writes each run of batches for one segment with one
    /// pwrite (pwritev for a leader, which stamps offsets and `leaderEpoch` on the way). A failure writing leaves
    /// the log as it was before this append.
    private func write(
        _ bytes: ByteBuffer,
        state: inout State,
        leaderEpoch: Int32?,
        nowMs: Int64,
        logAppendTime: Int64
    ) throws(StorageError) -> LogAppendInfo {
        let partition = "\(self.topicPartition)"
        var splitter = RecordBatchSplitter(bytes, maxBatchSize: Int(Int32.max))
        var runStart = bytes.readerIndex
        var runLength = 0
        var run: [StoredBatchHeader] = []
        var info = LogAppendInfo(
            firstOffset: -1,
            lastOffset: -1,
            maxTimestamp: -1,
            logAppendTime: logAppendTime,
            batchCount: 0
        )
        var expectedNext = state.nextOffset
        let before = (state.nextOffset, state.segments.last!.size, state.segments.count)
        var producersBefore: [Int64: ProducerStateEntry?] = [:]
        let mapEndBefore = state.producers.mapEndOffset
        do throws(StorageError) {
            while let batch = try Self.nextBatch(&splitter, partition: partition) {
                // A leader append assigns offsets from the log end (Segment.append stamps them); a follower's keep
                // the leader's.
                let baseOffset = leaderEpoch == nil ? batch.baseOffset : expectedNext
                guard baseOffset >= expectedNext, batch.lastOffsetDelta >= 0 else {
                    throw .invalidAppend(
                        partition,
                        "batch at offset \(batch.baseOffset) is not after the log end \(expectedNext)"
                    )
                }
                guard batch.sizeInBytes <= state.config.segmentBytes else {
                    throw .recordTooLarge(partition, size: batch.sizeInBytes, limit: state.config.segmentBytes)
                }
                let header = StoredBatchHeader(
                    position: Int64(runLength),
                    baseOffset: baseOffset,
                    sizeInBytes: batch.sizeInBytes,
                    partitionLeaderEpoch: leaderEpoch ?? batch.partitionLeaderEpoch,
                    lastOffsetDelta: batch.lastOffsetDelta,
                    maxTimestamp: batch.maxTimestamp,
                    isLogAppendTime: batch.attributes.timestampType == .logAppendTime,
                    producerId: batch.producerID,
                    producerEpoch: batch.producerEpoch,
                    baseSequence: batch.baseSequence,
                    isControl: batch.attributes.isControl
                )
                let active = state.segments.last!
                let pendingSize = Int64(runLength)
                let rollNeeded =
                    active.size + pendingSize > 0
                    && (active.size + pendingSize + Int64(batch.sizeInBytes) > Int64(state.config.segmentBytes)
                        || active.shouldRoll(
                            batchSize: Int(pendingSize) + batch.sizeInBytes,
                            lastOffset: header.lastOffset,
                            maxTimestamp: header.maxTimestamp,
                            config: state.config,
                            nowMs: nowMs
                        ))
                if rollNeeded {
                    if runLength > 0 {
                        try active.append(
                            bytes.getSlice(at: runStart, length: runLength)!,
                            batches: run,
                            stampEpoch: leaderEpoch,
                            indexIntervalBytes: state.config.indexIntervalBytes
                        )
                    }
                    runStart += runLength
                    runLength = 0
                    run = []
                    try self.roll(&state, baseOffset: baseOffset, nowMs: nowMs)
                }
                var positioned = header
                positioned.position = Int64(runLength)
                run.append(positioned)
                runLength += batch.sizeInBytes
                if info.firstOffset < 0 { info.firstOffset = baseOffset }
                info.lastOffset = header.lastOffset
                info.maxTimestamp = max(info.maxTimestamp, batch.maxTimestamp)
                info.batchCount += 1
                expectedNext = header.lastOffset + 1
                let epoch = header.partitionLeaderEpoch
                if epoch >= 0 { try state.epochCache.assign(epoch: epoch, startOffset: baseOffset) }
                if let producerBatch = header.producerBatch {
                    let previous = state.producers.apply(producerBatch)
                    if producersBefore.index(forKey: producerBatch.producerId) == nil {
                        producersBefore[producerBatch.producerId] = .some(previous)
                    }
                }
            }
            guard splitter.remainingBytes == 0 else {
                throw .invalidAppend(partition, "\(splitter.remainingBytes) bytes after the last whole batch")
            }
            if runLength > 0 {
                try state.segments.last!.append(
                    bytes.getSlice(at: runStart, length: runLength)!,
                    batches: run,
                    stampEpoch: leaderEpoch,
                    indexIntervalBytes: state.config.indexIntervalBytes
                )
            }
        } catch {
            // Undo: drop what this append wrote, so the log ends where it did, and its producer state.
            state.producers.restore(producersBefore, mapEndOffset: mapEndBefore)
            var rolledBack = true
            if state.segments.count == before.2 && state.segments.last!.size != before.1
                || state.segments.count != before.2
            {
                do {
                    try self.truncateLocked(&state, to: before.0, rebuildProducers: false)
                } catch {
                    rolledBack = false
                }
            }
            try? state.epochCache.truncate(fromEnd: before.0)
            rolledBack = rolledBack && state.nextOffset == before.0 && state.segments.last!.size == before.1
            // A transient failure (a full disk, no descriptor for a roll's new files) whose partial write was cut
            // back leaves the log exactly as it was: the append fails with KAFKA_STORAGE_ERROR (retriable) but the
            // partition stays online, so appends succeed again once space or descriptors are back. Kafka instead
            // takes the whole log dir offline on any IOException; we keep that for failed disk calls that may
            // have left the data wrong (EIO, a failed fsync) and for a rollback that did not complete.
            if error.errno != nil { throw self.takeOffline(&state, error, force: !rolledBack) }
            throw error
        }
        if info.batchCount > 0 {
            state.nextOffset = info.lastOffset + 1
            state.producers.updateMapEndOffset(state.nextOffset)
        }
        return info
    }

    // MARK: Rolling

    /// Starts a new segment at the log end (if the active one has data).
    public func roll(nowMs: Int64 = PartitionLog.nowMs()) throws(StorageError) {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            guard state.segments.last!.size > 0 else { return }
            try self.roll(&state, baseOffset: state.nextOffset, nowMs: nowMs)
        }
    }

    /// Kafka's roll: the old segment's indexes are finished, the producer state as of `baseOffset` is snapshotted
    /// (so a restart replays from here at most), and a new segment starts.
    func roll(_ state: inout State, baseOffset: Int64, nowMs: Int64) throws(StorageError) {
        let active = state.segments.last!
        state.producers.updateMapEndOffset(baseOffset)
        self.snapshotProducerState(state.producers)
        let segment: Segment
        do throws(StorageError) {
            try active.onBecomeInactive()
            segment = try Segment(
                directory: self.directory,
                baseOffset: baseOffset,
                indexCapacity: state.config.segmentIndexBytes,
                nowMs: nowMs
            )
        } catch {
            // The old segment stays the active one: give its indexes their append capacity back.
            try? active.onBecomeActive(indexCapacity: state.config.segmentIndexBytes)
            throw error
        }
        state.segments.append(segment)
        // The old active segment is now cold: it stays open (the background flush and consumers near the end use
        // it) until the budget needs its descriptors.
        self.budget?.chargeSegment(self, baseOffset: active.baseOffset, active: false)
        self.makeActive(segment)
        self.makeRoom(&state, sparing: nil)
        self.logger.debug("Rolled segment", metadata: ["baseOffset": "\(baseOffset)"])
    }

    // MARK: Segment files

    /// Charges `segment`, the new last one, as the active segment (never closed by the budget).
    private func makeActive(_ segment: Segment) {
        guard let budget = self.budget else { return }
        segment.account = Segment.Account(owner: self, budget: budget)
        if segment.isOpen { budget.chargeSegment(self, baseOffset: segment.baseOffset, active: true) }
    }

    /// Makes `segment`'s files usable: a cold segment closed by the budget is reopened (and charged, possibly
    /// closing other cold segments), an open one is stamped as just used.
    func use(_ state: inout State, _ segment: Segment) throws(StorageError) {
        guard segment !== state.segments.last else { return }
        if try segment.open() {
            self.makeRoom(&state, sparing: segment.baseOffset)
        } else {
            self.budget?.touchSegment(self, baseOffset: segment.baseOffset)
        }
    }

    /// The budget's step 1 from under this log's lock: its own victims are closed here, other logs' only if their
    /// lock is free (so two logs making room never wait on each other).
    private func makeRoom(_ state: inout State, sparing baseOffset: Int64?) {
        guard let budget = self.budget else { return }
        let spared = baseOffset.map { FileHandleBudget.SegmentKey(log: ObjectIdentifier(self), baseOffset: $0) }
        for (log, victim) in budget.coldSegmentVictims(sparing: spared) {
            if log === self {
                self.closeColdSegment(&state, baseOffset: victim)
            } else {
                log.closeColdSegmentIfIdle(baseOffset: victim)
            }
        }
    }

    /// Closes the files of the cold segment at `baseOffset` if nobody holds this log's lock (the budget's step 1).
    func closeColdSegmentIfIdle(baseOffset: Int64) {
        _ = self.state.withLockIfAvailable { state in self.closeColdSegment(&state, baseOffset: baseOffset) }
    }

    private func closeColdSegment(_ state: inout State, baseOffset: Int64) {
        let index = Self.segmentIndex(state.segments, containing: baseOffset)
        let segment = state.segments[index]
        guard segment.baseOffset == baseOffset else {
            self.budget?.releaseSegment(self, baseOffset: baseOffset)  // a stale charge: the segment is gone
            return
        }
        guard index < state.segments.count - 1 else {
            self.budget?.chargeSegment(self, baseOffset: baseOffset, active: true)
            return
        }
        do {
            try segment.closeFiles(evicted: true)
        } catch {
            self.logger.warning("Closing a cold segment failed", metadata: ["error": "\(error)"])
        }
    }

    /// Writes a producer snapshot at the state's map end offset. A failure (a full disk) is logged, not thrown:
    /// snapshots only shorten the replay at the next start, and the log itself is unaffected.
    private func snapshotProducerState(_ producers: ProducerStateManager) {
        do {
            try producers.takeSnapshot()
        } catch {
            self.logger.warning("Could not write a producer snapshot", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Reading

    /// Whole batches from the one holding `offset`: up to `maxBytes` (at least one batch if `minOneBatch`), only
    /// batches that end below `maxOffset` (the high watermark for consumers, the log end for followers), from one
    /// segment, as Kafka's fetch does.
    /// - Throws: `offsetOutOfRange` below the log start or above the log end.
    public func read(
        from offset: Int64,
        maxBytes: Int,
        maxOffset: Int64? = nil,
        minOneBatch: Bool = true
    ) throws(StorageError) -> LogReadInfo {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            guard offset >= state.logStartOffset, offset <= state.nextOffset else {
                throw .offsetOutOfRange(
                    "\(self.topicPartition)",
                    offset: offset,
                    logStartOffset: state.logStartOffset,
                    logEndOffset: state.nextOffset
                )
            }
            let bound = min(maxOffset ?? state.nextOffset, state.nextOffset)
            var info = LogReadInfo(range: nil, logStartOffset: state.logStartOffset, logEndOffset: state.nextOffset)
            var index = Self.segmentIndex(state.segments, containing: offset)
            while index < state.segments.count {
                do throws(StorageError) {
                    try self.use(&state, state.segments[index])
                    if let range = try state.segments[index].read(
                        from: offset,
                        maxBytes: maxBytes,
                        maxOffset: bound,
                        minOneBatch: minOneBatch
                    ) {
                        info.range = range
                        break
                    }
                } catch {
                    throw self.takeOffline(&state, error)
                }
                index += 1
            }
            return info
        }
    }

    /// The last segment whose base offset is <= `offset` (the first one if none is).
    static func segmentIndex(_ segments: [Segment], containing offset: Int64) -> Int {
        var low = 0
        var high = segments.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if segments[middle].baseOffset <= offset { low = middle } else { high = middle - 1 }
        }
        return low
    }

    // MARK: Look-ups

    /// ListOffsets: earliest, latest, max timestamp, or the first offset whose record timestamp is >= T (nil when
    /// every record is older). Reading inside a batch checks it first: a corrupt one takes the partition offline.
    public func offset(for spec: OffsetSpec) throws(StorageError) -> TimestampAndOffset? {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            switch spec {
            case .earliest:
                return TimestampAndOffset(
                    timestamp: -1,
                    offset: state.logStartOffset,
                    leaderEpoch: state.epochCache.epoch(forOffset: state.logStartOffset)
                )
            case .latest:
                return TimestampAndOffset(
                    timestamp: -1,
                    offset: state.nextOffset,
                    leaderEpoch: state.epochCache.latest?.epoch
                )
            case .maxTimestamp:
                guard
                    let segment = state.segments.filter({ $0.maxTimestampSoFar >= 0 })
                        .max(by: { $0.maxTimestampSoFar < $1.maxTimestampSoFar })
                else { return nil }
                return try self.find(&state, timestamp: segment.maxTimestampSoFar, from: [segment])
            case .timestamp(let timestamp):
                return try self.find(&state, timestamp: timestamp, from: state.segments)
            }
        }
    }

    /// ListOffsets v0's old-style offsets (Kafka's `legacyFetchOffsetsBefore`): each segment's base offset (the log
    /// start offset for the first) with the `.log` file's modification time, then the log end offset stamped
    /// `nowMs` when the active segment holds bytes. -1 (latest) starts from the last entry, -2 (earliest) and -4
    /// (earliest local) from the first, any other timestamp from the newest entry modified at or before it; at most
    /// `maxCount` offsets from there back, in descending order. Nothing matches (or `maxCount` is not positive): none.
    /// Only a timestamp look-up reads modification times, from the newest segment back to the first match.
    public func legacyOffsets(before timestamp: Int64, maxCount: Int, nowMs: Int64 = PartitionLog.nowMs())
        throws(StorageError) -> [Int64]
    {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            let segments = state.segments
            let hasLogEnd = segments.last.map { $0.size > 0 } ?? false
            let entryCount = segments.count + (hasLogEnd ? 1 : 0)
            func offset(_ index: Int) -> Int64 {
                index < segments.count ? max(segments[index].baseOffset, state.logStartOffset) : state.nextOffset
            }
            let start: Int
            switch timestamp {
            case -1: start = entryCount - 1
            case -2, -4: start = 0  // -4, the earliest local offset, is the earliest without tiered storage
            default:
                start =
                    (0..<entryCount).last { index in
                        (index < segments.count ? segments[index].lastModifiedMs : nowMs) <= timestamp
                    } ?? -1
            }
            let count = min(maxCount, start + 1)
            guard count > 0 else { return [] }
            // Entries ascend, so walking back from `start` gives Kafka's descending order.
            return stride(from: start, to: start - count, by: -1).map(offset)
        }
    }

    private func find(_ state: inout State, timestamp: Int64, from segments: [Segment]) throws(StorageError)
        -> TimestampAndOffset?
    {
        for segment in segments where segment.maxTimestampSoFar >= timestamp {
            do throws(StorageError) {
                try self.use(&state, segment)
                if let (found, offset) = try segment.findOffset(
                    byTimestamp: timestamp,
                    startingOffset: state.logStartOffset
                ) {
                    return TimestampAndOffset(
                        timestamp: found,
                        offset: offset,
                        leaderEpoch: state.epochCache.epoch(forOffset: offset)
                    )
                }
            } catch {
                throw self.takeOffline(&state, error)
            }
        }
        return nil
    }

    // MARK: Truncation

    /// Removes every batch from the one holding `offset` on (a follower truncating to its leader's epoch
    /// boundary), and rolls the epoch cache and producer state back with it (producer snapshots above the new end
    /// are deleted, the newest one below it reloaded and the rest replayed). Nothing happens if `offset` is at or
    /// past the log end.
    public func truncate(to offset: Int64) throws(StorageError) {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            guard offset < state.nextOffset else { return }
            try self.truncateLocked(&state, to: max(offset, state.logStartOffset))
        }
    }

    private func truncateLocked(_ state: inout State, to offset: Int64, rebuildProducers: Bool = true)
        throws(StorageError)
    {
        while state.segments.count > 1, state.segments.last!.baseOffset >= offset {
            let segment = state.segments.removeLast()
            self.scheduleDeletion(&state, segment)
        }
        state.truncations &+= 1
        let active = state.segments.last!
        if let batch = try active.findBatch(containing: offset) {
            try active.truncate(toPosition: batch.position, offset: batch.baseOffset)
        }
        try active.onBecomeActive(indexCapacity: state.config.segmentIndexBytes)
        self.makeActive(active)
        state.nextOffset = try active.nextOffset()
        state.recoveryPoint = min(state.recoveryPoint, state.nextOffset)
        try state.epochCache.truncate(fromEnd: state.nextOffset)
        if rebuildProducers {
            try Self.rebuildProducerState(
                state.producers,
                segments: state.segments,
                logStartOffset: state.logStartOffset,
                logEndOffset: state.nextOffset,
                nowMs: Self.nowMs()
            )
        } else {
            try state.producers.deleteSnapshots(after: state.nextOffset)
        }
    }

    /// Deletes every segment and starts the log empty at `offset` (a follower too far behind its leader's log
    /// start). The epoch cache and producer state are cleared.
    public func truncateFullyAndStart(at offset: Int64, nowMs: Int64 = PartitionLog.nowMs()) throws(StorageError) {
        try self.state.withLock { state throws(StorageError) in
            try self.checkOnline(state)
            for segment in state.segments { self.scheduleDeletion(&state, segment) }
            state.truncations &+= 1
            let segment = try Segment(
                directory: self.directory,
                baseOffset: offset,
                indexCapacity: state.config.segmentIndexBytes,
                nowMs: nowMs
            )
            state.segments = [segment]
            self.makeActive(segment)
            state.nextOffset = offset
            state.logStartOffset = offset
            state.recoveryPoint = offset
            try state.epochCache.clear()
            try state.producers.truncateFully(at: offset)
        }
    }

    /// Renames the segment's files `.deleted` and queues them for unlinking after `file.delete.delay.ms` from
    /// `nowMs`, so a fetch already sending the file completes.
    func scheduleDeletion(_ state: inout State, _ segment: Segment, nowMs: Int64 = PartitionLog.nowMs()) {
        do {
            let paths = try segment.renameForDeletion()
            state.pendingDeletes.append((nowMs + state.config.fileDeleteDelayMs, paths))
        } catch {
            self.logger.warning("Could not rename a deleted segment", metadata: ["error": "\(error)"])
        }
    }

    /// Unlinks `.deleted` files whose delay (`file.delete.delay.ms`) has passed; LogManager calls it periodically.
    public func deleteExpiredFiles(nowMs: Int64 = PartitionLog.nowMs()) {
        self.state.withLock { state in
            let due = state.pendingDeletes.filter { $0.deadlineMs <= nowMs }
            state.pendingDeletes.removeAll { $0.deadlineMs <= nowMs }
            for (_, paths) in due {
                for path in paths { try? FileIO.unlink(path) }
            }
        }
    }

    /// Retries the writes that a transient failure deferred (the `leader-epoch-checkpoint` after a change on a full
    /// disk); LogManager calls it periodically. A failure is logged, and retried next time.
    public func retryDeferredWrites() {
        self.state.withLock { state in
            guard state.offlineReason == nil, state.epochCache.needsFlush else { return }
            do throws(StorageError) {
                try state.epochCache.flushIfNeeded()
            } catch {
                _ = self.takeOffline(&state, error)
            }
            if !state.epochCache.needsFlush {
                self.logger.info("Wrote a leader-epoch-checkpoint whose earlier write had failed")
            }
        }
    }

    // MARK: Durability

    /// fsyncs the segments holding offsets from the recovery point up to `offset` (exclusive; nil: the log end),
    /// then moves the recovery point to `offset` (Kafka's `flushUptoOffsetExclusive`). After a roll the caller
    /// passes the new active segment's base offset, so only the rolled segments are synced, not the active tail.
    /// The fsyncs run without the log's lock, so appends and reads go on meanwhile: the bytes they cover were
    /// written before they start. A failed fsync takes the partition offline.
    public func flush(upTo offset: Int64? = nil) throws(StorageError) {
        let plan = try self.state.withLock { state throws(StorageError) -> ([Segment.SyncTarget], Int64, UInt64)? in
            try self.checkOnline(state)
            let end = min(offset ?? state.nextOffset, state.nextOffset)
            guard end > state.recoveryPoint else { return nil }
            // An epoch entry written without fsync must be on disk before batches of its epoch fall below the
            // recovery point, where recovery no longer reads them.
            try state.epochCache.syncIfNeeded()
            var targets: [Segment.SyncTarget] = []
            var index = Self.segmentIndex(state.segments, containing: state.recoveryPoint)
            while index < state.segments.count, state.segments[index].baseOffset < end {
                targets.append(state.segments[index].syncTarget())
                index += 1
            }
            // The producer snapshot a roll wrote at `end` (Kafka flushes it with the rolled segments), if any.
            let snapshot = self.directory.appending(Segment.fileName(end, ".snapshot"))
            targets.append(Segment.SyncTarget(log: nil, paths: [snapshot]))
            return (targets, end, state.truncations)
        }
        guard let (targets, end, truncations) = plan else { return }
        do throws(StorageError) {
            for target in targets { try target.sync() }
            // New segment and snapshot files are entries of the directory: sync it too, as Kafka's LocalLog.flush.
            try FileIO.syncDirectory(self.directory)
        } catch {
            self.state.withLock { state in _ = self.takeOffline(&state, error) }
            throw error
        }
        self.state.withLock { state in
            if state.truncations == truncations && end > state.recoveryPoint { state.recoveryPoint = end }
        }
    }

    /// Closes the segments (indexes trimmed, the final time index entry written) and snapshots the producer state
    /// at the log end, so a clean restart replays nothing. Pending `.deleted` files are unlinked now. The object
    /// must not be used afterwards.
    public func close() throws(StorageError) {
        try self.state.withLock { state throws(StorageError) in
            if state.offlineReason == nil {
                state.producers.updateMapEndOffset(state.nextOffset)
                self.snapshotProducerState(state.producers)
                // Still unwritten (a full disk): the next start cuts the stale file to the log's bounds.
                try? state.epochCache.flushIfNeeded()
            }
            for segment in state.segments { try segment.close() }
            self.budget?.releaseAll(ObjectIdentifier(self))
            for (_, paths) in state.pendingDeletes {
                for path in paths { try? FileIO.unlink(path) }
            }
            state.pendingDeletes = []
        }
    }
}
