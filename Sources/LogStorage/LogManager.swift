import Dispatch
import KafkaWire
import Logging
import Synchronization
import SystemPackage

#if canImport(Glibc)
    import Glibc
#endif

/// The broker-level storage settings `LogManager` takes (Kafka's `log.*` server settings).
///
/// A value type; thread-safe.
public struct LogManagerConfig: Sendable {
    /// `log.dirs`: one or more directories, each holding partition directories and its own checkpoints.
    public var logDirectories: [FilePath]
    /// The cluster and node this broker is: checked against (or written to) each directory's `meta.properties`.
    /// nil only checks that an existing file can be read.
    public var metaProperties: MetaProperties?
    /// The log config of partitions found at start-up, per topic (topic overrides over broker defaults).
    public var topicConfig: @Sendable (String) -> LogConfig
    /// `log.flush.interval.messages`: fsync once this many messages are unflushed (off: Int64.max). A topic's
    /// `flush.messages` overrides it.
    public var flushIntervalMessages: Int64
    /// `log.flush.interval.ms`: fsync when the last fsync is this old and messages are unflushed (off: Int64.max).
    /// A topic's `flush.ms` overrides it.
    public var flushIntervalMs: Int64
    /// `log.flush.offset.checkpoint.interval.ms`: how often `recovery-point-offset-checkpoint` (and with it
    /// `replication-offset-checkpoint`) is written. Default 60,000.
    public var checkpointIntervalMs: Int64
    /// `log.flush.start.offset.checkpoint.interval.ms`: how often `log-start-offset-checkpoint` is written.
    /// Default 60,000.
    public var logStartOffsetCheckpointIntervalMs: Int64
    /// `log.retention.check.interval.ms`: how often retention and producer-id expiry run over every log.
    public var retentionCheckIntervalMs: Int64
    /// `num.recovery.threads.per.data.dir`: threads loading (and recovering) partitions at start-up, per directory.
    public var recoveryThreadsPerDirectory: Int
    /// The file descriptors open segments may hold (`FileHandleBudget`); default half of `ulimit -n`.
    public var fileHandleLimit: Int
    /// The log cleaner of compacted topics (`log.cleaner.*`).
    public var cleaner = LogCleaner.Configuration()

    public init(
        logDirectories: [FilePath],
        metaProperties: MetaProperties? = nil,
        topicConfig: @escaping @Sendable (String) -> LogConfig = { _ in LogConfig() },
        flushIntervalMessages: Int64 = Int64.max,
        flushIntervalMs: Int64 = Int64.max,
        checkpointIntervalMs: Int64 = 60_000,
        logStartOffsetCheckpointIntervalMs: Int64 = 60_000,
        retentionCheckIntervalMs: Int64 = 300_000,
        recoveryThreadsPerDirectory: Int = 2,
        fileHandleLimit: Int = FileHandleBudget.defaultLimit()
    ) {
        self.logDirectories = logDirectories
        self.metaProperties = metaProperties
        self.topicConfig = topicConfig
        self.flushIntervalMessages = flushIntervalMessages
        self.flushIntervalMs = flushIntervalMs
        self.checkpointIntervalMs = checkpointIntervalMs
        self.logStartOffsetCheckpointIntervalMs = logStartOffsetCheckpointIntervalMs
        self.retentionCheckIntervalMs = retentionCheckIntervalMs
        self.recoveryThreadsPerDirectory = recoveryThreadsPerDirectory
        self.fileHandleLimit = fileHandleLimit
    }
}

/// A log directory that cannot be used: start-up stops with this, naming the directory and why.
///
/// A value type; thread-safe.
public struct LogDirectoryError: Error, Sendable, CustomStringConvertible {
    public let directory: FilePath
    public let underlying: StorageError

    public var description: String { "Log directory \(self.directory) is unusable: \(self.underlying)" }
}

/// All partition logs of a broker, over one or more log directories (Kafka's `LogManager`).
///
/// Start-up (`init`): per directory, takes the `.lock` (flock), checks `meta.properties`, reads the checkpoints and
/// whether `.kafka_cleanshutdown` exists, then loads every `<topic>-<partition>` directory on a pool of
/// `recoveryThreadsPerDirectory` threads per directory, each with its recovery point, log start offset and the topic
/// id in its `partition.metadata`; after an unclean stop each scans only past its recovery point. Then the marker is
/// removed, so a crash from here on is recovered. Leftover `-delete` directories are removed in the background. An
/// unusable directory stops start-up with `LogDirectoryError` naming it.
///
/// Damaged bookkeeping is repaired, never fatal, and never deletes data (each repair logs a warning naming the file):
/// a malformed `recovery-point-offset-checkpoint` makes every log of its directory recover from its start after a
/// crash (after a clean stop, whose marker says every log was flushed, each recovery point is its log end); a malformed `log-start-offset-checkpoint` is rebuilt from the logs (each starts at
/// its first segment's base offset); a malformed `replication-offset-checkpoint` takes each high watermark from its
/// log end (the ISR is this broker alone). The repaired files are written before `init` returns. A malformed
/// `partition.metadata` takes that partition alone offline (KAFKA_STORAGE_ERROR): its topic id is unknown, so it is
/// neither served nor rewritten. (`PartitionLog` rebuilds a malformed `leader-epoch-checkpoint` itself.)
///
/// Running: `getOrCreateLog`, `log(for:)`, `deleteLog`; `runPeriodicTasks` (or `run`) writes the recovery-point and
/// replication-offset checkpoints every `checkpointIntervalMs`, the log-start-offset checkpoint every
/// `logStartOffsetCheckpointIntervalMs`, and applies `flush.ms`. Clean stop (`shutdown`): every log flushed and
/// closed, checkpoints written, then the marker, then the locks released. A manager dropped without `shutdown`
/// releases its locks and nothing else, as a killed process would.
///
/// Thread-safe: the partition map is behind a `Mutex`, checkpoint writes are serialised by another. Every method
/// makes blocking disk calls: call them from the `DiskIOPool`, never from an event loop.
public final class LogManager: Sendable {
    public static let cleanShutdownFileName = ".kafka_cleanshutdown"

    public let config: LogManagerConfig
    /// The descriptor budget shared by all logs.
    public let budget: FileHandleBudget
    /// Compacts the logs of compacted topics.
    public let cleaner: LogCleaner
    private let ioPool: DiskIOPool
    private let logger: Logger
    private let locks: [LogDirectoryLock]
    private let state: Mutex<State>
    /// Serialises checkpoint writes; holds when each kind was last written.
    private let checkpointState = Mutex<CheckpointTimes>(CheckpointTimes())
    /// When retention last ran; the first check runs one interval after start, as Kafka's scheduler does.
    private let lastRetentionCheck = Mutex<Int64>(PartitionLog.nowMs())
    /// What start-up found, for operators and tests.
    public let startupReport: StartupReport

    /// When the periodic checkpoints were last written.
    private struct CheckpointTimes {
        var recoveryPointsMs: Int64 = 0
        var logStartOffsetsMs: Int64 = 0
    }

    /// Which offset checkpoint files a `checkpoint` call writes.
    public struct CheckpointKinds: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// `recovery-point-offset-checkpoint`.
        public static let recoveryPoints = CheckpointKinds(rawValue: 1)
        /// `log-start-offset-checkpoint`.
        public static let logStartOffsets = CheckpointKinds(rawValue: 2)
        /// `replication-offset-checkpoint`.
        public static let highWatermarks = CheckpointKinds(rawValue: 4)
        public static let all: CheckpointKinds = [.recoveryPoints, .logStartOffsets, .highWatermarks]
    }

    private struct State: ~Copyable {
        var logs: [TopicPartition: ManagedLog] = [:]
        var isShutDown = false
        var locksReleased = false
    }

    /// What `init` found per directory.
    public struct StartupReport: Sendable {
        /// Directories where `.kafka_cleanshutdown` existed (their logs were opened without a recovery scan).
        public var cleanShutdownDirectories: [FilePath]
        public var loadedPartitions: Int
        /// `-delete` directories found and being removed in the background.
        public var pendingDeletions: Int
        /// Bookkeeping files found malformed and repaired (checkpoints, `leader-epoch-checkpoint` excepted).
        public var repairedFiles: [FilePath] = []
        /// Partitions loaded offline because their `partition.metadata` could not be read.
        public var offlinePartitions: [TopicPartition] = []
    }

    /// Opens every log directory and loads its partitions (see the type's documentation).
    /// - Parameter ioPool: where background fsyncs, checkpoint writes and deleted directories' removal run.
    /// - Throws: `LogDirectoryError` naming the first unusable directory or partition; locks already taken are
    ///   released.
    public init(config: LogManagerConfig, ioPool: DiskIOPool, logger: Logger = Logger(label: "LogStorage.LogManager"))
        throws(LogDirectoryError)
    {
        self.config = config
        self.ioPool = ioPool
        self.logger = logger
        self.budget = FileHandleBudget(limit: config.fileHandleLimit)
        self.cleaner = LogCleaner(configuration: config.cleaner, directories: config.logDirectories, logger: logger)
        var locks: [LogDirectoryLock] = []
        var loaded: [TopicPartition: ManagedLog] = [:]
        var cleanDirectories: [FilePath] = []
        var deletions: [FilePath] = []
        var repaired: [FilePath] = []
        var offline: [TopicPartition] = []
        let policy = ManagedLog.FlushPolicy(
            intervalMessages: config.flushIntervalMessages,
            intervalMs: config.flushIntervalMs,
            background: { job in ioPool.execute(job) }
        )
        do throws(LogDirectoryError) {
            for directory in config.logDirectories {
                func check<T>(_ body: () throws(StorageError) -> T) throws(LogDirectoryError) -> T {
                    do { return try body() } catch { throw LogDirectoryError(directory: directory, underlying: error) }
                }
                try check { () throws(StorageError) in
                    try FileIO.makeDirectories(directory)
                    guard FileIO.isDirectory(directory) else { throw .io("open log dir", directory, .notDirectory) }
                    guard FileIO.isWritable(directory) else {
                        throw .io("open log dir", directory, .permissionDenied)
                    }
                }
                locks.append(try check { () throws(StorageError) in try LogDirectoryLock(directory: directory) })
                try check { () throws(StorageError) in
                    if let meta = config.metaProperties {
                        try meta.ensure(in: directory)
                    } else {
                        _ = try MetaProperties.read(in: directory)
                    }
                }
                let hadCleanShutdown = FileIO.exists(directory.appending(Self.cleanShutdownFileName))
                if hadCleanShutdown { cleanDirectories.append(directory) }
                let checkpoints = try check { () throws(StorageError) in
                    try Self.readCheckpoints(directory, hadCleanShutdown: hadCleanShutdown, logger: logger)
                }
                repaired += checkpoints.damaged
                var partitions: [TopicPartition] = []
                for name in try check({ () throws(StorageError) in try FileIO.listDirectory(directory) }) {
                    let path = directory.appending(name)
                    guard FileIO.isDirectory(path) else { continue }
                    if name.hasSuffix("-delete") {
                        deletions.append(path)
                    } else if let partition = TopicPartition(directoryName: name), !name.contains(".") {
                        guard loaded[partition] == nil else {
                            throw LogDirectoryError(
                                directory: directory,
                                underlying: .io("load \(partition): also in another log dir", path, .fileExists)
                            )
                        }
                        partitions.append(partition)
                    }
                }
                let logs = try Self.load(
                    partitions,
                    in: directory,
                    checkpoints: checkpoints,
                    hadCleanShutdown: hadCleanShutdown,
                    config: config,
                    budget: self.budget,
                    policy: policy,
                    logger: logger
                )
                for log in logs {
                    loaded[log.topicPartition] = log
                    if log.isOffline { offline.append(log.topicPartition) }
                }
                // From here a crash must be recovered: the marker goes before anything is appended.
                try check { () throws(StorageError) in
                    if hadCleanShutdown {
                        try FileIO.unlink(directory.appending(Self.cleanShutdownFileName))
                        try FileIO.syncDirectory(directory)
                    }
                }
            }
        } catch {
            for lock in locks { lock.unlock() }
            throw error
        }
        self.locks = locks
        self.state = Mutex(State(logs: loaded))
        self.startupReport = StartupReport(
            cleanShutdownDirectories: cleanDirectories,
            loadedPartitions: loaded.count,
            pendingDeletions: deletions.count,
            repairedFiles: repaired,
            offlinePartitions: offline.sorted()
        )
        let now = PartitionLog.nowMs()
        self.checkpointState.withLock { $0 = CheckpointTimes(recoveryPointsMs: now, logStartOffsetsMs: now) }
        if !repaired.isEmpty {
            // The malformed files are replaced now, not at the next interval.
            do {
                try self.checkpoint()
            } catch {
                logger.error("Rewriting repaired offset checkpoints failed", metadata: ["error": "\(error)"])
            }
        }
        for path in deletions { self.removeInBackground(path) }
        logger.info(
            "Loaded logs",
            metadata: [
                "partitions": "\(loaded.count)", "cleanShutdown": "\(cleanDirectories.map(\.string))",
                "openLogs": "\(self.budget.openLogs)",
            ]
        )
    }

    /// A manager dropped without `shutdown` acts as a killed process: the locks go, nothing is flushed or marked.
    deinit {
        self.releaseLocks()
    }

    private func releaseLocks() {
        let release = self.state.withLock { state in
            defer { state.locksReleased = true }
            return !state.locksReleased
        }
        if release { for lock in self.locks { lock.unlock() } }
    }

    private struct Checkpoints {
        var recoveryPoints: [TopicPartition: Int64] = [:]
        var logStartOffsets: [TopicPartition: Int64] = [:]
        var highWatermarks: [TopicPartition: Int64] = [:]
        /// The malformed files, read as empty.
        var damaged: [FilePath] = []
        var recoveryPointsDamaged = false
        var highWatermarksDamaged = false
    }

    /// The directory's three offset checkpoints. A malformed one reads as empty, with a warning naming it and what
    /// replaces it; a failed disk call still throws (the directory is unusable).
    private static func readCheckpoints(
        _ directory: FilePath,
        hadCleanShutdown: Bool,
        logger: Logger
    ) throws(StorageError) -> Checkpoints {
        var checkpoints = Checkpoints()
        func read(_ name: String, _ repair: String) throws(StorageError) -> [TopicPartition: Int64]? {
            let path = directory.appending(name)
            do {
                return try OffsetCheckpointFile(path).read()
            } catch let error where error.isCorruptCheckpoint {
                logger.warning(
                    "Malformed \(name); \(repair)",
                    metadata: ["file": "\(path)", "error": "\(error)"]
                )
                checkpoints.damaged.append(path)
                return nil
            }
        }
        // After a clean stop every log was flushed whole, so nothing needs scanning; after a crash nothing says what
        // was flushed, so every log is scanned from its start.
        let recoveryRepair =
            hadCleanShutdown
            ? "the clean-shutdown marker says every log was flushed: each recovery point is its log end"
            : "every log of this directory recovers from its start"
        if let offsets = try read(OffsetCheckpointFile.recoveryPoint, recoveryRepair) {
            checkpoints.recoveryPoints = offsets
        } else {
            checkpoints.recoveryPointsDamaged = true
        }
        checkpoints.logStartOffsets =
            try read(OffsetCheckpointFile.logStartOffset, "each log starts at its first segment's base offset") ?? [:]
        if let offsets = try read(
            OffsetCheckpointFile.replicationOffset,
            "each high watermark is taken from its log end offset"
        ) {
            checkpoints.highWatermarks = offsets
        } else {
            checkpoints.highWatermarksDamaged = true
        }
        return checkpoints
    }

    /// Loads `partitions` of one directory on `recoveryThreadsPerDirectory` threads (loading is disk-bound: after an
    /// unclean stop each partition reads its tail, and with many partitions opening files dominates).
    private static func load(
        _ partitions: [TopicPartition],
        in directory: FilePath,
        checkpoints: Checkpoints,
        hadCleanShutdown: Bool,
        config: LogManagerConfig,
        budget: FileHandleBudget,
        policy: ManagedLog.FlushPolicy,
        logger: Logger
    ) throws(LogDirectoryError) -> [ManagedLog] {
        guard !partitions.isEmpty else { return [] }
        let results = Mutex<[Result<ManagedLog, StorageError>]>([])
        let pool = DiskIOPool(threadCount: max(1, min(config.recoveryThreadsPerDirectory, partitions.count)))
        for partition in partitions {
            pool.execute {
                let result = Result { () throws(StorageError) -> ManagedLog in
                    let logConfig = config.topicConfig(partition.topic)
                    // Without its topic id the directory may belong to another topic of the same name: the partition
                    // is loaded (so nothing creates a log over it) but offline, and the others are served.
                    let metadataPath = directory.appending(partition.directoryName)
                        .appending(PartitionMetadataFile.fileName)
                    var topicID: KafkaUUID?
                    var metadataError: StorageError?
                    do throws(StorageError) {
                        topicID = try PartitionMetadataFile.read(metadataPath)
                    } catch {
                        logger.warning(
                            "Unreadable partition.metadata; partition offline until the file is repaired",
                            metadata: ["file": "\(metadataPath)", "partition": "\(partition)", "error": "\(error)"]
                        )
                        metadataError = error
                    }
                    let log = try PartitionLog(
                        logDirectory: directory,
                        topicPartition: partition,
                        config: logConfig,
                        recoveryPoint: checkpoints.recoveryPointsDamaged && hadCleanShutdown
                            ? Int64.max : checkpoints.recoveryPoints[partition] ?? 0,
                        logStartOffset: checkpoints.logStartOffsets[partition] ?? 0,
                        hadCleanShutdown: hadCleanShutdown,
                        budget: budget,
                        logger: logger
                    )
                    if let metadataError { log.takeOffline(metadataError) }
                    let managed = ManagedLog(
                        log: log,
                        logDirectory: directory,
                        config: logConfig,
                        highWatermark: checkpoints.highWatermarksDamaged
                            ? log.logEndOffset : checkpoints.highWatermarks[partition],
                        topicID: topicID,
                        budget: budget,
                        policy: policy,
                        logger: logger
                    )
                    budget.enforce(sparing: managed)
                    return managed
                }
                results.withLock { $0.append(result) }
            }
        }
        pool.shutdown()
        var logs: [ManagedLog] = []
        var failure: StorageError?
        for result in results.withLock({ $0 }) {
            switch result {
            case .success(let log): logs.append(log)
            case .failure(let error): failure = failure ?? error
            }
        }
        if let failure {
            for log in logs { log.markDeleted() }
            throw LogDirectoryError(directory: directory, underlying: failure)
        }
        return logs
    }

    // MARK: Partitions

    /// Every partition, in no particular order.
    public var allLogs: [ManagedLog] { self.state.withLock { Array($0.logs.values) } }

    /// The partition's log, nil if this broker has none.
    public func log(for partition: TopicPartition) -> ManagedLog? {
        self.state.withLock { $0.logs[partition] }
    }

    /// Applies `config` to every log of `topic` (a topic config changed).
    public func updateConfig(topic: String, _ config: LogConfig) {
        for log in self.allLogs where log.topicPartition.topic == topic { log.updateConfig(config) }
    }

    /// The total and available bytes of the file system holding `directory` (DescribeLogDirs), nil if unknown.
    public func diskSpace(of directory: FilePath) -> (total: Int64, usable: Int64)? {
        var stats = statvfs()
        guard directory.withPlatformString({ statvfs($0, &stats) }) == 0 else { return nil }
        let unit = Int64(stats.f_frsize)
        return (Int64(stats.f_blocks) * unit, Int64(stats.f_bavail) * unit)
    }

    /// The partition's log, created empty if it does not exist, in the log directory holding the fewest partitions.
    /// `config` applies to a new log only.
    public func getOrCreateLog(topic: String, partition: Int32, config: LogConfig) throws(StorageError) -> ManagedLog {
        let topicPartition = TopicPartition(topic, partition)
        let created: ManagedLog = try self.state.withLock { state throws(StorageError) in
            guard !state.isShutDown else { throw .partitionOffline("\(topicPartition)", "the log manager stopped") }
            if let existing = state.logs[topicPartition] { return existing }
            var counts: [FilePath: Int] = [:]
            for directory in self.config.logDirectories { counts[directory] = 0 }
            for log in state.logs.values { counts[log.logDirectory, default: 0] += 1 }
            let directory = self.config.logDirectories.min { counts[$0]! < counts[$1]! }!
            let log = try PartitionLog(
                logDirectory: directory,
                topicPartition: topicPartition,
                config: config,
                budget: self.budget,
                logger: self.logger
            )
            try FileIO.syncDirectory(directory)
            let managed = ManagedLog(
                log: log,
                logDirectory: directory,
                config: config,
                highWatermark: 0,
                budget: self.budget,
                policy: self.flushPolicy,
                logger: self.logger
            )
            state.logs[topicPartition] = managed
            return managed
        }
        self.budget.enforce(sparing: created)
        return created
    }

    private var flushPolicy: ManagedLog.FlushPolicy {
        let pool = self.ioPool
        return ManagedLog.FlushPolicy(
            intervalMessages: self.config.flushIntervalMessages,
            intervalMs: self.config.flushIntervalMs,
            background: { job in pool.execute(job) }
        )
    }

    /// Deletes the partition's log: its directory is renamed `<topic>-<partition>.<id>-delete` at once (so the
    /// name can be created again) and removed in the background after the log's `file.delete.delay.ms`
    /// (`log.segment.delete.delay.ms`), as Kafka's `asyncDelete` does, so reads in flight finish; one still there
    /// at the next start is removed then. Callers still inside `withLog` finish first.
    /// - Returns: the renamed directory, nil if there was no such log.
    @discardableResult
    public func deleteLog(_ partition: TopicPartition) throws(StorageError) -> FilePath? {
        guard let log = self.state.withLock({ $0.logs.removeValue(forKey: partition) }) else { return nil }
        log.markDeleted()
        self.cleaner.forget(partition)
        var id = ""
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<16 {
            let byte = UInt8.random(in: 0...255, using: &generator)
            id += String(byte >> 4, radix: 16) + String(byte & 0xF, radix: 16)
        }
        let renamed = log.logDirectory.appending("\(partition.directoryName).\(id)-delete")
        try FileIO.rename(log.directory, to: renamed)
        try FileIO.syncDirectory(log.logDirectory)
        self.removeInBackground(renamed, afterMs: log.config.fileDeleteDelayMs)
        return renamed
    }

    private func removeInBackground(_ path: FilePath, afterMs delay: Int64 = 0) {
        let (logger, pool) = (self.logger, self.ioPool)
        let remove: @Sendable () -> Void = {
            do {
                try Self.removeTree(path)
            } catch {
                logger.warning("Could not remove a deleted log directory", metadata: ["error": "\(error)"])
            }
        }
        guard delay > 0 else {
            _ = pool.execute(remove)
            return
        }
        // A Dispatch timer, not a sleeping task: the cooperative pool may be busy for longer than the delay.
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(delay))) {
            // A pool already stopped leaves the directory to the next start.
            _ = pool.execute(remove)
        }
    }

    /// Removes a directory and everything under it.
    static func removeTree(_ path: FilePath) throws(StorageError) {
        for name in try FileIO.listDirectory(path) {
            let child = path.appending(name)
            if FileIO.isDirectory(child) { try Self.removeTree(child) } else { try FileIO.unlink(child) }
        }
        try FileIO.removeDirectory(path)
    }

    // MARK: Checkpoints and periodic work

    /// Writes `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint` and `replication-offset-checkpoint`
    /// (those of `kinds`) in every log directory, from the logs' current values (high watermarks as the caller last
    /// set them).
    public func checkpoint(_ kinds: CheckpointKinds = .all) throws(StorageError) {
        try self.checkpointState.withLock { last throws(StorageError) in
            var byDirectory: [FilePath: [ManagedLog]] = [:]
            for directory in self.config.logDirectories { byDirectory[directory] = [] }
            for log in self.allLogs { byDirectory[log.logDirectory, default: []].append(log) }
            for (directory, logs) in byDirectory {
                var recoveryPoints: [TopicPartition: Int64] = [:]
                var logStartOffsets: [TopicPartition: Int64] = [:]
                var highWatermarks: [TopicPartition: Int64] = [:]
                for log in logs {
                    let offsets = log.checkpointOffsets()
                    recoveryPoints[log.topicPartition] = offsets.recoveryPoint
                    logStartOffsets[log.topicPartition] = offsets.logStartOffset
                    highWatermarks[log.topicPartition] = offsets.highWatermark
                }
                if kinds.contains(.recoveryPoints) {
                    try OffsetCheckpointFile(directory.appending(OffsetCheckpointFile.recoveryPoint))
                        .write(recoveryPoints)
                }
                if kinds.contains(.logStartOffsets) {
                    try OffsetCheckpointFile(directory.appending(OffsetCheckpointFile.logStartOffset))
                        .write(logStartOffsets)
                }
                if kinds.contains(.highWatermarks) {
                    try OffsetCheckpointFile(directory.appending(OffsetCheckpointFile.replicationOffset))
                        .write(highWatermarks)
                }
            }
            let now = PartitionLog.nowMs()
            if kinds.contains(.recoveryPoints) { last.recoveryPointsMs = now }
            if kinds.contains(.logStartOffsets) { last.logStartOffsetsMs = now }
        }
    }

    /// One round of periodic work: per log the `flush.ms` policy, background fsync of rolled segments and unlinking
    /// of expired `.deleted` files; retention when due; a log cleaner round when due; then the recovery-point and
    /// replication-offset checkpoints if `checkpointIntervalMs` has passed since they were last written, and the
    /// log-start-offset checkpoint if `logStartOffsetCheckpointIntervalMs` has.
    public func runPeriodicTasks(nowMs: Int64 = PartitionLog.nowMs()) {
        for log in self.allLogs { log.periodicMaintenance(nowMs: nowMs) }
        let retentionDue = self.lastRetentionCheck.withLock { last in
            guard nowMs - last >= self.config.retentionCheckIntervalMs else { return false }
            last = nowMs
            return true
        }
        if retentionDue {
            for log in self.allLogs { log.enforceRetention(nowMs: nowMs) }
        }
        self.cleaner.runIfDue(self.allLogs, directories: self.config.logDirectories, nowMs: nowMs)
        let due: CheckpointKinds = self.checkpointState.withLock { last in
            var kinds: CheckpointKinds = []
            if nowMs - last.recoveryPointsMs >= self.config.checkpointIntervalMs {
                kinds.formUnion([.recoveryPoints, .highWatermarks])
            }
            if nowMs - last.logStartOffsetsMs >= self.config.logStartOffsetCheckpointIntervalMs {
                kinds.insert(.logStartOffsets)
            }
            return kinds
        }
        if !due.isEmpty {
            do {
                try self.checkpoint(due)
            } catch {
                self.logger.error("Writing offset checkpoints failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Runs `runPeriodicTasks` on the I/O pool every `tickMs` (shorter when a checkpoint interval is) until the task
    /// is cancelled or the manager stops.
    public func run(tickMs: Int64 = 1_000) async {
        let intervals = [tickMs, self.config.checkpointIntervalMs, self.config.logStartOffsetCheckpointIntervalMs]
        let tickMs = max(100, intervals.min()!)
        while !Task.isCancelled && !self.state.withLock({ $0.isShutDown }) {
            try? await Task.sleep(for: .milliseconds(tickMs))
            guard !Task.isCancelled else { return }
            _ = try? await self.ioPool.run { [self] in self.runPeriodicTasks() }
        }
    }

    /// Makes everything written so far under the log directories durable: one `syncfs` per directory (through its
    /// `.lock`, held since start-up, so a writeback error since then is reported), for many files written without
    /// fsync (a batch of elections' `leader-epoch-checkpoint`s, the clean stop's closes) at the cost of one call.
    public func syncLogDirectories() throws(StorageError) {
        for lock in self.locks { try lock.syncFileSystem() }
    }

    // MARK: Clean stop

    /// Clean stop: every log closed (indexes trimmed, producer snapshots written), then everything made durable at
    /// once with one `syncfs` per directory instead of an fsync per file (Kafka flushes each log in turn; with
    /// thousands of partitions that is tens of thousands of fsyncs), then each recovery point moved to its log end,
    /// the three checkpoints written, then `.kafka_cleanshutdown` in each directory, then the locks released. The
    /// next start opens every log without a recovery scan.
    /// - Throws: the first failure; the marker is then not written, so the next start recovers.
    public func shutdown() throws(StorageError) {
        let logs: [ManagedLog] = self.state.withLock { state in
            guard !state.isShutDown else { return [] }
            state.isShutDown = true
            return Array(state.logs.values)
        }
        defer { self.releaseLocks() }
        var failure: StorageError?
        // Partitions loaded offline for their partition.metadata took no appends: there is nothing to flush, and
        // they must not make every other log's stop unclean. A log that went offline since cannot be flushed.
        let loadedOffline = Set(self.startupReport.offlinePartitions)
        for log in logs where log.isOffline && !loadedOffline.contains(log.topicPartition) {
            failure = failure ?? .partitionOffline("\(log.topicPartition)", "offline at the clean stop")
        }
        // Closing trims two index files per log, and freeing their preallocated blocks waits on the device: more
        // threads than cores keep it busy.
        let began = ContinuousClock.now
        Self.closeAll(logs, threads: 16) { (error) in failure = failure ?? error }
        let closed = ContinuousClock.now
        do {
            try Self.retryingTransientFailures { () throws(StorageError) in try self.syncLogDirectories() }
            if failure == nil {
                for log in logs where !loadedOffline.contains(log.topicPartition) { log.markFlushedAfterClose() }
            }
        } catch {
            failure = failure ?? error
        }
        let milliseconds = { (duration: Duration) in
            duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        }
        self.logger.info(
            "Closed the logs and synced their file systems",
            metadata: [
                "closeMs": "\(milliseconds(closed - began))", "syncMs": "\(milliseconds(ContinuousClock.now - closed))",
            ]
        )
        do {
            try self.checkpoint()
        } catch let error where error.isTransient {
            // A full disk: the logs are flushed and closed, so the marker stands; the next start reads the older
            // checkpoints, whose recovery points only matter after an unclean stop.
            self.logger.warning("Offset checkpoints not written at the clean stop", metadata: ["error": "\(error)"])
        } catch {
            failure = failure ?? error
        }
        if let failure {
            self.logger.error("Unclean stop: no clean-shutdown marker written", metadata: ["error": "\(failure)"])
            throw failure
        }
        for directory in self.config.logDirectories {
            try Self.retryingTransientFailures { () throws(StorageError) in
                try FileIO.writeAtomically(directory.appending(Self.cleanShutdownFileName), [UInt8]())
            }
        }
        self.logger.info("Logs closed cleanly", metadata: ["partitions": "\(logs.count)"])
    }

    /// Closes `logs` on `threads` threads (each close trims two index files and writes a producer snapshot);
    /// `failed` hears of each failure, on the calling thread.
    private static func closeAll(_ logs: [ManagedLog], threads: Int, failed: (StorageError) -> Void) {
        guard !logs.isEmpty else { return }
        let failures = Mutex<[StorageError]>([])
        let pool = DiskIOPool(threadCount: max(1, min(threads, logs.count)))
        let chunk = max(1, logs.count / (max(1, threads) * 4))
        for start in stride(from: 0, to: logs.count, by: chunk) {
            let part = logs[start..<min(start + chunk, logs.count)]
            pool.execute {
                for log in part {
                    do throws(StorageError) {
                        try Self.retryingTransientFailures { () throws(StorageError) in try log.close() }
                    } catch {
                        failures.withLock { $0.append(error) }
                    }
                }
            }
        }
        pool.shutdown()
        for error in failures.withLock({ $0 }) { failed(error) }
    }

    /// Runs `body`, again after 100 ms while it fails transiently (no descriptor: the connections a stop is closing
    /// still hold them), for at most 3 s; then its failure is thrown. For the clean stop's fsyncs and marker.
    private static func retryingTransientFailures(_ body: () throws(StorageError) -> Void) throws(StorageError) {
        var attempts = 0
        while true {
            do throws(StorageError) {
                return try body()
            } catch let error where error.isTransient && attempts < 30 {
                attempts += 1
                usleep(100_000)
            }
        }
    }
}
