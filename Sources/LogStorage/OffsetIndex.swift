import SystemPackage

/// A segment's `.index`: sparse 8-byte entries (int32 offset relative to the segment's base offset, int32 file
/// position), each mapping the last offset of an appended batch to the position where that batch starts. Offsets
/// strictly increase. A look-up gives a position at or before the batch holding an offset; the caller scans batch
/// headers from there.
///
/// Not thread-safe: used under `PartitionLog`'s lock.
final class OffsetIndex {
    static let entrySize = 8
    let baseOffset: Int64
    let file: IndexFile

    init(path: FilePath, baseOffset: Int64, maxIndexSize: Int) throws(StorageError) {
        self.baseOffset = baseOffset
        self.file = try IndexFile(path: path, entrySize: Self.entrySize, capacityBytes: maxIndexSize)
    }

    var path: FilePath { self.file.path }
    var entryCount: Int { self.file.entryCount }
    var isFull: Bool { self.file.isFull }

    func entry(_ number: Int) -> (offset: Int64, position: Int64) {
        (
            self.baseOffset + Int64(self.file.load(entry: number, field: 0, as: Int32.self)),
            Int64(self.file.load(entry: number, field: 4, as: Int32.self))
        )
    }

    /// The last entry's offset, or the base offset when empty.
    var lastOffset: Int64 {
        self.entryCount == 0 ? self.baseOffset : self.entry(self.entryCount - 1).offset
    }

    /// Adds an entry. `offset` must be above the last entry's and fit 32 bits relative to the base (the segment
    /// rolls before it would not); `position` must fit an Int32.
    func append(offset: Int64, position: Int64) throws(StorageError) {
        guard self.entryCount == 0 || offset > self.lastOffset,
            offset - self.baseOffset >= 0, offset - self.baseOffset <= Int64(Int32.max),
            position >= 0, position <= Int64(Int32.max)
        else {
            throw .corruptIndex(self.path, "entry (\(offset), \(position)) after last offset \(self.lastOffset)")
        }
        try self.file.reserveNextEntry()
        self.file.storeNext(Int32(offset - self.baseOffset), field: 0)
        self.file.storeNext(Int32(position), field: 4)
        self.file.commitEntry()
    }

    /// The entry with the largest offset <= `offset`, or (base offset, 0) when there is none: the batch holding
    /// `offset` starts at or after the returned position.
    func lookup(_ offset: Int64) -> (offset: Int64, position: Int64) {
        guard let number = self.file.largestEntry(atOrBelow: offset, key: { self.entry($0).offset }) else {
            return (self.baseOffset, 0)
        }
        return self.entry(number)
    }

    /// Drops the entries for offsets >= `offset`.
    func truncate(fromOffset offset: Int64) {
        let keep = self.file.smallestEntry(atOrAbove: offset, key: { self.entry($0).offset }) ?? self.entryCount
        self.file.truncate(toEntries: keep)
    }

    func reset() {
        self.file.truncate(toEntries: 0)
    }

    /// Kafka's `OffsetIndex.sanityCheck`: whole entries, and a last offset above the base offset when there are any.
    /// A failure means the index must be rebuilt from the `.log`.
    func sanityCheck() throws(StorageError) {
        guard self.file.capacityBytes % Self.entrySize == 0 else {
            throw .corruptIndex(self.path, "size \(self.file.capacityBytes) is not a multiple of \(Self.entrySize)")
        }
        if self.entryCount > 0 {
            let last = self.entry(self.entryCount - 1)
            guard last.offset > self.baseOffset || (self.entryCount == 1 && last.offset == self.baseOffset) else {
                throw .corruptIndex(self.path, "last offset \(last.offset) is not above base offset \(self.baseOffset)")
            }
            if self.entryCount > 1 {
                let previous = self.entry(self.entryCount - 2)
                guard previous.offset < last.offset, previous.position < last.position else {
                    throw .corruptIndex(self.path, "the last two entries are out of order")
                }
            }
        }
    }
}

/// A segment's `.timeindex`: sparse 12-byte entries (int64 the largest timestamp seen so far in the segment, int32
/// the offset, relative to the base, of the batch holding it), written at the same moments as the offset index
/// plus once more when the segment rolls. Timestamps strictly increase.
///
/// Not thread-safe: used under `PartitionLog`'s lock.
final class TimeIndex {
    static let entrySize = 12
    let baseOffset: Int64
    let file: IndexFile

    init(path: FilePath, baseOffset: Int64, maxIndexSize: Int) throws(StorageError) {
        self.baseOffset = baseOffset
        self.file = try IndexFile(path: path, entrySize: Self.entrySize, capacityBytes: maxIndexSize)
    }

    var path: FilePath { self.file.path }
    var entryCount: Int { self.file.entryCount }
    var isFull: Bool { self.file.isFull }

    func entry(_ number: Int) -> (timestamp: Int64, offset: Int64) {
        (
            self.file.load(entry: number, field: 0, as: Int64.self),
            self.baseOffset + Int64(self.file.load(entry: number, field: 8, as: Int32.self))
        )
    }

    var lastEntry: (timestamp: Int64, offset: Int64)? {
        self.entryCount == 0 ? nil : self.entry(self.entryCount - 1)
    }

    /// Adds (timestamp, offset) when `timestamp` is above the last entry's; otherwise nothing. `force` writes even
    /// into the last free slot that appends leave for the roll entry (Kafka's `skipFullCheck`).
    func maybeAppend(timestamp: Int64, offset: Int64) throws(StorageError) {
        if let last = self.lastEntry {
            guard timestamp > last.timestamp else { return }
            guard offset >= last.offset else {
                throw .corruptIndex(self.path, "entry for offset \(offset) after offset \(last.offset)")
            }
        }
        guard !self.isFull else { return }
        try self.file.reserveNextEntry()
        self.file.storeNext(timestamp, field: 0)
        self.file.storeNext(Int32(offset - self.baseOffset), field: 8)
        self.file.commitEntry()
    }

    /// The last entry whose timestamp is below `timestamp`: every batch before the one holding its offset has only
    /// timestamps below `timestamp`, so a search for the first record at or after it can start at that batch.
    func lastEntry(before timestamp: Int64) -> (timestamp: Int64, offset: Int64)? {
        guard timestamp > Int64.min else { return nil }
        return self.file.largestEntry(atOrBelow: timestamp - 1, key: { self.entry($0).timestamp }).map(self.entry)
    }

    /// Drops the entries for offsets >= `offset`.
    func truncate(fromOffset offset: Int64) {
        var keep = self.entryCount
        while keep > 0, self.entry(keep - 1).offset >= offset { keep -= 1 }
        self.file.truncate(toEntries: keep)
    }

    func reset() {
        self.file.truncate(toEntries: 0)
    }

    /// Kafka's `TimeIndex.sanityCheck`: whole entries, and the last entry's offset not below the base offset.
    func sanityCheck() throws(StorageError) {
        guard self.file.capacityBytes % Self.entrySize == 0 else {
            throw .corruptIndex(self.path, "size \(self.file.capacityBytes) is not a multiple of \(Self.entrySize)")
        }
        if self.entryCount > 1 {
            let last = self.entry(self.entryCount - 1)
            let previous = self.entry(self.entryCount - 2)
            guard previous.timestamp < last.timestamp, previous.offset <= last.offset else {
                throw .corruptIndex(self.path, "the last two entries are out of order")
            }
        }
    }
}
