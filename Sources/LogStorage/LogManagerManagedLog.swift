import KafkaWire
import Logging
import NIOCore
import Synchronization
import SystemPackage

/// One partition as `LogManager` hands it out: its `PartitionLog` when open, and what the manager must know about it
/// while its files are closed (bounds, recovery point, high watermark, the flush policy's counters).
///
/// The `PartitionLog` closes its cold segments' files itself when the `FileHandleBudget` asks. Only when that is not
/// enough does the budget close an idle log's files altogether; `withLog` reopens it (a clean open: no recovery
/// scan, since closing wrote the indexes and the producer snapshot) and pins it while `body` runs, so a
/// `PartitionLog` must not be kept past `withLog`. `appendAsLeader` / `appendAsFollower` apply the durability
/// policy (`flush.messages`, and a background fsync of the segments below a newly rolled one).
///
/// Thread-safe: state behind one `Mutex`, held while the log is opened or closed, not while `body` runs. Every
/// method may make blocking disk calls: call them from a `DiskIOPool` thread.
public final class ManagedLog: Sendable {
    public let topicPartition: TopicPartition
    /// The log directory (`log.dirs` entry) holding this partition's directory.
    public let logDirectory: FilePath
    private let budget: FileHandleBudget
    private let policy: FlushPolicy
    private let logger: Logger
    private let state: Mutex<State>
    private let lastUseStamp = Atomic<UInt64>(0)

    /// The broker-wide defaults for a topic's `flush.messages` / `flush.ms`, and where background fsyncs run.
    struct FlushPolicy: Sendable {
        var intervalMessages: Int64
        var intervalMs: Int64
        var background: @Sendable (@escaping @Sendable () -> Void) -> Void
    }

    private struct State: ~Copyable {
        var log: PartitionLog?
        var config: LogConfig
        var pins = 0
        var deleted = false
        var recoveryPoint: Int64
        var logStartOffset: Int64
        var logEndOffset: Int64
        var highWatermark: Int64
        var segmentCount: Int
        var lastSegmentBaseOffset: Int64
        /// The segments' bytes, as of the last time the log was open.
        var size: Int64
        /// What `partition.metadata` says, once read or written.
        var topicID: KafkaUUID?
        /// Messages appended since the last fsync, and when that was.
        var unflushedMessages: Int64 = 0
        var lastFlushMs: Int64
        var backgroundFlushQueued = false
        /// The base offset of the newest rolled-to segment: the queued background flush syncs up to it.
        var backgroundFlushTarget: Int64 = 0
        /// The closed log's `leader-epoch-checkpoint` was written without fsync and no sync was confirmed: a flush
        /// of the closed log syncs it first (as `PartitionLog.flush` does for an open one).
        var epochCheckpointAwaitingSync = false
    }

    init(
        log: PartitionLog,
        logDirectory: FilePath,
        config: LogConfig,
        highWatermark: Int64?,
        topicID: KafkaUUID? = nil,
        budget: FileHandleBudget,
        policy: FlushPolicy,
        logger: Logger
    ) {
        self.topicPartition = log.topicPartition
        self.logDirectory = logDirectory
        self.budget = budget
        self.policy = policy
        self.logger = logger
        let bases = log.segmentBaseOffsets
        let end = log.logEndOffset
        self.state = Mutex(
            State(
                log: log,
                config: config,
                recoveryPoint: log.recoveryPoint,
                logStartOffset: log.logStartOffset,
                logEndOffset: end,
                highWatermark: min(max(highWatermark ?? 0, log.logStartOffset), end),
                segmentCount: bases.count,
                lastSegmentBaseOffset: bases.last ?? 0,
                size: log.size,
                topicID: topicID,
                lastFlushMs: PartitionLog.nowMs()
            )
        )
        self.lastUseStamp.store(budget.tick(), ordering: .relaxed)
        budget.registerLog(self)
    }

    deinit {
        self.budget.unregisterLog(ObjectIdentifier(self), evicted: false)
    }

    var lastUse: UInt64 { self.lastUseStamp.load(ordering: .relaxed) }

    /// The partition's directory, `<log dir>/<topic>-<partition>`.
    public var directory: FilePath { self.logDirectory.appending(self.topicPartition.directoryName) }
    public var config: LogConfig { self.state.withLock { $0.config } }
    /// Whether the log's files are open now (false after the budget closed them).
    public var isOpen: Bool { self.state.withLock { $0.log != nil } }
    public var recoveryPoint: Int64 { self.state.withLock { $0.log?.recoveryPoint ?? $0.recoveryPoint } }
    public var logStartOffset: Int64 { self.state.withLock { $0.log?.logStartOffset ?? $0.logStartOffset } }
    public var logEndOffset: Int64 { self.state.withLock { $0.log?.logEndOffset ?? $0.logEndOffset } }
    /// Whether the partition is offline (unreadable bookkeeping or a failed disk call): its calls fail with
    /// KAFKA_STORAGE_ERROR.
    public var isOffline: Bool { self.state.withLock { $0.log?.isOffline ?? false } }
    /// The bytes of the segments' `.log` files (DescribeLogDirs' partition size), without opening a closed log.
    public var sizeInBytes: Int64 { self.state.withLock { $0.log?.size ?? $0.size } }
    /// The topic id in `partition.metadata`: what the log manager found there at start-up, or what `assignTopicID`
    /// read or wrote since; nil for a directory without the file.
    public var topicID: KafkaUUID? { self.state.withLock { $0.topicID } }

    /// From now on the log obeys `config`: the next append, roll, flush decision and retention check use it. A log
    /// whose files are closed keeps it and opens with it.
    public func updateConfig(_ config: LogConfig) {
        self.state.withLock { state in
            state.config = config
            state.log?.updateConfig(config)
        }
    }

    /// Records the partition's topic id in `partition.metadata` (Kafka's format, written atomically) unless it is
    /// there already.
    /// - Throws: `inconsistentTopicID` when the file names another id (the directory belongs to another topic of
    ///   the same name); `corruptCheckpoint` for an unreadable file.
    public func assignTopicID(_ id: KafkaUUID) throws(StorageError) {
        let path = self.directory.appending(PartitionMetadataFile.fileName)
        try self.state.withLock { state throws(StorageError) in
            guard !state.deleted else { throw .partitionOffline("\(self.topicPartition)", "the log was deleted") }
            var recorded = state.topicID
            // An offline log's unreadable file stays as found: the directory may belong to another topic.
            if recorded == nil, state.log?.isOffline == true { return }
            if recorded == nil { recorded = try PartitionMetadataFile.read(path) }
            if let found = recorded {
                state.topicID = found
                guard found == id else { throw .inconsistentTopicID(path, expected: id, found: found) }
                return
            }
            try PartitionMetadataFile.write(id, to: path)
            state.topicID = id
        }
    }

    /// The high watermark the replica layer last set (what `replication-offset-checkpoint` records); at start-up,
    /// the checkpointed value clamped to the log's bounds.
    public var highWatermark: Int64 {
        get { self.state.withLock { $0.highWatermark } }
        set { self.state.withLock { $0.highWatermark = newValue } }
    }

    // MARK: Using the log

    /// Runs `body` with the open log, reopening its files if the budget had closed them; the log is not closed
    /// while `body` runs. `body` must not keep the `PartitionLog`.
    /// - Throws: `partitionOffline` if the partition was deleted; what reopening or `body` throws.
    public func withLog<T>(_ body: (PartitionLog) throws(StorageError) -> T) throws(StorageError) -> T {
        let (log, reopened) = try self.pin()
        if reopened { self.budget.enforce(sparing: self) }
        defer { self.unpin(log) }
        return try body(log)
    }

    private func pin() throws(StorageError) -> (PartitionLog, Bool) {
        self.lastUseStamp.store(self.budget.tick(), ordering: .relaxed)
        return try self.state.withLock { state throws(StorageError) in
            guard !state.deleted else { throw .partitionOffline("\(self.topicPartition)", "the log was deleted") }
            state.pins += 1
            if let log = state.log { return (log, false) }
            do throws(StorageError) {
                let log = try PartitionLog(
                    logDirectory: self.logDirectory,
                    topicPartition: self.topicPartition,
                    config: state.config,
                    recoveryPoint: state.recoveryPoint,
                    logStartOffset: state.logStartOffset,
                    hadCleanShutdown: true,
                    budget: self.budget,
                    logger: self.logger
                )
                state.log = log
                state.segmentCount = log.segmentBaseOffsets.count
                if state.epochCheckpointAwaitingSync { log.markLeaderEpochCheckpointAwaitingSync() }
                self.budget.registerLog(self)
                return (log, true)
            } catch {
                state.pins -= 1
                throw error
            }
        }
    }

    private func unpin(_ log: PartitionLog) {
        let bases = log.segmentBaseOffsets
        let rolled: Bool = self.state.withLock { state in
            state.pins -= 1
            let rolled = (bases.last ?? 0) > state.lastSegmentBaseOffset && bases.count > 1
            state.segmentCount = bases.count
            state.lastSegmentBaseOffset = bases.last ?? 0
            if state.deleted && state.pins == 0, let open = state.log {
                try? open.close()
                state.log = nil
            }
            return rolled
        }
        if self.budget.isOverLimit { self.budget.enforce(sparing: self) }
        if rolled, let newActive = bases.last { self.scheduleBackgroundFlush(upTo: newActive) }
    }

    /// Appends as leader (`PartitionLog.appendAsLeader`), then applies the flush policy: an fsync once
    /// `flush.messages` messages are unflushed, and a background fsync when the append rolled a segment (the
    /// recovery point then moves past it).
    public func appendAsLeader(
        _ batches: ByteBuffer,
        leaderEpoch: Int32,
        nowMs: Int64 = PartitionLog.nowMs()
    ) throws(StorageError) -> LogAppendInfo {
        let info = try self.withLog { (log) throws(StorageError) in
            try log.appendAsLeader(batches, leaderEpoch: leaderEpoch, nowMs: nowMs)
        }
        try self.afterAppend(info, nowMs: nowMs)
        return info
    }

    /// Appends as follower (`PartitionLog.appendAsFollower`), with the same flush policy as `appendAsLeader`.
    public func appendAsFollower(_ batches: ByteBuffer, nowMs: Int64 = PartitionLog.nowMs()) throws(StorageError)
        -> LogAppendInfo
    {
        let info = try self.withLog { (log) throws(StorageError) in try log.appendAsFollower(batches, nowMs: nowMs) }
        try self.afterAppend(info, nowMs: nowMs)
        return info
    }

    private func afterAppend(_ info: LogAppendInfo, nowMs: Int64) throws(StorageError) {
        guard info.batchCount > 0 else { return }
        let due = self.state.withLock { state in
            state.unflushedMessages += info.lastOffset - info.firstOffset + 1
            return state.unflushedMessages >= self.effectiveFlushMessages(state.config)
        }
        if due { try self.flush(nowMs: nowMs) }
    }

    private func effectiveFlushMessages(_ config: LogConfig) -> Int64 {
        config.flushMessages != Int64.max ? config.flushMessages : self.policy.intervalMessages
    }

    private func effectiveFlushMs(_ config: LogConfig) -> Int64 {
        config.flushMs != Int64.max ? config.flushMs : self.policy.intervalMs
    }

    // MARK: Durability

    /// fsyncs the log from its recovery point and moves the recovery point to the log end. A closed log's
    /// files are synced without reopening it.
    public func flush(nowMs: Int64 = PartitionLog.nowMs()) throws(StorageError) {
        try self.flush(upTo: nil, nowMs: nowMs)
    }

    /// fsyncs the segments holding offsets from the recovery point up to `offset` (exclusive; nil: the log end)
    /// and moves the recovery point there (`PartitionLog.flush(upTo:)`). Only a flush to the log end counts for
    /// `flush.messages` / `flush.ms`.
    public func flush(upTo offset: Int64?, nowMs: Int64 = PartitionLog.nowMs()) throws(StorageError) {
        let log: PartitionLog? = try self.state.withLock { state throws(StorageError) in
            guard !state.deleted else { return nil }
            if let log = state.log {
                state.pins += 1
                return log
            }
            let end = min(offset ?? state.logEndOffset, state.logEndOffset)
            if state.recoveryPoint < end {
                if state.epochCheckpointAwaitingSync {
                    let path = self.directory.appending(LeaderEpochCache.fileName)
                    let fd = try FileIO.open(path, .readOnly)
                    defer { FileIO.close(fd) }
                    try FileIO.sync(fd, path: path)
                    try FileIO.syncDirectory(self.directory)
                    state.epochCheckpointAwaitingSync = false
                }
                try Self.syncFiles(in: self.directory, from: state.recoveryPoint, upTo: end)
                state.recoveryPoint = end
            }
            if offset == nil {
                state.unflushedMessages = 0
                state.lastFlushMs = nowMs
            }
            return nil
        }
        guard let log else { return }
        defer { self.unpin(log) }
        try log.flush(upTo: offset)
        let recoveryPoint = log.recoveryPoint
        self.state.withLock { state in
            if offset == nil {
                state.unflushedMessages = 0
                state.lastFlushMs = nowMs
            }
            state.recoveryPoint = recoveryPoint
        }
    }

    /// fsyncs a closed log's segment files holding offsets from `offset` up to `end` (exclusive), without opening
    /// a `PartitionLog`.
    private static func syncFiles(in directory: FilePath, from offset: Int64, upTo end: Int64) throws(StorageError) {
        var logs: [Int64] = []
        for name in try FileIO.listDirectory(directory) {
            if let base = Loader.baseOffset(of: name, suffix: ".log") { logs.append(base) }
        }
        logs.sort()
        let first = logs.lastIndex { $0 <= offset } ?? 0
        for base in logs[first...] where base < end {
            for suffix in [".log", ".index", ".timeindex"] {
                let path = directory.appending(Segment.fileName(base, suffix))
                guard FileIO.exists(path) else { continue }
                let fd = try FileIO.open(path, .readOnly)
                defer { FileIO.close(fd) }
                try FileIO.sync(fd, path: path)
            }
        }
    }

    /// Queues an fsync of the segments below `offset` (the new active segment's base) on the background pool after
    /// a roll, as Kafka's roll schedules `flushUptoOffsetExclusive`; one queued job covers every roll before it
    /// runs. The active segment is not synced: the recovery point moves to `offset`.
    private func scheduleBackgroundFlush(upTo offset: Int64) {
        let queue = self.state.withLock { state in
            guard !state.deleted else { return false }
            state.backgroundFlushTarget = max(state.backgroundFlushTarget, offset)
            guard !state.backgroundFlushQueued else { return false }
            state.backgroundFlushQueued = true
            return true
        }
        guard queue else { return }
        self.policy.background { [self] in
            let target = self.state.withLock { state in
                state.backgroundFlushQueued = false
                return state.backgroundFlushTarget
            }
            do {
                try self.flush(upTo: target)
            } catch {
                self.logger.error("Background flush of a rolled segment failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// The periodic part of the flush policy: an fsync if `flush.ms` has passed since the last one and messages
    /// are unflushed; a background fsync if a segment rolled since the last look (appends made directly on the
    /// `PartitionLog` inside `withLog` are seen here). Also unlinks `.deleted` files whose delay has passed and
    /// retries a checkpoint write that a full disk deferred.
    func periodicMaintenance(nowMs: Int64) {
        let (log, flushDue): (PartitionLog?, Bool) = self.state.withLock { state in
            guard !state.deleted else { return (nil, false) }
            let due = state.unflushedMessages > 0 && nowMs - state.lastFlushMs >= self.effectiveFlushMs(state.config)
            guard let log = state.log else { return (nil, due) }
            state.pins += 1
            return (log, due)
        }
        if let log {
            log.deleteExpiredFiles(nowMs: nowMs)
            log.retryDeferredWrites()
            self.unpin(log)
        }
        if flushDue {
            do {
                try self.flush(nowMs: nowMs)
            } catch {
                self.logger.error("Scheduled flush failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Kafka's retention check for this log: segments past `retention.ms` / `retention.bytes` (with
    /// `cleanup.policy=delete`) or below the log start go, never at or above the high watermark; producer ids idle
    /// for `producer.id.expiration.ms` are forgotten. A log closed by the budget is reopened for it.
    func enforceRetention(nowMs: Int64) {
        let highWatermark = self.highWatermark
        let timeAndSize = self.config.deletesOldSegments
        do {
            try self.withLog { log throws(StorageError) in
                log.removeExpiredProducers(nowMs: nowMs)
                try log.deleteOldSegments(
                    nowMs: nowMs,
                    highWatermark: highWatermark,
                    timeAndSize: timeAndSize
                )
            }
        } catch {
            self.logger.error(
                "Retention check failed",
                metadata: ["partition": "\(self.topicPartition)", "error": "\(error)"]
            )
        }
    }

    // MARK: Leader epochs of a batch of elections

    /// `PartitionLog.assignLeaderEpochAwaitingSync` on the log. A log the budget closed is not reopened for it
    /// (with thousands of partitions over the descriptor budget, a start would open and close every log again):
    /// its `leader-epoch-checkpoint` gets the entry at the log end it had when it closed, written the same way. A
    /// damaged file is left to the log's open, which rebuilds it from the batches.
    public func assignLeaderEpochAwaitingSync(_ leaderEpoch: Int32) throws(StorageError) -> UInt64? {
        let closed: UInt64?? = try self.state.withLock { state throws(StorageError) -> UInt64?? in
            guard !state.deleted else { throw .partitionOffline("\(self.topicPartition)", "the log was deleted") }
            guard state.log == nil else { return .none }
            let path = self.directory.appending(LeaderEpochCache.fileName)
            let (cache, damaged) = try LeaderEpochCache.loadOrReset(path: path, logger: self.logger)
            guard !damaged else { return .none }
            try cache.assign(epoch: leaderEpoch, startOffset: state.logEndOffset, durable: false)
            guard cache.awaitingSync else { return .some(nil) }
            state.epochCheckpointAwaitingSync = true
            return .some(LeaderEpochCache.anyWrite)
        }
        if let closed { return closed }
        return try self.withLog { (log) throws(StorageError) in try log.assignLeaderEpochAwaitingSync(leaderEpoch) }
    }

    /// A sync of the log's file system that began after `assignLeaderEpochAwaitingSync` returned `token`
    /// succeeded. A log closed meanwhile is not reopened for it.
    public func confirmLeaderEpochSynced(_ token: UInt64) {
        self.state.withLock { state in
            if let log = state.log {
                log.confirmLeaderEpochSynced(token)
            } else {
                state.epochCheckpointAwaitingSync = false
            }
        }
    }

    /// Writes `leader-epoch-checkpoint` with fsync if it awaits a sync (the batch's file-system sync failed).
    public func syncLeaderEpochCheckpoint() throws(StorageError) {
        try self.withLog { (log) throws(StorageError) in try log.syncLeaderEpochCheckpoint() }
        self.state.withLock { $0.epochCheckpointAwaitingSync = false }
    }

    // MARK: Offline

    /// Brings back a log that went offline, for an operator who fixed the cause (ElectLeaders on the partition): the
    /// log is opened anew as after an unclean stop, so its tail past the recovery point is checked and cut at the
    /// first torn batch, and its indexes are rebuilt where they fail their check. The offline `PartitionLog` is
    /// dropped, not closed (closing writes index entries); callers still inside `withLog` finish with it, and it
    /// refuses everything. Nothing happens to an online log.
    /// - Returns: whether the log was offline and is now online.
    /// - Throws: what opening throws, or `partitionOffline` if the new log is offline again (corruption below the
    ///   recovery point that the index check found).
    public func reopenIfOffline() throws(StorageError) -> Bool {
        try self.state.withLock { state throws(StorageError) in
            guard !state.deleted, let offline = state.log, offline.isOffline else { return false }
            Self.remember(offline, in: &state)
            let log = try PartitionLog(
                logDirectory: self.logDirectory,
                topicPartition: self.topicPartition,
                config: state.config,
                recoveryPoint: state.recoveryPoint,
                logStartOffset: state.logStartOffset,
                hadCleanShutdown: false,
                budget: self.budget,
                logger: self.logger
            )
            state.log = log
            Self.remember(log, in: &state)
            state.highWatermark = min(max(state.highWatermark, log.logStartOffset), log.logEndOffset)
            state.segmentCount = log.segmentBaseOffsets.count
            state.lastSegmentBaseOffset = log.segmentBaseOffsets.last ?? 0
            if let reason = log.offlineReason { throw .partitionOffline("\(self.topicPartition)", reason) }
            self.logger.info("Reopened an offline partition", metadata: ["partition": "\(self.topicPartition)"])
            return true
        }
    }

    /// Takes the partition offline after a failure that may have left its files wrong (a follower's truncation
    /// that failed midway), so later calls fail fast with KAFKA_STORAGE_ERROR until `reopenIfOffline`; nothing is
    /// deleted. A log whose files are closed has nothing half done, and stays as it is.
    public func takeOffline(_ error: StorageError) {
        let log = self.state.withLock { $0.log }
        log?.takeOffline(error)
    }

    // MARK: Closing

    /// Closes the files if no caller is using the log and it is online (the budget's eviction).
    func closeIfIdle() {
        self.state.withLock { state in
            guard let log = state.log, state.pins == 0, !state.deleted, !log.isOffline else { return }
            Self.remember(log, in: &state)
            do {
                try log.close()
            } catch {
                self.logger.warning("Closing a cold log failed", metadata: ["error": "\(error)"])
            }
            state.log = nil
            self.budget.unregisterLog(ObjectIdentifier(self), evicted: true)
        }
    }

    private static func remember(_ log: PartitionLog, in state: inout State) {
        state.epochCheckpointAwaitingSync = log.leaderEpochCheckpointAwaitingSync
        state.recoveryPoint = log.recoveryPoint
        state.logStartOffset = log.logStartOffset
        state.logEndOffset = log.logEndOffset
        state.size = log.size
    }

    /// The three checkpoint values: (recovery point, log start offset, high watermark).
    func checkpointOffsets() -> (recoveryPoint: Int64, logStartOffset: Int64, highWatermark: Int64) {
        self.state.withLock { state in
            if let log = state.log { Self.remember(log, in: &state) }
            return (min(state.recoveryPoint, state.logEndOffset), state.logStartOffset, state.highWatermark)
        }
    }

    /// Clean shutdown: closes the log (writing its indexes and producer snapshot). Call after `flush`.
    func close() throws(StorageError) {
        try self.state.withLock { state throws(StorageError) in
            guard let log = state.log else { return }
            Self.remember(log, in: &state)
            state.log = nil
            self.budget.unregisterLog(ObjectIdentifier(self), evicted: false)
            try log.close()
        }
    }

    /// The clean stop closed the log and synced its file system: everything up to the log end is durable.
    func markFlushedAfterClose() {
        self.state.withLock { state in
            guard state.log == nil else { return }
            state.recoveryPoint = state.logEndOffset
            state.epochCheckpointAwaitingSync = false
        }
    }

    /// Deletion: later calls fail; the files are closed now, or by the last caller still using them.
    func markDeleted() {
        self.state.withLock { state in
            state.deleted = true
            if state.pins == 0, let log = state.log {
                try? log.close()
                state.log = nil
            }
            self.budget.unregisterLog(ObjectIdentifier(self), evicted: false)
        }
    }
}
