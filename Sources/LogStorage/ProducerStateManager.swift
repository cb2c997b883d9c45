import KafkaRecords
import Logging
import NIOCore
import SystemPackage

/// A partition's producer state (Kafka's `ProducerStateManager`): per producer id its epoch, last five batches and
/// last timestamp, for the idempotent producer's duplicate and sequence checks.
///
/// It covers the log up to `mapEndOffset` (exclusive). `PartitionLog` applies every appended batch that has a
/// producer id, takes a snapshot (`<20-digit offset>.snapshot`, the state of every batch below that offset) when a
/// segment rolls and at a clean close, and after a restart or a truncation reloads the newest snapshot at or below
/// the log end and replays only the batch headers after it, so start-up reads the tail, not the whole log.
///
/// Snapshot format (LogBroker's own, not Kafka's: Kafka's keeps only the last batch per producer, so after a
/// restart only a retry of the very last batch would be recognised; this one keeps all five). Big-endian:
///
///     magic "LBPS" | version int16 = 1 | crc uint32 (CRC-32C of every byte after it) | offset int64
///     | producer count int32 | per producer: id int64, epoch int16, last timestamp int64, batch count int8 (0...5),
///       per batch: first sequence int32, last sequence int32, first offset int64, last offset int64, timestamp int64
///
/// Snapshots are derived data: they are written to a temporary file and renamed, without fsync. A snapshot torn by
/// a crash fails its CRC and is deleted; the next older one is loaded and more of the log replayed.
///
/// Not thread-safe: used under `PartitionLog`'s lock.
public final class ProducerStateManager {
    public static let snapshotSuffix = ".snapshot"
    static let magic: [UInt8] = Array("LBPS".utf8)
    static let version: Int16 = 1
    static let headerSize = 4 + 2 + 4 + 8 + 4
    static let entryHeaderSize = 8 + 2 + 8 + 1
    static let batchSize = 4 + 4 + 8 + 8 + 8

    public let directory: FilePath
    /// `producer.id.expiration.ms`: a producer whose last batch is this old is forgotten.
    public let producerIdExpirationMs: Int64
    public private(set) var producers: [Int64: ProducerStateEntry] = [:]
    /// Every batch below this offset has been applied.
    public private(set) var mapEndOffset: Int64 = 0
    /// The offsets of the snapshot files in the directory, ascending.
    public private(set) var snapshotOffsets: [Int64] = []
    /// The offset of a snapshot file that holds exactly this state (loaded or written, nothing applied since), so
    /// a close with nothing new (every log at a clean stop, every eviction of an idle log) writes no file; nil once
    /// the state changed.
    private var unchangedSinceSnapshot: Int64?
    private let logger: Logger

    /// Finds the snapshot files in `directory`; the state starts empty until `truncateAndReload`.
    init(directory: FilePath, producerIdExpirationMs: Int64, logger: Logger) throws(StorageError) {
        self.directory = directory
        self.producerIdExpirationMs = producerIdExpirationMs
        self.logger = logger
        self.snapshotOffsets = try FileIO.listDirectory(directory)
            .compactMap { Loader.baseOffset(of: $0, suffix: Self.snapshotSuffix) }.sorted()
    }

    func snapshotPath(_ offset: Int64) -> FilePath {
        self.directory.appending(Segment.fileName(offset, Self.snapshotSuffix))
    }

    // MARK: Checks and updates

    /// The checks for a client's batch against this state (see `checkProducerBatch`); changes nothing.
    public func check(_ batch: ProducerBatch, pending: ProducerStateEntry? = nil) -> Result<
        ProducerCheck, ProducerStateError
    > {
        checkProducerBatch(batch, current: self.producers[batch.producerId], pending: pending)
    }

    /// Applies a batch that was appended (or replayed); no checks. Returns the entry as it was before, for undo.
    @discardableResult
    func apply(_ batch: ProducerBatch) -> ProducerStateEntry? {
        self.unchangedSinceSnapshot = nil
        let before = self.producers[batch.producerId]
        self.producers[
            batch.producerId,
            default: ProducerStateEntry(
                producerId: batch.producerId,
                producerEpoch: batch.producerEpoch,
                lastTimestamp: batch.maxTimestamp
            )
        ].apply(batch)
        self.mapEndOffset = max(self.mapEndOffset, batch.lastOffset + 1)
        return before
    }

    /// Puts entries back as they were before a failed append.
    func restore(_ entries: [Int64: ProducerStateEntry?], mapEndOffset: Int64) {
        self.unchangedSinceSnapshot = nil
        for (producerId, entry) in entries { self.producers[producerId] = entry }
        self.mapEndOffset = mapEndOffset
    }

    func updateMapEndOffset(_ offset: Int64) {
        if offset != self.mapEndOffset { self.unchangedSinceSnapshot = nil }
        self.mapEndOffset = offset
    }

    func isExpired(_ entry: ProducerStateEntry, nowMs: Int64) -> Bool {
        nowMs - entry.lastTimestamp >= self.producerIdExpirationMs
    }

    /// Forgets producers whose last batch is at least `producer.id.expiration.ms` old (Kafka's periodic
    /// `removeExpiredProducers`). A later batch from one of them is then treated as from an unknown producer.
    public func removeExpiredProducers(nowMs: Int64) {
        let count = self.producers.count
        self.producers = self.producers.filter { !self.isExpired($0.value, nowMs: nowMs) }
        if self.producers.count != count { self.unchangedSinceSnapshot = nil }
    }

    // MARK: Snapshots

    /// Writes the state as `<mapEndOffset>.snapshot` (replacing one at that offset); nothing when that file already
    /// holds this state.
    func takeSnapshot() throws(StorageError) {
        let offset = self.mapEndOffset
        if self.unchangedSinceSnapshot == offset && self.snapshotOffsets.contains(offset) { return }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(
            Self.headerSize + self.producers.count * (Self.entryHeaderSize + 5 * Self.batchSize)
        )
        buffer.writeBytes(Self.magic)
        buffer.writeInteger(Self.version)
        buffer.writeInteger(UInt32(0))
        buffer.writeInteger(offset)
        buffer.writeInteger(Int32(self.producers.count))
        for producerId in self.producers.keys.sorted() {
            let entry = self.producers[producerId]!
            buffer.writeInteger(entry.producerId)
            buffer.writeInteger(entry.producerEpoch)
            buffer.writeInteger(entry.lastTimestamp)
            buffer.writeInteger(Int8(entry.batches.count))
            for batch in entry.batches {
                buffer.writeInteger(batch.firstSequence)
                buffer.writeInteger(batch.lastSequence)
                buffer.writeInteger(batch.firstOffset)
                buffer.writeInteger(batch.lastOffset)
                buffer.writeInteger(batch.timestamp)
            }
        }
        let crc = buffer.withUnsafeReadableBytes { CRC32C.extend(0, UnsafeRawBufferPointer(rebasing: $0[10...])) }
        buffer.setInteger(crc, at: 6)
        let path = self.snapshotPath(offset)
        let temporary = FilePath(path.string + ".tmp")
        let fd = try FileIO.open(temporary, .writeOnly, options: [.create, .truncate])
        do throws(StorageError) {
            try buffer.withUnsafeReadableBytes { bytes in
                Result { () throws(StorageError) in try FileIO.writeAll(fd, bytes, at: 0, path: temporary) }
            }.get()
        } catch {
            FileIO.close(fd)
            try? FileIO.unlink(temporary)
            throw error
        }
        FileIO.close(fd)
        try FileIO.rename(temporary, to: path)
        if !self.snapshotOffsets.contains(offset) {
            self.snapshotOffsets.append(offset)
            self.snapshotOffsets.sort()
        }
        self.unchangedSinceSnapshot = offset
    }

    /// Parses a snapshot file; nil if it is missing, torn or corrupt (with the reason logged).
    static func readSnapshot(_ path: FilePath, expectedOffset: Int64) throws(StorageError) -> [ProducerStateEntry]? {
        guard let bytes = try FileIO.readWholeFile(path) else { return nil }
        var buffer = ByteBuffer(bytes: bytes)
        guard bytes.count >= Self.headerSize, Array(bytes[0..<4]) == Self.magic else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        guard buffer.readInteger(as: Int16.self) == Self.version, let crc = buffer.readInteger(as: UInt32.self),
            crc == bytes.withUnsafeBytes({ CRC32C.extend(0, UnsafeRawBufferPointer(rebasing: $0[10...])) }),
            buffer.readInteger(as: Int64.self) == expectedOffset, let count = buffer.readInteger(as: Int32.self),
            count >= 0, Int(count) <= buffer.readableBytes / Self.entryHeaderSize
        else { return nil }
        var entries: [ProducerStateEntry] = []
        entries.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let producerId = buffer.readInteger(as: Int64.self),
                let epoch = buffer.readInteger(as: Int16.self),
                let lastTimestamp = buffer.readInteger(as: Int64.self),
                let batchCount = buffer.readInteger(as: Int8.self),
                (0...Int8(ProducerStateEntry.batchesToRetain)).contains(batchCount),
                buffer.readableBytes >= Int(batchCount) * Self.batchSize
            else { return nil }
            var entry = ProducerStateEntry(producerId: producerId, producerEpoch: epoch, lastTimestamp: lastTimestamp)
            for _ in 0..<batchCount {
                entry.batches.append(
                    ProducerBatchMetadata(
                        firstSequence: buffer.readInteger()!,
                        lastSequence: buffer.readInteger()!,
                        firstOffset: buffer.readInteger()!,
                        lastOffset: buffer.readInteger()!,
                        timestamp: buffer.readInteger()!
                    )
                )
            }
            entries.append(entry)
        }
        guard buffer.readableBytes == 0 else { return nil }
        return entries
    }

    func deleteSnapshot(_ offset: Int64) throws(StorageError) {
        if self.unchangedSinceSnapshot == offset { self.unchangedSinceSnapshot = nil }
        try FileIO.unlink(self.snapshotPath(offset))
        self.snapshotOffsets.removeAll { $0 == offset }
    }

    /// Deletes the snapshots below `offset` (their segments were deleted; a later snapshot holds their producers).
    func deleteSnapshots(before offset: Int64) throws(StorageError) {
        for old in self.snapshotOffsets where old < offset { try self.deleteSnapshot(old) }
    }

    /// Deletes the snapshots above `offset` (the log was cut there; they describe batches that are gone).
    func deleteSnapshots(after offset: Int64) throws(StorageError) {
        for old in self.snapshotOffsets where old > offset { try self.deleteSnapshot(old) }
    }

    /// Kafka's `removeStraySnapshots`: keeps the snapshots at segment base offsets and the newest one.
    func removeStraySnapshots(segmentBaseOffsets: Set<Int64>) throws(StorageError) {
        let newest = self.snapshotOffsets.last
        for offset in self.snapshotOffsets where offset != newest && !segmentBaseOffsets.contains(offset) {
            try self.deleteSnapshot(offset)
        }
    }

    /// Forgets the state and loads the newest valid snapshot at or below `logEndOffset` (snapshots above it are
    /// deleted, and so are torn or corrupt ones). Producers already expired at `nowMs` are not loaded. Returns the
    /// offset the caller must replay the log from (the snapshot's, or `logStartOffset` without one); the caller
    /// then applies every batch from there and calls `updateMapEndOffset(logEndOffset)`.
    func truncateAndReload(logStartOffset: Int64, logEndOffset: Int64, nowMs: Int64) throws(StorageError) -> Int64 {
        try self.deleteSnapshots(after: logEndOffset)
        self.producers = [:]
        self.unchangedSinceSnapshot = nil
        while let offset = self.snapshotOffsets.last {
            if let entries = try Self.readSnapshot(self.snapshotPath(offset), expectedOffset: offset) {
                for entry in entries where !self.isExpired(entry, nowMs: nowMs) {
                    self.producers[entry.producerId] = entry
                }
                self.mapEndOffset = offset
                // Producers expired since the file was written are left out here and on every later load alike.
                self.unchangedSinceSnapshot = offset
                return max(offset, logStartOffset)
            }
            self.logger.warning(
                "Deleting a torn or corrupt producer snapshot",
                metadata: ["file": "\(self.snapshotPath(offset))"]
            )
            try self.deleteSnapshot(offset)
        }
        self.mapEndOffset = logStartOffset
        return logStartOffset
    }

    /// The log was emptied and restarts at `offset`: no producers, no snapshots.
    func truncateFully(at offset: Int64) throws(StorageError) {
        self.unchangedSinceSnapshot = nil
        for old in self.snapshotOffsets { try self.deleteSnapshot(old) }
        self.producers = [:]
        self.mapEndOffset = offset
    }
}
