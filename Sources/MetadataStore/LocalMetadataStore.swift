import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The standalone metadata store: every key in memory, and the whole store in one file, rewritten atomically on
/// every commit (written to `<file>.tmp`, fsynced, renamed over the file, then the directory fsynced), so a crash
/// leaves either the old or the new store, never a mix.
///
/// File layout (big-endian): magic `LBMETA01`, revision (8 bytes), entry count (4), then per entry the key length
/// (4) and UTF-8 bytes, the value length (4) and bytes, createRevision (8) and modRevision (8); then an FNV-1a 64
/// checksum (8) of everything before it. A file that fails to parse stops start-up (`MetadataStoreError.corrupt`).
///
/// Cluster metadata is written rarely (start-up, topic creation, elections) and is small, so rewriting the file is
/// cheap. The write and fsync run on the calling thread while the lock is held; moving them to the broker's I/O
/// thread pool (DESIGN.md principle 3) is still to do.
///
/// Watches and leases are not implemented here: they throw `unsupported`; the etcd implementation comes with the
/// cluster issue.
///
/// Thread-safe: all state is guarded by `state`, a `Mutex`, held across the file write so commits are serialised.
public final class LocalMetadataStore: MetadataStore {
    private struct State {
        var revision: Int64 = 0
        var entries: [String: MetadataEntry] = [:]
    }

    /// The store's file.
    public let path: String
    private let state: Mutex<State>
    private let logger: Logger

    private static let magic = Array("LBMETA01".utf8)

    /// Opens the store at `path`, loading it if the file exists (a leftover `.tmp` from a crash is removed); a
    /// missing file is an empty store at revision 0, created by the first commit. The directory must exist.
    public init(path: String, logger: Logger = Logger(label: "metadata-store")) throws(MetadataStoreError) {
        self.path = path
        self.logger = logger
        unlink(path + ".tmp")
        let loaded = try Self.load(path: path)
        self.state = Mutex(loaded)
        Self.keepReserve(for: path, storeBytes: Self.encode(loaded).count, logger: logger)
    }

    public func revision() async throws(MetadataStoreError) -> Int64 {
        self.state.withLock { $0.revision }
    }

    public func get(_ key: String) async throws(MetadataStoreError) -> MetadataEntry? {
        self.state.withLock { $0.entries[key] }
    }

    public func range(prefix: String) async throws(MetadataStoreError) -> MetadataRange {
        self.state.withLock { state in
            let entries = state.entries.values.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }
            return MetadataRange(entries: entries, revision: state.revision)
        }
    }

    public func commit(_ writes: [MetadataWrite]) async throws(MetadataStoreError) -> MetadataCommit {
        guard Set(writes.map(\.key)).count == writes.count else { throw .invalidWrite("a key appears twice") }
        guard !writes.contains(where: { $0.key.isEmpty }) else { throw .invalidWrite("an empty key") }
        return try self.state.withLock { (state: inout State) throws(MetadataStoreError) -> MetadataCommit in
            for write in writes {
                let current = state.entries[write.key]
                guard (current?.modRevision ?? 0) == write.expectedVersion else {
                    return .conflict(key: write.key, current: current)
                }
            }
            var next = state
            next.revision += 1
            for write in writes {
                if let value = write.value {
                    let created = state.entries[write.key]?.createRevision ?? next.revision
                    next.entries[write.key] = MetadataEntry(
                        key: write.key,
                        value: value,
                        createRevision: created,
                        modRevision: next.revision
                    )
                } else {
                    next.entries[write.key] = nil
                }
            }
            try Self.writeUsingReserve(next, to: self.path, logger: self.logger)
            state = next
            return .committed(revision: next.revision)
        }
    }

    public func watch(
        prefix: String,
        after revision: Int64
    ) async throws(MetadataStoreError) -> AsyncStream<MetadataEvent> {
        throw .unsupported("watch")
    }

    public func grantLease(ttlSeconds: Int64) async throws(MetadataStoreError) -> MetadataLease {
        throw .unsupported("leases")
    }

    // MARK: - The file

    private static func load(path: String) throws(MetadataStoreError) -> State {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        if descriptor < 0 {
            if errno == ENOENT { return State() }
            throw .io(path: path, operation: "open", errno: errno)
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read", errno: errno)
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return try Self.decode(bytes, path: path)
    }

    private static func encode(_ state: State) -> [UInt8] {
        var writer = ByteWriter(bytes: Self.magic)
        writer.integer(state.revision)
        writer.integer(UInt32(state.entries.count))
        for entry in state.entries.values.sorted(by: { $0.key < $1.key }) {
            let key = Array(entry.key.utf8)
            writer.integer(UInt32(key.count))
            writer.bytes.append(contentsOf: key)
            writer.integer(UInt32(entry.value.count))
            writer.bytes.append(contentsOf: entry.value)
            writer.integer(entry.createRevision)
            writer.integer(entry.modRevision)
        }
        let sum = Self.checksum(writer.bytes[...])
        writer.integer(sum)
        return writer.bytes
    }

    private static func decode(_ bytes: [UInt8], path: String) throws(MetadataStoreError) -> State {
        guard bytes.count >= Self.magic.count + 20, Array(bytes[0..<Self.magic.count]) == Self.magic else {
            throw .corrupt(path: path, reason: "no LBMETA01 header")
        }
        let body = bytes[0..<(bytes.count - 8)]
        var reader = ByteReader(bytes: bytes, position: bytes.count - 8)
        guard let stored = reader.integer(as: UInt64.self), stored == Self.checksum(body) else {
            throw .corrupt(path: path, reason: "checksum mismatch")
        }
        reader = ByteReader(bytes: Array(body), position: Self.magic.count)
        guard let revision = reader.integer(as: Int64.self), let count = reader.integer(as: UInt32.self) else {
            throw .corrupt(path: path, reason: "truncated header")
        }
        var state = State(revision: revision)
        for _ in 0..<count {
            guard let keyLength = reader.integer(as: UInt32.self), let key = reader.bytes(Int(keyLength)),
                let valueLength = reader.integer(as: UInt32.self), let value = reader.bytes(Int(valueLength)),
                let created = reader.integer(as: Int64.self), let modified = reader.integer(as: Int64.self)
            else {
                throw .corrupt(path: path, reason: "truncated entry")
            }
            let name = String(decoding: key, as: UTF8.self)
            state.entries[name] = MetadataEntry(key: name, value: value, createRevision: created, modRevision: modified)
        }
        guard reader.position == body.count else { throw .corrupt(path: path, reason: "bytes after the last entry") }
        return state
    }

    /// FNV-1a, 64 bits: enough to catch a torn or damaged file (the rename makes torn writes unlikely anyway).
    private static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// The space kept for the store's own commits on a full disk: `<file>.reserve`, allocated with fallocate, at
    /// least 1 MiB and twice the store. The store lives in the first log directory, which appends can fill to the
    /// last byte; without the reserve a broker could then neither start (registration and its re-elections are
    /// commits) nor run DeleteRecords' and retention's way out.
    static func reserveBytes(storeBytes: Int) -> Int { max(1 << 20, 2 * storeBytes) }

    /// Grows `<path>.reserve` to its size; on a disk without room it keeps what it has (logged, not thrown).
    private static func keepReserve(for path: String, storeBytes: Int, logger: Logger) {
        let reserve = path + ".reserve"
        let descriptor = open(reserve, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        let result = posix_fallocate(descriptor, 0, off_t(Self.reserveBytes(storeBytes: storeBytes)))
        if result != 0 && result != EOPNOTSUPP {
            logger.warning(
                "Could not reserve space for the metadata store's commits",
                metadata: ["path": "\(reserve)", "errno": "\(result)"]
            )
        }
    }

    /// `write`, and when the disk is full (ENOSPC, EDQUOT) `write` again after giving the reserve back; the
    /// reserve is grown again afterwards as far as the disk allows.
    private static func writeUsingReserve(_ state: State, to path: String, logger: Logger) throws(MetadataStoreError) {
        do {
            try Self.write(state, to: path)
        } catch let error where error.errno == ENOSPC || error.errno == EDQUOT {
            guard truncate(path + ".reserve", 0) == 0 else { throw error }
            logger.warning("The disk is full: the metadata store commits into its reserved space")
            try Self.write(state, to: path)
        }
        Self.keepReserve(for: path, storeBytes: Self.encode(state).count, logger: logger)
    }

    /// Temp file, fsync, rename, directory fsync.
    private static func write(_ state: State, to path: String) throws(MetadataStoreError) {
        let temporary = path + ".tmp"
        let bytes = Self.encode(state)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw .io(path: temporary, operation: "open", errno: errno) }
        let failure: Int32? = bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let count = Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if count < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += count
            }
            return nil
        }
        if let failure {
            close(descriptor)
            throw .io(path: temporary, operation: "write", errno: failure)
        }
        guard fsync(descriptor) == 0 else {
            let error = errno
            close(descriptor)
            throw .io(path: temporary, operation: "fsync", errno: error)
        }
        close(descriptor)
        guard rename(temporary, path) == 0 else { throw .io(path: path, operation: "rename", errno: errno) }
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) }.map { $0.isEmpty ? "/" : $0 } ?? "."
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryDescriptor >= 0 else { throw .io(path: directory, operation: "open", errno: errno) }
        defer { close(directoryDescriptor) }
        guard fsync(directoryDescriptor) == 0 else { throw .io(path: directory, operation: "fsync", errno: errno) }
    }
}

/// Appends big-endian integers. A value used by one encoder.
private struct ByteWriter {
    var bytes: [UInt8]

    mutating func integer<T: FixedWidthInteger>(_ value: T) {
        for shift in stride(from: (MemoryLayout<T>.size - 1) * 8, through: 0, by: -8) {
            self.bytes.append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }
}

/// Bounds-checked big-endian reads over a byte array; nil when the bytes run out. A value used by one decoder.
private struct ByteReader {
    let bytes: [UInt8]
    var position: Int

    mutating func integer<T: FixedWidthInteger>(as: T.Type) -> T? {
        let size = MemoryLayout<T>.size
        guard self.bytes.count - self.position >= size else { return nil }
        var value: T = 0
        for byte in self.bytes[self.position..<(self.position + size)] { value = value << 8 | T(byte) }
        self.position += size
        return value
    }

    mutating func bytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, self.bytes.count - self.position >= count else { return nil }
        defer { self.position += count }
        return Array(self.bytes[self.position..<(self.position + count)])
    }
}
