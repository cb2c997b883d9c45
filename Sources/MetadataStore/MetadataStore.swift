/// One key of a `MetadataStore`, with the revisions that make compare-and-set possible.
///
/// The revisions follow etcd v3's `KeyValue`: `modRevision` is the store revision of the key's last write, which is
/// what compare-and-set compares, so a reader that saw `modRevision` can write back only if nobody wrote since.
/// A plain value; thread-safe.
public struct MetadataEntry: Hashable, Sendable {
    public var key: String
    public var value: [UInt8]
    /// The store revision at which the key was created (it resets when the key is deleted and written again).
    public var createRevision: Int64
    /// The store revision of the key's last write; compare-and-set compares against this.
    public var modRevision: Int64

    public init(key: String, value: [UInt8], createRevision: Int64, modRevision: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
    }
}

/// One write of a transaction: put `value` (or delete, when nil) if the key's `modRevision` is still
/// `expectedVersion`; 0 means "the key must not exist". A plain value; thread-safe.
public struct MetadataWrite: Hashable, Sendable {
    public var key: String
    /// The new value; nil deletes the key.
    public var value: [UInt8]?
    /// The `modRevision` the writer last saw, or 0 for a key that must be absent.
    public var expectedVersion: Int64

    public init(key: String, value: [UInt8]?, expectedVersion: Int64) {
        self.key = key
        self.value = value
        self.expectedVersion = expectedVersion
    }
}

/// The outcome of a compare-and-set. A conflict is an expected answer (another writer got there first), not an
/// error. A plain value; thread-safe.
public enum MetadataCommit: Hashable, Sendable {
    /// Every write applied, at this new store revision.
    case committed(revision: Int64)
    /// Nothing applied: `key` had another version; `current` is what it holds now (nil if absent).
    case conflict(key: String, current: MetadataEntry?)
}

/// Keys under a prefix, read at one revision. A plain value; thread-safe.
public struct MetadataRange: Hashable, Sendable {
    /// Sorted by key.
    public var entries: [MetadataEntry]
    /// The store revision the entries were read at.
    public var revision: Int64

    public init(entries: [MetadataEntry], revision: Int64) {
        self.entries = entries
        self.revision = revision
    }
}

/// A change seen by a watch (the etcd implementation comes with the cluster issue).
public enum MetadataEvent: Hashable, Sendable {
    case put(MetadataEntry)
    case delete(key: String, revision: Int64)
}

/// A lease that keys can be attached to and that lapses unless kept alive (the etcd implementation comes with the
/// cluster issue; the controller lease election needs it).
public struct MetadataLease: Hashable, Sendable {
    public var id: Int64
    public var ttlSeconds: Int64

    public init(id: Int64, ttlSeconds: Int64) {
        self.id = id
        self.ttlSeconds = ttlSeconds
    }
}

/// The cluster metadata store of DESIGN.md ("Cluster"): a versioned key-value store with compare-and-set, a
/// revision that increases by one on every committed transaction, and (in clustered mode) watches and leases.
///
/// The model is etcd v3's, so `EtcdMetadataStore` (the cluster issue) can implement it directly: keys are strings,
/// values bytes, each key carries the revision of its last write, and `commit` is etcd's `Txn` with one
/// `mod_revision` compare per key. This protocol knows nothing of Kafka.
///
/// Implementations must be thread-safe.
public protocol MetadataStore: Sendable {
    /// The revision of the last committed write; 0 for an empty store that was never written.
    func revision() async throws(MetadataStoreError) -> Int64

    /// The entry of `key`, nil if absent.
    func get(_ key: String) async throws(MetadataStoreError) -> MetadataEntry?

    /// Every key starting with `prefix`, in key order, with the revision they were read at.
    func range(prefix: String) async throws(MetadataStoreError) -> MetadataRange

    /// Applies all of `writes` at one new revision if every key still has its `expectedVersion`, else none of them.
    func commit(_ writes: [MetadataWrite]) async throws(MetadataStoreError) -> MetadataCommit

    /// Changes under `prefix` after `revision`. Only the etcd store (the cluster issue) will have watches.
    func watch(prefix: String, after revision: Int64) async throws(MetadataStoreError) -> AsyncStream<MetadataEvent>

    /// A lease that lapses after `ttlSeconds` without a keep-alive. Only the etcd store (the cluster issue) will have
    /// leases.
    func grantLease(ttlSeconds: Int64) async throws(MetadataStoreError) -> MetadataLease
}

extension MetadataStore {
    /// Puts `value` at `key` (nil deletes it) if its `modRevision` is still `expectedVersion` (0: absent).
    public func compareAndSet(
        _ key: String,
        value: [UInt8]?,
        expectedVersion: Int64
    ) async throws(MetadataStoreError) -> MetadataCommit {
        try await self.commit([MetadataWrite(key: key, value: value, expectedVersion: expectedVersion)])
    }
}
