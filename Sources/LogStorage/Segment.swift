import KafkaRecords
import Logging
import NIOCore
import SystemPackage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The fixed header fields of a batch stored in a segment, read from disk without its records.
struct StoredBatchHeader {
    static let size = 61
    var position: Int64
    var baseOffset: Int64
    var sizeInBytes: Int
    var partitionLeaderEpoch: Int32
    var lastOffsetDelta: Int32
    var maxTimestamp: Int64
    var isLogAppendTime: Bool
    /// The producer fields (-1 when the batch has no producer id), for producer state; control is attribute bit 5.
    var producerId: Int64 = -1
    var producerEpoch: Int16 = -1
    var baseSequence: Int32 = -1
    var isControl = false
    var lastOffset: Int64 { self.baseOffset + Int64(self.lastOffsetDelta) }
    var end: Int64 { self.position + Int64(self.sizeInBytes) }

    /// The producer fields as producer state takes them; nil for a batch without a producer id.
    var producerBatch: ProducerBatch? {
        guard self.producerId >= 0 else { return nil }
        return ProducerBatch(
            producerId: self.producerId,
            producerEpoch: self.producerEpoch,
            baseSequence: self.baseSequence,
            firstOffset: self.baseOffset,
            lastOffset: self.lastOffset,
            maxTimestamp: self.maxTimestamp,
            isControl: self.isControl
        )
    }
}

/// One `.log` file with its `.index` and `.timeindex`: the batches from `baseOffset` on, as appended.
///
/// A segment that no longer takes appends may have its files closed (`closeFiles`) to stay within the
/// `FileHandleBudget`: what it knows about itself (size, largest timestamp) stays in memory, and any call that
/// needs the bytes reopens them first (`open`). A `FileRange` handed out earlier keeps its own `SegmentFile`, so a
/// read in flight is not cut short by a close.
///
/// Not thread-safe: `PartitionLog` calls it while holding its lock (reads of a `SegmentFile` through a `FileRange`
/// need no lock, since they only touch bytes that were written before the range was handed out).
final class Segment {
    let baseOffset: Int64
    let directory: FilePath
    /// The open `.log` and indexes; nil while the files are closed.
    private var files: Files?
    /// Where opening and closing the files is charged: the log's descriptor budget (nil: no budget).
    var account: Account?
    /// Bytes in the `.log`.
    private(set) var size: Int64
    private var bytesSinceLastIndexEntry = 0
    /// The largest batch max timestamp in the segment (-1 when none) and the last offset of its batch.
    private(set) var maxTimestampSoFar: Int64 = -1
    private(set) var offsetOfMaxTimestampSoFar: Int64
    /// The first batch's max timestamp, what `segment.ms` is measured from; nil until a batch is appended.
    private(set) var rollingBasedTimestamp: Int64?
    /// When the segment was made or opened, for `segment.ms` while it has no timestamped batch.
    let createdMs: Int64

    /// The budget a segment charges, and the log it belongs to (unowned: the log owns its segments).
    struct Account {
        unowned let owner: PartitionLog
        let budget: FileHandleBudget
    }

    private struct Files {
        var log: SegmentFile
        var offsetIndex: OffsetIndex
        var timeIndex: TimeIndex
    }

    /// Descriptors an open segment holds: the `.log` (its index files are mapped, their descriptors closed).
    static let descriptorsPerSegment = 1

    static func fileName(_ offset: Int64, _ suffix: String) -> String {
        let digits = String(offset)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + suffix
    }

    /// Opens (creating if missing) the segment starting at `baseOffset` in `directory`. `indexCapacity` is the
    /// preallocated index size for an active segment, 0 for one that only takes reads.
    init(directory: FilePath, baseOffset: Int64, indexCapacity: Int, nowMs: Int64) throws(StorageError) {
        self.baseOffset = baseOffset
        self.directory = directory
        let files = try Self.openFiles(directory: directory, baseOffset: baseOffset, indexCapacity: indexCapacity)
        self.files = files
        self.size = try FileIO.size(files.log.descriptor, path: files.log.path)
        self.offsetOfMaxTimestampSoFar = baseOffset
        if let last = files.timeIndex.lastEntry {
            (self.maxTimestampSoFar, self.offsetOfMaxTimestampSoFar) = (last.timestamp, last.offset)
        }
        self.createdMs = nowMs
    }

    private static func openFiles(directory: FilePath, baseOffset: Int64, indexCapacity: Int) throws(StorageError)
        -> Files
    {
        let logPath = directory.appending(Self.fileName(baseOffset, ".log"))
        let log = SegmentFile(descriptor: try FileIO.open(logPath, .readWrite, options: .create), path: logPath)
        let offsetIndex = try OffsetIndex(
            path: directory.appending(Self.fileName(baseOffset, ".index")),
            baseOffset: baseOffset,
            maxIndexSize: indexCapacity
        )
        let timeIndex = try TimeIndex(
            path: directory.appending(Self.fileName(baseOffset, ".timeindex")),
            baseOffset: baseOffset,
            maxIndexSize: indexCapacity
        )
        return Files(log: log, offsetIndex: offsetIndex, timeIndex: timeIndex)
    }

    var logPath: FilePath { self.directory.appending(Self.fileName(self.baseOffset, ".log")) }

    /// The `.log` file's modification time in ms (Kafka's `LogSegment.lastModified`), read without opening it.
    var lastModifiedMs: Int64 { FileIO.modificationTimeMs(self.logPath) }
    var isOpen: Bool { self.files != nil }
    /// The open `.log`; only after `open`.
    var file: SegmentFile { self.files!.log }
    /// The indexes; only after `open`.
    var offsetIndex: OffsetIndex { self.files!.offsetIndex }
    var timeIndex: TimeIndex { self.files!.timeIndex }

    /// Reopens the files of a closed segment (its indexes at their trimmed size); returns whether it had to.
    @discardableResult
    func open() throws(StorageError) -> Bool {
        guard self.files == nil else { return false }
        self.files = try Self.openFiles(directory: self.directory, baseOffset: self.baseOffset, indexCapacity: 0)
        if let account = self.account {
            account.budget.chargeSegment(account.owner, baseOffset: self.baseOffset, active: false)
        }
        return true
    }

    /// Closes the files of a segment that takes no appends (indexes already trimmed by `onBecomeInactive`);
    /// returns whether they were open. The `.log` descriptor stays open while a `FileRange` still holds it.
    @discardableResult
    func closeFiles(evicted: Bool = false) throws(StorageError) -> Bool {
        guard let files = self.files else { return false }
        self.files = nil
        if let account = self.account {
            account.budget.releaseSegment(account.owner, baseOffset: self.baseOffset, evicted: evicted)
        }
        defer { try? files.timeIndex.file.close(trim: false) }
        try files.offsetIndex.file.close(trim: true)
        try files.timeIndex.file.close(trim: true)
        return true
    }

    // MARK: Appending

    /// Whether a batch of `batchSize` bytes with offsets up to `lastOffset` must go to a new segment.
    func shouldRoll(batchSize: Int, lastOffset: Int64, maxTimestamp: Int64, config: LogConfig, nowMs: Int64) -> Bool {
        guard self.size > 0 else { return false }
        if self.size + Int64(batchSize) > Int64(config.segmentBytes) { return true }
        if self.size + Int64(batchSize) > Int64(Int32.max) { return true }
        if lastOffset - self.baseOffset > Int64(Int32.max) { return true }
        if self.offsetIndex.isFull || self.timeIndex.isFull { return true }
        // Kafka's `timeWaitedForRoll`: from the first batch's timestamp only when it has one (>= 0); a first batch
        // without (-1, as magic 0 data converts) falls back to the segment's age, or every later batch would roll.
        let waited: Int64
        if let first = self.rollingBasedTimestamp, first >= 0 {
            waited = maxTimestamp - first
        } else {
            waited = nowMs - self.createdMs
        }
        return waited > config.segmentMs
    }

    /// Writes `bytes` (whole batches) at the end of the `.log` and indexes them. With `stampEpoch` (a leader append)
    /// each batch's base offset and partition leader epoch are written from `batches` and that epoch instead of
    /// from `bytes`: one pwritev of a 16-byte stamped head plus the caller's remaining bytes per batch, so the
    /// caller's buffer is neither changed nor copied. On a failed write the file is cut back to where it was, so no
    /// partial batch stays behind; if even that cut fails, its error is thrown instead of the write's (the caller
    /// must then take the partition offline).
    func append(
        _ bytes: ByteBuffer,
        batches: [StoredBatchHeader],
        stampEpoch: Int32? = nil,
        indexIntervalBytes: Int
    ) throws(StorageError) {
        try self.open()
        let start = self.size
        do {
            if let epoch = stampEpoch {
                try Self.writeStamped(bytes, batches: batches, epoch: epoch, to: self.file, at: start)
            } else {
                try bytes.withUnsafeReadableBytes { raw in
                    Result { () throws(StorageError) in
                        try FileIO.writeAll(self.file.descriptor, raw, at: start, path: self.logPath)
                    }
                }.get()
            }
        } catch {
            try FileIO.truncate(self.file.descriptor, to: start, path: self.logPath)
            throw error
        }
        do throws(StorageError) {
            for var batch in batches {
                batch.position += start
                try self.index(batch, indexIntervalBytes: indexIntervalBytes)
            }
        } catch {
            // An index entry could not be stored (no disk block for its page): the batches must not stay in the
            // .log either, or a restart would find them although the append failed.
            if let first = batches.first { try self.truncate(toPosition: start, offset: first.baseOffset) }
            throw error
        }
        self.size = start + Int64(bytes.readableBytes)
    }

    /// Bytes at the head of a batch that a leader append rewrites: base offset (0-7), length (8-11, copied as is)
    /// and partition leader epoch (12-15); none of them is covered by the CRC.
    static let stampedHeadSize = 16

    private static func writeStamped(
        _ bytes: ByteBuffer,
        batches: [StoredBatchHeader],
        epoch: Int32,
        to file: SegmentFile,
        at start: Int64
    ) throws(StorageError) {
        var heads = [UInt8](repeating: 0, count: batches.count * Self.stampedHeadSize)
        let result: Result<Void, StorageError> = bytes.withUnsafeReadableBytes { raw in
            heads.withUnsafeMutableBytes { headBytes in
                var pieces: [iovec] = []
                pieces.reserveCapacity(batches.count * 2)
                for (number, batch) in batches.enumerated() {
                    let position = Int(batch.position)
                    let head = headBytes.baseAddress! + number * Self.stampedHeadSize
                    head.storeBytes(of: batch.baseOffset.bigEndian, toByteOffset: 0, as: Int64.self)
                    (head + 8).copyMemory(from: raw.baseAddress! + position + 8, byteCount: 4)
                    head.storeBytes(of: epoch.bigEndian, toByteOffset: 12, as: Int32.self)
                    pieces.append(iovec(iov_base: head, iov_len: Self.stampedHeadSize))
                    let rest = batch.sizeInBytes - Self.stampedHeadSize
                    pieces.append(
                        iovec(
                            iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress! + position + 16),
                            iov_len: rest
                        )
                    )
                }
                return Result { () throws(StorageError) in
                    try FileIO.writeAll(file.descriptor, pieces: &pieces, at: start, path: file.path)
                }
            }
        }
        try result.get()
    }

    /// Kafka's rule, shared by appends and recovery so both give the same index: an entry for a batch once more
    /// than `index.interval.bytes` were appended since the last entry.
    private func index(_ batch: StoredBatchHeader, indexIntervalBytes: Int) throws(StorageError) {
        if self.rollingBasedTimestamp == nil { self.rollingBasedTimestamp = batch.maxTimestamp }
        if batch.maxTimestamp > self.maxTimestampSoFar {
            self.maxTimestampSoFar = batch.maxTimestamp
            self.offsetOfMaxTimestampSoFar = batch.lastOffset
        }
        if self.bytesSinceLastIndexEntry > indexIntervalBytes {
            try self.offsetIndex.append(offset: batch.lastOffset, position: batch.position)
            try self.timeIndex.maybeAppend(timestamp: self.maxTimestampSoFar, offset: self.offsetOfMaxTimestampSoFar)
            self.bytesSinceLastIndexEntry = 0
        }
        self.bytesSinceLastIndexEntry += batch.sizeInBytes
    }

    // MARK: Reading

    /// The header of the batch at `position`, nil at or past the end of the file, before a partial header, or at
    /// a header whose length cannot be a batch's (only recovery looks past such a point, with `recover`).
    func readHeader(at position: Int64) throws(StorageError) -> StoredBatchHeader? {
        guard let header = try self.readRawHeader(at: position),
            header.sizeInBytes >= RecordBatch.headerSize
        else { return nil }
        return header
    }

    private func readRawHeader(at position: Int64) throws(StorageError) -> StoredBatchHeader? {
        guard position + Int64(StoredBatchHeader.size) <= self.size else { return nil }
        try self.open()
        var raw = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let count = try withUnsafeMutableBytes(of: &raw) { buffer in
            Result { () throws(StorageError) in
                try FileIO.read(
                    self.file.descriptor,
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<StoredBatchHeader.size]),
                    at: position,
                    path: self.logPath
                )
            }
        }.get()
        guard count == StoredBatchHeader.size else { return nil }
        return withUnsafeBytes(of: &raw) { bytes in
            func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
                T(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
            }
            return StoredBatchHeader(
                position: position,
                baseOffset: load(0, Int64.self),
                sizeInBytes: Int(load(8, Int32.self)) + RecordBatch.logOverhead,
                partitionLeaderEpoch: load(12, Int32.self),
                lastOffsetDelta: load(23, Int32.self),
                maxTimestamp: load(35, Int64.self),
                isLogAppendTime: load(21, Int16.self) & 0x8 != 0,
                producerId: load(43, Int64.self),
                producerEpoch: load(51, Int16.self),
                baseSequence: load(53, Int32.self),
                isControl: load(21, Int16.self) & 0x20 != 0
            )
        }
    }

    /// The first batch whose last offset is >= `offset`, searching from the index's position for it; nil if the
    /// segment ends first.
    /// - Throws: `corruptBatch` at a header that cannot be read before the end of the file: appends and recovery
    ///   leave only whole batches, so the bytes changed underneath (a reader must not skip them silently).
    func findBatch(containing offset: Int64) throws(StorageError) -> StoredBatchHeader? {
        try self.open()
        var position = self.offsetIndex.lookup(offset).position
        while let header = try self.readHeader(at: position) {
            if header.lastOffset >= offset { return header }
            position = header.end
        }
        guard position >= self.size else {
            throw .corruptBatch(self.logPath, at: position, "no valid batch header before the end of the file")
        }
        return nil
    }

    /// Calls `body` with the header of every whole batch from the one holding `offset` on (headers only: producer
    /// state replay reads 61 bytes per batch, not the records).
    func forEachBatchHeader(
        from offset: Int64,
        _ body: (StoredBatchHeader) throws(StorageError) -> Void
    ) throws(StorageError) {
        guard var header = try self.findBatch(containing: offset) else { return }
        while header.end <= self.size {
            try body(header)
            guard let next = try self.readHeader(at: header.end) else { return }
            header = next
        }
    }

    /// Whole batches from the one holding `offset`: at most `maxBytes` unless the first batch alone is larger
    /// (then that batch, when `minOneBatch`), and only batches whose last offset is below `maxOffset`.
    func read(from offset: Int64, maxBytes: Int, maxOffset: Int64, minOneBatch: Bool) throws(StorageError) -> FileRange?
    {
        guard let first = try self.findBatch(containing: offset), first.lastOffset < maxOffset else { return nil }
        guard first.sizeInBytes <= maxBytes || minOneBatch else { return nil }
        var end = first.end
        while let next = try self.readHeader(at: end), next.end <= self.size, next.lastOffset < maxOffset,
            Int(next.end - first.position) <= maxBytes
        {
            end = next.end
        }
        return FileRange(file: self.file, position: first.position, length: Int(end - first.position))
    }

    /// The whole batch at `header`, read into memory (for look-ups inside it and recovery).
    func readBatch(_ header: StoredBatchHeader, allocator: ByteBufferAllocator) throws(StorageError) -> RecordBatch {
        try self.open()
        var buffer = allocator.buffer(capacity: header.sizeInBytes)
        var result: Result<Int, StorageError> = .success(0)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: header.sizeInBytes) { raw in
            result = Result { () throws(StorageError) in
                try FileIO.read(
                    self.file.descriptor,
                    into: UnsafeMutableRawBufferPointer(rebasing: raw[..<header.sizeInBytes]),
                    at: header.position,
                    path: self.logPath
                )
            }
            return (try? result.get()) ?? 0
        }
        let count = try result.get()
        guard count == header.sizeInBytes else {
            throw .corruptBatch(self.logPath, at: header.position, "the file ends inside the batch")
        }
        do {
            return try RecordBatch(buffer)
        } catch {
            throw .corruptBatch(self.logPath, at: header.position, "\(error)")
        }
    }

    /// The first record at or after `timestamp` with an offset >= `startingOffset`: (its timestamp, offset).
    /// Batches are checked (CRC and record walk) before their records are read, so a corrupt batch is reported
    /// as `corruptBatch` naming this file rather than giving a wrong answer.
    func findOffset(byTimestamp timestamp: Int64, startingOffset: Int64) throws(StorageError) -> (Int64, Int64)? {
        try self.open()
        let fromIndex = self.timeIndex.lastEntry(before: timestamp)?.offset ?? self.baseOffset
        var position = self.offsetIndex.lookup(max(fromIndex, startingOffset)).position
        let allocator = ByteBufferAllocator()
        var validator = RecordBatchValidator(
            options: .init(maxDecompressedBytes: Int(Int32.max), refuseControlBatches: false, storedBatches: true)
        )
        while let header = try self.readHeader(at: position) {
            position = header.end
            guard header.maxTimestamp >= timestamp, header.lastOffset >= startingOffset else { continue }
            let batch = try self.readBatch(header, allocator: allocator)
            do {
                _ = try validator.validate(batch)
                if header.isLogAppendTime {
                    return (header.maxTimestamp, max(header.baseOffset, startingOffset))
                }
                var records = try batch.makeRecordIterator(
                    compression: CompressionContext(),
                    maxDecompressedBytes: Int(Int32.max)
                )
                while let record = try records.next() {
                    if record.timestamp >= timestamp && record.offset >= startingOffset {
                        return (record.timestamp, record.offset)
                    }
                }
            } catch {
                throw .corruptBatch(self.logPath, at: header.position, "\(error)")
            }
        }
        return nil
    }

    /// The largest batch max timestamp in the segment, what retention judges its age by (Kafka's
    /// `largestTimestamp`, but never the file's mtime): from the time index when it knows one, else from the batch
    /// headers (a segment whose time index lost its entries). -1 for an empty segment.
    func largestTimestamp() throws(StorageError) -> Int64 {
        if self.maxTimestampSoFar >= 0 || self.size == 0 { return self.maxTimestampSoFar }
        var largest: Int64 = -1
        try self.forEachBatchHeader(from: self.baseOffset) { header in largest = max(largest, header.maxTimestamp) }
        return largest
    }

    // MARK: Recovery and truncation

    /// Rebuilds the indexes (and the caller's epoch cache, through `onBatch`) from the `.log`, checking each batch's
    /// size, CRC and records. Stops at the first torn or corrupt batch and returns its position and why, leaving
    /// the cutting to the caller; nil when every byte was whole batches.
    func recover(
        config: LogConfig,
        onBatch: (StoredBatchHeader) throws(StorageError) -> Void
    ) throws(StorageError) -> (position: Int64, reason: String)? {
        try self.open()
        self.offsetIndex.reset()
        self.timeIndex.reset()
        // A segment opened for reads has its index trimmed to what it held; rebuilding may need the full size.
        try self.offsetIndex.file.resize(capacityBytes: config.segmentIndexBytes)
        try self.timeIndex.file.resize(capacityBytes: config.segmentIndexBytes)
        self.bytesSinceLastIndexEntry = 0
        self.maxTimestampSoFar = -1
        self.offsetOfMaxTimestampSoFar = self.baseOffset
        self.rollingBasedTimestamp = nil
        let allocator = ByteBufferAllocator()
        var validator = RecordBatchValidator(
            options: .init(maxDecompressedBytes: Int(Int32.max), refuseControlBatches: false, storedBatches: true)
        )
        var position: Int64 = 0
        var previousLastOffset = self.baseOffset - 1
        while position < self.size {
            guard let header = try self.readRawHeader(at: position) else {
                return (position, "\(self.size - position) bytes, too few for a batch header")
            }
            guard header.sizeInBytes >= RecordBatch.headerSize, header.sizeInBytes <= Int(Int32.max) else {
                return (position, "impossible batch length \(header.sizeInBytes - RecordBatch.logOverhead)")
            }
            guard header.end <= self.size else {
                return (position, "a batch of \(header.sizeInBytes) bytes, but only \(self.size - position) remain")
            }
            guard header.baseOffset > previousLastOffset, header.lastOffset >= header.baseOffset,
                header.lastOffset - self.baseOffset <= Int64(Int32.max)
            else {
                return (position, "offsets \(header.baseOffset)...\(header.lastOffset) after \(previousLastOffset)")
            }
            let batch = try self.readBatch(header, allocator: allocator)
            do {
                _ = try validator.validate(batch)
            } catch {
                return (position, "\(error)")
            }
            try self.index(header, indexIntervalBytes: config.indexIntervalBytes)
            try onBatch(header)
            previousLastOffset = header.lastOffset
            position = header.end
        }
        return nil
    }

    /// Cuts the `.log` at `position` (a batch boundary) and drops index entries at or after `offset`.
    func truncate(toPosition position: Int64, offset: Int64) throws(StorageError) {
        try self.open()
        try FileIO.truncate(self.file.descriptor, to: position, path: self.logPath)
        self.size = position
        self.offsetIndex.truncate(fromOffset: offset)
        self.timeIndex.truncate(fromOffset: offset)
        // What appending the remaining batches gave (Kafka resets it to 0 instead): later appends then index the
        // same batches a fresh scan of the file would.
        let entries = self.offsetIndex.entryCount
        self.bytesSinceLastIndexEntry = Int(position - (entries > 0 ? self.offsetIndex.entry(entries - 1).position : 0))
        if self.offsetOfMaxTimestampSoFar >= offset || position == 0 {
            self.maxTimestampSoFar = self.timeIndex.lastEntry?.timestamp ?? -1
            self.offsetOfMaxTimestampSoFar = self.timeIndex.lastEntry?.offset ?? self.baseOffset
        }
        if position == 0 { self.rollingBasedTimestamp = nil }
    }

    /// The offset after the last batch (the base offset when empty), scanning from the last index entry.
    func nextOffset() throws(StorageError) -> Int64 {
        try self.open()
        var position = self.offsetIndex.lookup(Int64.max).position
        var next = self.baseOffset
        while let header = try self.readHeader(at: position), header.end <= self.size {
            next = header.lastOffset + 1
            position = header.end
        }
        return next
    }

    // MARK: Life cycle

    /// The segment stops taking appends: the final time index entry, indexes trimmed.
    func onBecomeInactive() throws(StorageError) {
        try self.open()
        if self.maxTimestampSoFar >= 0 {
            try self.timeIndex.maybeAppend(timestamp: self.maxTimestampSoFar, offset: self.offsetOfMaxTimestampSoFar)
        }
        try self.offsetIndex.file.trimToEntries()
        try self.timeIndex.file.trimToEntries()
    }

    /// The segment takes appends again (it became the last one after a truncation or reopen).
    func onBecomeActive(indexCapacity: Int) throws(StorageError) {
        try self.open()
        try self.offsetIndex.file.resize(capacityBytes: indexCapacity)
        try self.timeIndex.file.resize(capacityBytes: indexCapacity)
    }

    /// What an fsync of this segment needs, taken under the log's lock and used without it: the open `.log` (kept
    /// open by the reference) and the index files' paths (their mapped pages are in the same page cache). A segment
    /// whose files the budget closed is synced by path too, with descriptors open only for the fsync, rather than
    /// reopened and charged.
    func syncTarget() -> SyncTarget {
        let paths = [".log", ".index", ".timeindex"].map {
            self.directory.appending(Self.fileName(self.baseOffset, $0))
        }
        guard let files = self.files else { return SyncTarget(log: nil, paths: paths) }
        return SyncTarget(log: files.log, paths: Array(paths.dropFirst()))
    }

    struct SyncTarget {
        var log: SegmentFile?
        var paths: [FilePath]

        /// fsyncs the three files; a file renamed away meanwhile (its segment deleted) is skipped.
        func sync() throws(StorageError) {
            if let log = self.log { try FileIO.sync(log.descriptor, path: log.path) }
            for path in self.paths {
                let fd: SystemPackage.FileDescriptor
                do {
                    fd = try FileDescriptor.open(path, .readOnly, options: .closeOnExec)
                } catch let error as Errno where error == .noSuchFileOrDirectory {
                    continue
                } catch {
                    throw .io("open", path, error as? Errno ?? .ioError)
                }
                defer { FileIO.close(fd) }
                try FileIO.sync(fd, path: path)
            }
        }
    }

    /// Closes the indexes (trimmed, with the final time index entry); the `.log` descriptor closes when the last
    /// reader lets go of it. Nothing to do for a segment whose files are closed already.
    func close() throws(StorageError) {
        guard self.isOpen else { return }
        try self.onBecomeInactive()
        try self.closeFiles()
    }

    /// Renames the three files `<name>.deleted`; returns the new paths, to unlink after `file.delete.delay.ms`.
    func renameForDeletion() throws(StorageError) -> [FilePath] {
        if let files = self.files {
            try? files.offsetIndex.file.close(trim: false)
            try? files.timeIndex.file.close(trim: false)
            self.files = nil
            if let account = self.account {
                account.budget.releaseSegment(account.owner, baseOffset: self.baseOffset)
            }
        }
        var renamed: [FilePath] = []
        let paths = [".log", ".index", ".timeindex"].map {
            self.directory.appending(Self.fileName(self.baseOffset, $0))
        }
        for path in paths where FileIO.exists(path) {
            let deleted = FilePath(path.string + ".deleted")
            try FileIO.rename(path, to: deleted)
            renamed.append(deleted)
        }
        return renamed
    }
}
