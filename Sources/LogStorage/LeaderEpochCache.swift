import Logging
import SystemPackage

/// One leader epoch and the first offset appended under it.
public struct EpochEntry: Hashable, Sendable, CustomStringConvertible {
    public var epoch: Int32
    public var startOffset: Int64

    public init(epoch: Int32, startOffset: Int64) {
        self.epoch = epoch
        self.startOffset = startOffset
    }

    public var description: String { "EpochEntry(epoch=\(self.epoch), startOffset=\(self.startOffset))" }
}

/// A partition's leader-epoch cache (KIP-101): which epoch started at which offset, kept in `leader-epoch-checkpoint`
/// (`0`, count, then `epoch startOffset` lines) and rewritten on every change, as Kafka's `LeaderEpochFileCache`
/// does. Epochs and start offsets both strictly increase. It answers OffsetForLeaderEpoch (`endOffset(for:)`) and
/// moves with the log: appends assign, truncation removes from the end or the start.
///
/// Not thread-safe: used under `PartitionLog`'s lock.
public final class LeaderEpochCache {
    public static let fileName = "leader-epoch-checkpoint"
    public let path: FilePath
    public private(set) var entries: [EpochEntry]

    /// Loads the checkpoint at `path` (empty if the file does not exist).
    public init(path: FilePath) throws(StorageError) {
        self.path = path
        var entries: [EpochEntry] = []
        for (number, fields) in (try CheckpointFile.read(path, fieldCount: 2) ?? []).enumerated() {
            guard let epoch = Int32(fields[0]), let offset = Int64(fields[1]), epoch >= 0, offset >= 0 else {
                throw .corruptCheckpoint(path, line: number + 3, "bad entry \"\(fields.joined(separator: " "))\"")
            }
            entries.append(EpochEntry(epoch: epoch, startOffset: offset))
        }
        self.entries = entries
    }

    /// An empty cache that will be written to `path`.
    private init(emptyAt path: FilePath) {
        self.path = path
        self.entries = []
    }

    /// Loads the checkpoint at `path`; a malformed one is not fatal: the returned cache is empty and `damaged`
    /// true, and the caller rebuilds it from the batches (`rebuild(from:)`). A failed disk call still throws.
    static func loadOrReset(path: FilePath, logger: Logger) throws(StorageError) -> (LeaderEpochCache, damaged: Bool) {
        do {
            return (try LeaderEpochCache(path: path), false)
        } catch let error where error.isCorruptCheckpoint {
            logger.warning(
                "Malformed leader-epoch-checkpoint; rebuilding it from the batches' leader epochs",
                metadata: ["file": "\(path)", "error": "\(error)"]
            )
            return (LeaderEpochCache(emptyAt: path), true)
        }
    }

    /// Rebuilds the cache from the leader epoch stamped on every batch in `segments` from `logStartOffset` to
    /// `logEndOffset` (the first batch of each epoch starts it), and writes the file. Reads batch headers only;
    /// segments opened for this close again, except the last.
    func rebuild(from segments: [Segment], logStartOffset: Int64, logEndOffset: Int64) throws(StorageError) {
        self.entries = []
        for (number, segment) in segments.enumerated() {
            // A segment wholly before the log start holds no batch to read.
            if number + 1 < segments.count && segments[number + 1].baseOffset <= logStartOffset { continue }
            let wasOpen = segment.isOpen
            try segment.forEachBatchHeader(from: logStartOffset) { (header) throws(StorageError) in
                guard header.lastOffset >= logStartOffset, header.baseOffset < logEndOffset,
                    header.partitionLeaderEpoch >= 0
                else { return }
                if let latest = self.entries.last, header.partitionLeaderEpoch <= latest.epoch { return }
                self.entries.append(
                    EpochEntry(epoch: header.partitionLeaderEpoch, startOffset: max(header.baseOffset, logStartOffset))
                )
            }
            if !wasOpen && segment !== segments.last { _ = try segment.closeFiles() }
        }
        try self.flush()
    }

    public var latest: EpochEntry? { self.entries.last }
    public var earliest: EpochEntry? { self.entries.first }

    /// Records that `epoch` starts at `startOffset`. Nothing changes if `epoch` is already the latest (its first
    /// offset stands) or older than it. Entries that conflict (an older epoch starting at or after `startOffset`)
    /// are removed, as Kafka's `assign` does, and a warning is due from the caller when it returns true for those.
    ///
    /// Without `durable` the file is rewritten without fsync and `awaitingSync` is set: the caller makes it durable
    /// with one sync of the file system for many partitions (a batch of elections), then `confirmSynced`.
    @discardableResult
    public func assign(epoch: Int32, startOffset: Int64, durable: Bool = true) throws(StorageError) -> Bool {
        if let latest = self.latest, epoch <= latest.epoch { return false }
        let before = self.entries
        self.entries.removeAll { $0.startOffset >= startOffset }
        self.entries.append(EpochEntry(epoch: epoch, startOffset: startOffset))
        if self.entries != before {
            if durable { try self.flush() } else { try self.writeAwaitingSync() }
        }
        return true
    }

    /// Whether the file was last written without fsync (`assign(durable: false)`) and no sync has been confirmed
    /// since. `PartitionLog.flush` syncs it (`syncIfNeeded`) before its recovery point moves, so no batch below a
    /// recovery point ever lacks its epoch entry on disk; after a crash the batches past the recovery point give
    /// back any entry lost with the unsynced file.
    public private(set) var awaitingSync = false
    /// Counts writes of the file, so `confirmSynced` does not confirm a write made after the sync began.
    public private(set) var writeCount: UInt64 = 0

    private func writeAwaitingSync() throws(StorageError) {
        do throws(StorageError) {
            try CheckpointFile.write(self.path, lines: self.lines, durable: false)
            self.writeCount &+= 1
            self.needsFlush = false
            self.awaitingSync = true
        } catch let error where error.isTransient {
            self.needsFlush = true
        }
    }

    /// A sync of the file system that began after write number `writeCount` completed: that write is durable.
    /// `anyWrite` confirms whatever the file holds (it was written by another cache object, before the sync).
    public func confirmSynced(writeCount: UInt64) {
        if self.writeCount == writeCount || writeCount == Self.anyWrite { self.awaitingSync = false }
    }

    /// The `confirmSynced` token for a write made by another cache object of the same file.
    public static let anyWrite = UInt64.max

    /// The file as read was written without fsync by another cache object (see `awaitingSync`).
    func markAwaitingSync() {
        self.awaitingSync = true
    }

    /// Writes the file again with fsync if it is awaiting a sync. Unlike `flush`, a transient failure is thrown:
    /// the caller must not move a recovery point over batches whose epoch entry may not be on disk.
    public func syncIfNeeded() throws(StorageError) {
        guard self.awaitingSync else { return }
        try CheckpointFile.write(self.path, lines: self.lines)
        self.writeCount &+= 1
        self.awaitingSync = false
        self.needsFlush = false
    }

    private var lines: [String] { self.entries.map { "\($0.epoch) \($0.startOffset)" } }

    /// Removes every entry starting at or after `endOffset` (the log was truncated to end there).
    ///
    /// Without `durable` the file is rewritten without fsync, as Kafka's `truncateFromEndAsyncFlush` flushes it in
    /// the background: an entry the crash brings back lies past the log end and is cut again by the next load
    /// (the loader's cut after an unclean stop, where thousands of partitions would otherwise fsync in turn).
    public func truncate(fromEnd endOffset: Int64, durable: Bool = true) throws(StorageError) {
        let count = self.entries.count
        self.entries.removeAll { $0.startOffset >= endOffset }
        guard self.entries.count != count else { return }
        if durable {
            try self.flush()
        } else {
            do throws(StorageError) {
                try CheckpointFile.write(self.path, lines: self.lines, durable: false)
                self.writeCount &+= 1
                self.needsFlush = false
            } catch let error where error.isTransient {
                self.needsFlush = true
            }
        }
    }

    /// The log start moved to `startOffset`: entries wholly before it go, and the one in force there is moved up to
    /// start at it.
    public func truncate(fromStart startOffset: Int64) throws(StorageError) {
        guard let first = self.entries.first, first.startOffset < startOffset else { return }
        let inForce = self.entries.lastIndex { $0.startOffset <= startOffset }!
        self.entries.removeFirst(inForce)
        self.entries[0].startOffset = startOffset
        try self.flush()
    }

    /// Empties the cache (the log was emptied).
    public func clear() throws(StorageError) {
        guard !self.entries.isEmpty else { return }
        self.entries = []
        try self.flush()
    }

    /// The epoch of the batch holding `offset`, by the cache: the last entry starting at or before it.
    public func epoch(forOffset offset: Int64) -> Int32? {
        self.entries.last { $0.startOffset <= offset }?.epoch
    }

    /// OffsetForLeaderEpoch's answer (KIP-101, KIP-279), as Kafka's `LeaderEpochFileCache.endOffsetFor` gives it:
    /// - `requested` is -1, above every epoch, or the cache is empty: (-1, -1), unknown;
    /// - it is the latest epoch: (it, `logEndOffset`), since it is still being written;
    /// - it is below every epoch: (`requested`, the first entry's start offset): that history was deleted, and the
    ///   caller should go on from where the log starts;
    /// - otherwise the largest epoch at or below it and the start offset of the first epoch above it.
    public func endOffset(for requested: Int32, logEndOffset: Int64) -> (epoch: Int32, endOffset: Int64) {
        let unknown: (epoch: Int32, endOffset: Int64) = (-1, -1)
        guard requested >= 0, let latest = self.entries.last else { return unknown }
        if requested == latest.epoch { return (requested, logEndOffset) }
        guard let higher = self.entries.first(where: { $0.epoch > requested }) else { return unknown }
        guard let floor = self.entries.last(where: { $0.epoch <= requested }) else {
            return (requested, higher.startOffset)
        }
        return (floor.epoch, higher.startOffset)
    }

    /// Whether the entries changed since the file last took them: a write that failed transiently (a full disk,
    /// no descriptor) leaves the cache changed in memory and is retried by `flushIfNeeded` (the log's periodic
    /// work, its close, the next change). A stale file is safe: the loader cuts it to the log's bounds at start-up.
    public private(set) var needsFlush = false

    /// Writes the file. A transient failure is not thrown but remembered (`needsFlush`): a checkpoint that cannot
    /// be written on a full disk must not fail the operation that changed it (DeleteRecords, retention, a new
    /// leader epoch), nor take the partition offline. Other failures (EIO) are thrown.
    public func flush() throws(StorageError) {
        do throws(StorageError) {
            try CheckpointFile.write(self.path, lines: self.lines)
            self.writeCount &+= 1
            self.needsFlush = false
            self.awaitingSync = false
        } catch let error where error.isTransient {
            self.needsFlush = true
        }
    }

    /// Retries a write that failed transiently; nothing to do otherwise.
    public func flushIfNeeded() throws(StorageError) {
        if self.needsFlush { try self.flush() }
    }
}
