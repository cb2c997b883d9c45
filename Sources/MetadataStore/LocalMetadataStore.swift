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
/// Watches and leases are in-process, as etcd's are across processes, so the standalone broker runs the code paths
/// of a cluster:
/// - A watch is fed on each commit, under the lock, so it sees every transaction once and in order. The store keeps
///   the last `historyLimit` transactions since it was opened; a watch from an older revision (or from before the
///   open) fails with `compacted`, as an etcd watch does after a compaction.
/// - A lease lapses on `clock`: checked on every call and by a sweep every 100 ms while leases exist. A lapsed or
///   revoked lease deletes its keys in one transaction. A lease cannot outlive the process, so neither can its
///   keys: keys attached to a lease are kept in memory only, never in the file (whose format has no lease field).
///
/// Thread-safe: all state is guarded by `state`, a `Mutex`, held across the file write so commits are serialised.
/// The leases' deadlines have a `Mutex` of their own, so a keep-alive never waits behind a commit's fsyncs: on a
/// busy disk those took seconds, and a lease then lapsed while its holder's keep-alive was waiting for the lock.
public final class LocalMetadataStore: MetadataStore {
    private struct LeaseDeadline {
        var ttlSeconds: Int64
        var deadline: Duration
    }

    private struct Watcher {
        var prefix: String
        var continuation: AsyncThrowingStream<MetadataTransactionEvents, any Error>.Continuation
        var end: WatchEnd
    }

    /// Set when a watch's reader goes away. Its termination handler must not take the store's lock: it can run
    /// while a commit holding that lock hands the reader a transaction (and waits on the reader's task), so the next
    /// commit drops the watcher instead.
    private final class WatchEnd: Sendable {
        let ended = Atomic<Bool>(false)
    }

    private struct State {
        var revision: Int64 = 0
        var entries: [String: MetadataEntry] = [:]
        /// The keys attached to each live lease (its deadline is in `leaseDeadlines`).
        var leases: [Int64: Set<String>] = [:]
        var nextLeaseID = Int64.random(in: 1..<(1 << 62))
        var sweeping = false
        /// The last transactions, oldest first; everything up to `compactRevision` is no longer kept.
        var history: [MetadataTransactionEvents] = []
        var compactRevision: Int64 = 0
        var watchers: [Int: Watcher] = [:]
        var nextWatcherID = 0
    }

    /// The store's file.
    public let path: String
    /// The most operations per transaction; unlimited unless set (the standalone broker writes its whole image at
    /// once), 128 to behave as etcd's default.
    public let maxOperationsPerTransaction: Int
    /// The largest transaction; unlimited unless set.
    public let maxTransactionBytes: Int
    /// How many past transactions a new watch can start from.
    public let historyLimit: Int
    private let clock: LeaseClock
    private let state: Mutex<State>
    /// Taken after `state` when both are needed, or alone (keep-alives); a lease here exists in `state.leases`.
    private let leaseDeadlines = Mutex<[Int64: LeaseDeadline]>([:])
    private let logger: Logger

    private static let magic = Array("LBMETA01".utf8)

    /// Opens the store at `path`, loading it if the file exists (a leftover `.tmp` from a crash is removed); a
    /// missing file is an empty store at revision 0, created by the first commit. The directory must exist.
    public init(
        path: String,
        logger: Logger = Logger(label: "metadata-store"),
        clock: LeaseClock = .continuous,
        maxOperationsPerTransaction: Int = .max,
        maxTransactionBytes: Int = .max,
        historyLimit: Int = 1000
    ) throws(MetadataStoreError) {
        self.path = path
        self.logger = logger
        self.clock = clock
        self.maxOperationsPerTransaction = maxOperationsPerTransaction
        self.maxTransactionBytes = maxTransactionBytes
        self.historyLimit = historyLimit
        unlink(path + ".tmp")
        var loaded = try Self.load(path: path)
        loaded.compactRevision = loaded.revision
        self.state = Mutex(loaded)
        Self.keepReserve(for: path, storeBytes: Self.encode(loaded).count, logger: logger)
    }

    deinit {
        let watchers = self.state.withLock { state in
            defer { state.watchers = [:] }
            return state.watchers.values
        }
        for watcher in watchers {
            watcher.continuation.finish(throwing: MetadataStoreError.closed("the store is gone"))
        }
    }

    public func revision() async throws(MetadataStoreError) -> Int64 {
        try self.locked { state throws(MetadataStoreError) in state.revision }
    }

    public func get(_ key: String) async throws(MetadataStoreError) -> MetadataEntry? {
        try self.locked { state throws(MetadataStoreError) in state.entries[key] }
    }

    public func range(prefix: String) async throws(MetadataStoreError) -> MetadataRange {
        try self.locked { state throws(MetadataStoreError) in
            let entries = state.entries.values.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }
            return MetadataRange(entries: entries, revision: state.revision)
        }
    }

    public func commit(_ transaction: MetadataTransaction) async throws(MetadataStoreError) -> MetadataCommit {
        try transaction.validate()
        guard transaction.operationCount <= self.maxOperationsPerTransaction else {
            throw .tooManyOperations(count: transaction.operationCount, limit: self.maxOperationsPerTransaction)
        }
        guard self.maxTransactionBytes == .max || transaction.estimatedBytes <= self.maxTransactionBytes else {
            throw .transactionTooLarge(bytes: transaction.estimatedBytes, limit: self.maxTransactionBytes)
        }
        return try self.locked { (state: inout State) throws(MetadataStoreError) -> MetadataCommit in
            for compare in transaction.compares where !compare.holds(for: state.entries[compare.key]) {
                return .conflict(key: compare.key, current: state.entries[compare.key])
            }
            for case .put(_, _, let leaseID?) in transaction.operations where state.leases[leaseID] == nil {
                throw .leaseNotFound(leaseID)
            }
            try self.apply(transaction.operations, to: &state)
            return .committed(revision: state.revision)
        }
    }

    public func watch(prefix: String, fromRevision: Int64) async throws(MetadataStoreError) -> MetadataWatch {
        let (watch, continuation) = MetadataWatch.makeWatch()
        let end = WatchEnd()
        continuation.onTermination = { _ in end.ended.store(true, ordering: .relaxed) }
        let registered = try self.locked { (state: inout State) throws(MetadataStoreError) -> Bool in
            let start = fromRevision <= 0 ? state.revision + 1 : fromRevision
            guard start > state.compactRevision else { return false }
            for transaction in state.history where transaction.revision >= start {
                if let events = Self.filter(transaction, prefix: prefix) { continuation.yield(events) }
            }
            let id = state.nextWatcherID
            state.nextWatcherID += 1
            state.watchers[id] = Watcher(prefix: prefix, continuation: continuation, end: end)
            return true
        }
        guard registered else {
            let compactRevision = self.state.withLock { $0.compactRevision }
            continuation.finish(throwing: MetadataStoreError.compacted(compactRevision: compactRevision))
            return watch
        }
        return watch
    }

    public func grantLease(ttlSeconds: Int64) async throws(MetadataStoreError) -> MetadataLease {
        guard ttlSeconds > 0 else { throw .invalidWrite("a lease TTL of \(ttlSeconds) s") }
        let (lease, startSweep) = try self.locked { (state: inout State) throws(MetadataStoreError) in
            let id = state.nextLeaseID
            state.nextLeaseID += 1
            state.leases[id] = []
            self.leaseDeadlines.withLock {
                $0[id] = LeaseDeadline(ttlSeconds: ttlSeconds, deadline: self.clock.now() + .seconds(ttlSeconds))
            }
            defer { state.sweeping = true }
            return (MetadataLease(id: id, ttlSeconds: ttlSeconds), !state.sweeping)
        }
        if startSweep { self.startSweep() }
        return lease
    }

    /// Renews the lease under the deadlines' lock only. A lease whose deadline has passed is not renewed, even if
    /// its keys are not deleted yet: the next call or sweep ends it.
    public func keepAlive(_ lease: MetadataLease) async throws(MetadataStoreError) -> Int64 {
        try self.leaseDeadlines.withLock { (deadlines: inout [Int64: LeaseDeadline]) throws(MetadataStoreError) in
            let now = self.clock.now()
            guard var current = deadlines[lease.id], current.deadline > now else { throw .leaseNotFound(lease.id) }
            current.deadline = now + .seconds(current.ttlSeconds)
            deadlines[lease.id] = current
            return current.ttlSeconds
        }
    }

    public func revoke(_ lease: MetadataLease) async throws(MetadataStoreError) {
        try self.locked { (state: inout State) throws(MetadataStoreError) in
            guard state.leases[lease.id] != nil else { throw .leaseNotFound(lease.id) }
            try self.end(lease: lease.id, in: &state)
        }
    }

    /// Ends every lease whose deadline passed on `clock`, deleting its keys. Every call does this first; the sweep
    /// calls it while leases exist, and a test on a manual clock may call it after moving the clock.
    public func expireLapsedLeases() throws(MetadataStoreError) {
        try self.locked { (_: inout State) throws(MetadataStoreError) in }
    }

    /// Forgets the history up to `revision`, as etcd's compaction does: a watch from `revision` or earlier then
    /// fails with `compacted`.
    public func compact(upTo revision: Int64) throws(MetadataStoreError) {
        try self.locked { (state: inout State) throws(MetadataStoreError) in
            guard revision > state.compactRevision else { return }
            state.compactRevision = min(revision, state.revision)
            state.history.removeAll { $0.revision <= state.compactRevision }
        }
    }

    // MARK: - Applying

    /// Runs `body` under the lock after ending the leases that lapsed.
    private func locked<Result>(
        _ body: (inout State) throws(MetadataStoreError) -> Result
    ) throws(MetadataStoreError) -> Result {
        try self.state.withLock { (state: inout State) throws(MetadataStoreError) -> Result in
            let now = self.clock.now()
            let lapsed = self.leaseDeadlines.withLock { deadlines in
                deadlines.filter { $0.value.deadline <= now }.keys.sorted()
            }
            for id in lapsed {
                try self.end(lease: id, in: &state)
            }
            return try body(&state)
        }
    }

    /// Deletes the keys of lease `id` in one transaction, then forgets the lease.
    private func end(lease id: Int64, in state: inout State) throws(MetadataStoreError) {
        guard let keys = state.leases[id] else { return }
        try self.apply(keys.sorted().map { .delete(key: $0) }, to: &state)
        state.leases[id] = nil
        _ = self.leaseDeadlines.withLock { $0.removeValue(forKey: id) }
        self.logger.debug("metadata store lease ended", metadata: ["lease": "\(id)", "keys": "\(keys.count)"])
    }

    /// Applies `operations` at the next revision: the file first (only keys without a lease), then memory, the
    /// leases' key sets, the history and the watchers. Operations that change nothing (deletes of absent keys) take
    /// no revision, as in etcd.
    private func apply(_ operations: [MetadataOperation], to state: inout State) throws(MetadataStoreError) {
        var next = state
        let revision = state.revision + 1
        var events: [MetadataEvent] = []
        for operation in operations {
            let current = state.entries[operation.key]
            switch operation {
            case .put(let key, let value, let leaseID):
                let entry = MetadataEntry(
                    key: key,
                    value: value,
                    createRevision: current?.createRevision ?? revision,
                    modRevision: revision,
                    leaseID: leaseID
                )
                next.entries[key] = entry
                events.append(.put(entry))
                if let old = current?.leaseID { next.leases[old]?.remove(key) }
                if let leaseID { next.leases[leaseID]?.insert(key) }
            case .delete(let key):
                guard let current else { continue }
                next.entries[key] = nil
                events.append(.delete(key: key, revision: revision))
                if let old = current.leaseID { next.leases[old]?.remove(key) }
            }
        }
        guard !events.isEmpty else { return }
        next.revision = revision
        try Self.writeUsingReserve(next, to: self.path, logger: self.logger)
        let transaction = MetadataTransactionEvents(revision: revision, events: events)
        next.history.append(transaction)
        if next.history.count > self.historyLimit {
            let dropped = next.history.count - self.historyLimit
            next.compactRevision = next.history[dropped - 1].revision
            next.history.removeFirst(dropped)
        }
        for (id, watcher) in next.watchers {
            guard !watcher.end.ended.load(ordering: .relaxed) else {
                next.watchers[id] = nil
                continue
            }
            if let events = Self.filter(transaction, prefix: watcher.prefix) { watcher.continuation.yield(events) }
        }
        state = next
    }

    /// The events of `transaction` under `prefix`, nil when there are none.
    private static func filter(_ transaction: MetadataTransactionEvents, prefix: String) -> MetadataTransactionEvents? {
        let events = transaction.events.filter { $0.key.hasPrefix(prefix) }
        return events.isEmpty ? nil : MetadataTransactionEvents(revision: transaction.revision, events: events)
    }

    /// Calls `expireLapsedLeases` every 100 ms while leases exist; a lease's keys so go within 100 ms of its
    /// deadline even when nobody calls the store (etcd checks every 500 ms).
    private func startSweep() {
        Task { [weak self] in
            while true {
                try? await Task.sleep(for: .milliseconds(100))
                guard let self else { return }
                let more: Bool
                do {
                    more = try self.locked { (state: inout State) throws(MetadataStoreError) -> Bool in
                        if state.leases.isEmpty { state.sweeping = false }
                        return state.sweeping
                    }
                } catch {
                    self.logger.warning("metadata store could not end a lapsed lease", metadata: ["error": "\(error)"])
                    more = true
                }
                if !more { return }
            }
        }
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
        let lasting = state.entries.values.filter { $0.leaseID == nil }.sorted(by: { $0.key < $1.key })
        writer.integer(UInt32(lasting.count))
        for entry in lasting {
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
