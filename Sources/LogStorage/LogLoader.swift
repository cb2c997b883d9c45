import Logging
import SystemPackage

/// Opens a partition directory's segments at start-up, recovering after an unclean stop (Kafka's `LogLoader`):
///
/// 1. a cleaner's swap interrupted by a crash is completed: a `<base>.log.swap` replaces `<base>.log` and its
///    indexes (rebuilt below); leftovers go: `.deleted`, `.cleaned` and `.tmp` files, and index files without their
///    `.log`;
/// 2. after an unclean stop, every segment from the one holding the recovery point on is re-read batch by batch
///    (size, CRC, record walk); the first torn or corrupt batch and everything after it is cut, with a log line
///    naming the file, the position and the offsets dropped;
/// 3. below the recovery point nothing is read, except a segment whose index is missing or fails its sanity
///    check, which is rebuilt; corruption found there takes the partition offline and deletes nothing;
/// 4. the epoch cache is cut to the resulting log end (after a clean stop, an epoch starting at the end stays) and
///    log start;
/// 5. every segment but the last closes its files again (`Segment.closeFiles`), so a partition holds one segment's
///    descriptors until a read needs an older one.
///
/// A value used once by `PartitionLog.init`; not thread-safe.
struct Loader {
    let directory: FilePath
    let config: LogConfig
    let epochCache: LeaderEpochCache
    let logger: Logger
    let partition: String

    struct Loaded {
        var segments: [Segment]
        var logStartOffset: Int64
        var nextOffset: Int64
        var offlineReason: String?
    }

    static func baseOffset(of name: String, suffix: String) -> Int64? {
        guard name.hasSuffix(suffix) else { return nil }
        let stem = name.dropLast(suffix.count)
        guard stem.count == 20, stem.allSatisfy(\.isASCII), let offset = Int64(stem), offset >= 0 else { return nil }
        return offset
    }

    mutating func load(recoveryPoint: Int64, logStartOffset: Int64, hadCleanShutdown: Bool) throws(StorageError)
        -> Loaded
    {
        let now = PartitionLog.nowMs()
        var logOffsets: [Int64] = []
        var indexFiles: [(name: String, offset: Int64)] = []
        for name in try FileIO.listDirectory(self.directory) {
            guard let offset = Self.baseOffset(of: name, suffix: ".log.swap") else { continue }
            for suffix in [".log", ".index", ".timeindex"] {
                let replaced = self.directory.appending(Segment.fileName(offset, suffix))
                if FileIO.exists(replaced) { try FileIO.unlink(replaced) }
            }
            try FileIO.rename(self.directory.appending(name), to: self.directory.appending(Segment.fileName(offset, ".log")))
            try FileIO.syncDirectory(self.directory)
            self.logger.info("Completed a cleaned segment's swap", metadata: ["baseOffset": "\(offset)"])
        }
        for name in try FileIO.listDirectory(self.directory) {
            if name.hasSuffix(".deleted") || name.hasSuffix(".cleaned") || name.hasSuffix(".tmp") {
                try FileIO.unlink(self.directory.appending(name))
            } else if let offset = Self.baseOffset(of: name, suffix: ".log") {
                logOffsets.append(offset)
            } else if let offset = Self.baseOffset(of: name, suffix: ".index")
                ?? Self.baseOffset(of: name, suffix: ".timeindex")
            {
                indexFiles.append((name, offset))
            }
        }
        let logSet = Set(logOffsets)
        for (name, offset) in indexFiles where !logSet.contains(offset) {
            self.logger.info(
                "Deleting an index file without its log", metadata: ["file": "\(self.directory.appending(name))"])
            try FileIO.unlink(self.directory.appending(name))
        }
        logOffsets.sort()
        guard !logOffsets.isEmpty else {
            let start = max(logStartOffset, 0)
            try self.epochCache.clear()
            let segment = try Segment(
                directory: self.directory, baseOffset: start, indexCapacity: self.config.segmentIndexBytes, nowMs: now)
            return Loaded(segments: [segment], logStartOffset: start, nextOffset: start)
        }

        // The segment holding the recovery point and all after it are the unflushed tail.
        var firstUnflushed = 0
        for (number, offset) in logOffsets.enumerated() where offset <= recoveryPoint { firstUnflushed = number }
        var segments: [Segment] = []
        var nextOffset: Int64 = logOffsets[0]
        var offlineReason: String?
        var scanned = (segments: 0, bytes: Int64(0))
        for (number, baseOffset) in logOffsets.enumerated() {
            let indexMissing =
                !FileIO.exists(self.directory.appending(Segment.fileName(baseOffset, ".index")))
                || !FileIO.exists(self.directory.appending(Segment.fileName(baseOffset, ".timeindex")))
            let isLast = number == logOffsets.count - 1
            let segment = try Segment(
                directory: self.directory, baseOffset: baseOffset,
                indexCapacity: isLast ? self.config.segmentIndexBytes : 0, nowMs: now
            )
            segments.append(segment)
            let unflushed = !hadCleanShutdown && number >= firstUnflushed
            var rebuild = indexMissing
            // An unflushed segment's indexes are rebuilt by its recovery anyway (the active one's is preallocated
            // with zeros after a crash, which the check would report as corrupt).
            if !rebuild && !unflushed {
                do throws(StorageError) {
                    try segment.offsetIndex.sanityCheck()
                    try segment.timeIndex.sanityCheck()
                } catch {
                    self.logger.warning("Rebuilding a corrupt index", metadata: ["error": "\(error)"])
                    rebuild = true
                }
            }
            guard unflushed || rebuild else {
                nextOffset = isLast ? try segment.nextOffset() : logOffsets[number + 1]
                continue
            }
            if unflushed { scanned = (scanned.segments + 1, scanned.bytes + segment.size) }
            let cache = self.epochCache
            let failure = try segment.recover(config: self.config) { (batch) throws(StorageError) in
                if batch.partitionLeaderEpoch >= 0 {
                    try cache.assign(epoch: batch.partitionLeaderEpoch, startOffset: batch.baseOffset)
                }
            }
            guard let failure else {
                let recoveredEnd = try segment.nextOffset()
                nextOffset = recoveredEnd
                if !isLast {
                    nextOffset = max(recoveredEnd, logOffsets[number + 1])
                    try segment.onBecomeInactive()
                }
                continue
            }
            let segmentPath = segment.logPath
            if !unflushed {
                // Below the recovery point the data was flushed and acknowledged: never delete it.
                let error = StorageError.corruptBatch(segmentPath, at: failure.position, failure.reason)
                self.logger.error(
                    "Corrupt data below the recovery point; partition offline", metadata: ["error": "\(error)"])
                offlineReason = error.description
                break
            }
            let droppedBytes = segment.size - failure.position
            // The rebuilt indexes hold only whole batches, so only the .log needs cutting.
            try segment.truncate(toPosition: failure.position, offset: Int64.max)
            let recoveredEnd = try segment.nextOffset()
            nextOffset = recoveredEnd
            var laterDropped: [String] = []
            for later in logOffsets[(number + 1)...] {
                for suffix in [".log", ".index", ".timeindex"] {
                    let path = self.directory.appending(Segment.fileName(later, suffix))
                    if suffix == ".log" { laterDropped.append(path.string) }
                    try FileIO.unlink(path)
                }
            }
            self.logger.warning(
                "Truncated a torn or corrupt tail",
                metadata: [
                    "file": "\(segmentPath)", "position": "\(failure.position)", "reason": "\(failure.reason)",
                    "bytesDropped": "\(droppedBytes)", "offsetsDroppedFrom": "\(recoveredEnd)",
                    "laterSegmentsDeleted": "\(laterDropped)",
                ]
            )
            if !isLast { try segment.onBecomeActive(indexCapacity: self.config.segmentIndexBytes) }
            break
        }
        if offlineReason == nil {
            try segments.last!.onBecomeActive(indexCapacity: self.config.segmentIndexBytes)
        }
        if scanned.segments > 0 {
            self.logger.info(
                "Recovered the unflushed tail after an unclean stop",
                metadata: [
                    "recoveryPoint": "\(recoveryPoint)",
                    "segmentsScanned": "\(scanned.segments)", "bytesScanned": "\(scanned.bytes)",
                    "logEndOffset": "\(nextOffset)",
                ]
            )
        }
        // Only the active segment keeps its files open; the others reopen when a read needs them.
        for segment in segments.dropLast() { try segment.closeFiles() }
        let start = max(logStartOffset, segments[0].baseOffset)
        // An epoch that starts at the log end without a batch yet (a leader elected, nothing appended) stays after a
        // clean stop or a reopen of a log the budget closed: cutting it would rewrite the file (with fsync) at every
        // open and forget the current leader epoch. After a crash the cut is Kafka's: an entry at the recovered end
        // may belong to batches that were torn off.
        try self.epochCache.truncate(fromEnd: hadCleanShutdown ? nextOffset + 1 : nextOffset, durable: false)
        try self.epochCache.truncate(fromStart: start)
        return Loaded(segments: segments, logStartOffset: start, nextOffset: nextOffset, offlineReason: offlineReason)
    }
}
