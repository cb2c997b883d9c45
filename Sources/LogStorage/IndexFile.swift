import SystemPackage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The memory-mapped file under `OffsetIndex` and `TimeIndex`: fixed-size big-endian entries, a file preallocated
/// to a capacity while its segment is active (so appends never grow the file) and trimmed to its entries when the
/// segment rolls or closes, as Kafka's `AbstractIndex` does.
///
/// Like Kafka's, it holds no file descriptor while mapped: the mapping stays valid after the descriptor closes, so an
/// open segment costs one descriptor (its `.log`) against `ulimit -n`, not three. Resizing, reserving disk blocks and
/// trimming open the file for the call.
///
/// Not thread-safe: its index is used under `PartitionLog`'s lock.
final class IndexFile {
    private(set) var path: FilePath
    let entrySize: Int
    private var isClosed = false
    private var base: UnsafeMutableRawPointer?
    /// The file's length and the mapping's, a multiple of `entrySize`.
    private(set) var capacityBytes: Int
    private(set) var entryCount: Int

    /// Opens or creates the file. An existing file's entries end at its last entry that is not all zeros, read
    /// with pread from the part of the file that has data, never from a hole (`validLength`): after an unclean stop
    /// the active segment's file still has its preallocated length, mostly sparse, and on a full tmpfs touching a
    /// hole through the mapping raises SIGBUS. The file is then cut to those entries, or grown to `capacityBytes`
    /// if that is larger, so a reopened active segment can take appends (as Kafka sizes an index by its entries and
    /// trims it on load).
    init(path: FilePath, entrySize: Int, capacityBytes: Int) throws(StorageError) {
        self.path = path
        self.entrySize = entrySize
        let fd = try FileIO.open(path, .readWrite, options: .create)
        defer { FileIO.close(fd) }
        let length = Int(try FileIO.size(fd, path: path))
        let valid = try Self.validLength(fd, length: length, entrySize: entrySize, path: path)
        self.entryCount = valid / entrySize
        self.capacityBytes = 0
        try self.remap(capacityBytes: max(capacityBytes, valid) / entrySize * entrySize, fd: fd)
    }

    /// Runs `body` with the file open for the call.
    private func withDescriptor<T>(_ operation: String, _ body: (FileDescriptor) throws(StorageError) -> T)
        throws(StorageError) -> T
    {
        guard !self.isClosed else { throw .io("\(operation) (index closed)", self.path, .badFileDescriptor) }
        let fd = try FileIO.open(self.path, .readWrite)
        defer { FileIO.close(fd) }
        return try body(fd)
    }

    /// Linux's SEEK_HOLE, which the C headers define only under _GNU_SOURCE, out of Swift's sight.
    static let seekHole: Int32 = 4

    /// The bytes of a file of `length` that hold entries: up to the end of the last entry with a non-zero byte,
    /// looking only before the file's first hole (entries are written from the start, each page allocated before
    /// its first entry, so nothing was ever written past a hole), read backwards with pread.
    static func validLength(
        _ fd: FileDescriptor,
        length: Int,
        entrySize: Int,
        path: FilePath
    ) throws(StorageError) -> Int {
        guard length > 0 else { return 0 }
        var end = length
        let hole = lseek(fd.rawValue, 0, Self.seekHole)
        if hole >= 0 { end = min(end, Int(hole)) }
        end = end / entrySize * entrySize
        // A trimmed file's last entry is non-zero: the first, small read finds it (start-up reads no more than
        // that per index); only the zeros an unclean stop left are read in larger steps.
        var chunk = [UInt8](repeating: 0, count: 4_096 / entrySize * entrySize)
        let largeChunk = 65_536 / entrySize * entrySize
        while end > 0 {
            let start = max(0, end - chunk.count)
            let count = try chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(StorageError) in
                    try FileIO.read(
                        fd,
                        into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<(end - start)]),
                        at: Int64(start),
                        path: path
                    )
                }
            }.get()
            if let last = chunk[..<count].lastIndex(where: { $0 != 0 }) {
                return (start + last) / entrySize * entrySize + entrySize
            }
            end = start
            if chunk.count < largeChunk { chunk = [UInt8](repeating: 0, count: largeChunk) }
        }
        return 0
    }

    deinit {
        self.unmap()
    }

    var maxEntries: Int { self.capacityBytes / self.entrySize }
    var isFull: Bool { self.entryCount >= self.maxEntries }
    var isOpen: Bool { !self.isClosed }

    private func unmap() {
        if let base = self.base {
            munmap(base, self.capacityBytes)
            self.base = nil
        }
    }

    /// Sets the file (open as `fd`) to `capacityBytes` and maps all of it; entries beyond it are dropped.
    private func remap(capacityBytes: Int, fd: FileDescriptor) throws(StorageError) {
        self.unmap()
        try FileIO.truncate(fd, to: Int64(capacityBytes), path: self.path)
        self.capacityBytes = capacityBytes
        self.reservedBytes = min(self.reservedBytes, capacityBytes)
        self.entryCount = min(self.entryCount, capacityBytes / self.entrySize)
        guard capacityBytes > 0 else { return }
        let mapped = mmap(nil, capacityBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0)
        guard let mapped, mapped != MAP_FAILED else { throw .io("mmap", self.path, Errno(rawValue: errno)) }
        // Entries are touched one page at a time: without this a fault in the sparse preallocated file reads ahead
        // (zero-fills) many pages, which made the last time-index entry written at each log's close cost more than
        // everything else in a clean stop of thousands of partitions.
        _ = madvise(mapped, capacityBytes, MADV_RANDOM)
        self.base = mapped
    }

    /// Grows (or shrinks) the preallocated file, keeping the entries that fit.
    func resize(capacityBytes: Int) throws(StorageError) {
        let rounded = max(capacityBytes / self.entrySize, self.entryCount) * self.entrySize
        guard rounded != self.capacityBytes else { return }
        try self.withDescriptor("resize") { (fd) throws(StorageError) in
            try self.remap(capacityBytes: rounded, fd: fd)
        }
    }

    /// Cuts the file down to its entries, for a segment that no longer takes appends.
    func trimToEntries() throws(StorageError) {
        try self.resize(capacityBytes: self.entryCount * self.entrySize)
    }

    func load<T: FixedWidthInteger>(entry: Int, field: Int, as type: T.Type) -> T {
        precondition(entry < self.entryCount)
        return T(bigEndian: self.base!.loadUnaligned(fromByteOffset: entry * self.entrySize + field, as: T.self))
    }

    /// Bytes from the start of the file known to have disk blocks behind them. The preallocated file is sparse (a
    /// partition's active indexes would otherwise take `segment.index.bytes` each on disk), and storing into a hole
    /// of a mapping on a full file system raises SIGBUS instead of an error; so each page gets its blocks with
    /// fallocate before the first entry lands in it, and a full disk becomes an ENOSPC error.
    private var reservedBytes = 0

    /// Makes sure the next entry's bytes are backed by disk blocks; call before `storeNext`.
    func reserveNextEntry() throws(StorageError) {
        let end = (self.entryCount + 1) * self.entrySize
        guard end > self.reservedBytes, !self.isClosed else { return }
        let page = 4096
        let target = min(self.capacityBytes, (end + page - 1) / page * page)
        let start = self.reservedBytes
        let result = try self.withDescriptor("fallocate") { fd in
            posix_fallocate(fd.rawValue, off_t(start), off_t(target - start))
        }
        // File systems without fallocate (EOPNOTSUPP) keep the old behaviour.
        guard result == 0 || result == EOPNOTSUPP else {
            throw .io("fallocate", self.path, Errno(rawValue: result))
        }
        self.reservedBytes = target
    }

    /// Writes one field of the entry after the last; `commitEntry` then counts it.
    func storeNext<T: FixedWidthInteger>(_ value: T, field: Int) {
        precondition(!self.isFull, "append to a full index \(self.path)")
        self.base!.storeBytes(of: value.bigEndian, toByteOffset: self.entryCount * self.entrySize + field, as: T.self)
    }

    func commitEntry() {
        self.entryCount += 1
    }

    /// Keeps the first `count` entries; the file keeps its capacity, stale bytes beyond are not counted.
    func truncate(toEntries count: Int) {
        self.entryCount = min(count, self.entryCount)
    }

    /// The largest entry number whose key is <= `target`, or nil if the first key is already above it. Keys must
    /// be nondecreasing in entry order.
    func largestEntry(atOrBelow target: Int64, key: (Int) -> Int64) -> Int? {
        guard self.entryCount > 0, key(0) <= target else { return nil }
        var low = 0
        var high = self.entryCount - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if key(middle) <= target { low = middle } else { high = middle - 1 }
        }
        return low
    }

    /// The smallest entry number whose key is >= `target`, or nil if none is.
    func smallestEntry(atOrAbove target: Int64, key: (Int) -> Int64) -> Int? {
        guard self.entryCount > 0, key(self.entryCount - 1) >= target else { return nil }
        var low = 0
        var high = self.entryCount - 1
        while low < high {
            let middle = (low + high) / 2
            if key(middle) >= target { high = middle } else { low = middle + 1 }
        }
        return low
    }

    /// Writes dirty pages to disk.
    func flush() throws(StorageError) {
        guard let base = self.base else { return }
        guard msync(base, self.capacityBytes, MS_SYNC) == 0 else {
            throw .io("msync", self.path, Errno(rawValue: errno))
        }
    }

    /// Trims (if asked) and closes; later calls fail until reopened by a new `IndexFile`. Trimming opens the file;
    /// if that fails transiently (no descriptor while a stop closes connections) the file keeps its length, which
    /// is safe: the next open reads it by its entries.
    func close(trim: Bool) throws(StorageError) {
        defer {
            self.unmap()
            self.isClosed = true
        }
        guard trim && !self.isClosed else { return }
        do throws(StorageError) {
            try self.trimToEntries()
        } catch let error where error.isTransient {
            return
        }
    }

    /// Closes and removes the file.
    func delete() throws(StorageError) {
        try? self.close(trim: false)
        try FileIO.unlink(self.path)
    }

    /// Renames the file (for `.deleted`), keeping it open and mapped.
    func rename(to newPath: FilePath) throws(StorageError) {
        try FileIO.rename(self.path, to: newPath)
        self.path = newPath
    }
}
