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
    /// The lease the key is attached to (it goes when the lease lapses or is revoked); nil for a lasting key.
    public var leaseID: Int64?

    public init(key: String, value: [UInt8], createRevision: Int64, modRevision: Int64, leaseID: Int64? = nil) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.leaseID = leaseID
    }
}

/// A condition of a transaction on one key (etcd's `Compare`). Every compare of a transaction must hold for its
/// operations to apply. A plain value; thread-safe.
public struct MetadataCompare: Hashable, Sendable {
    public enum Condition: Hashable, Sendable {
        /// The key's `modRevision` equals this; 0 means the key is absent.
        case modRevision(Int64)
        /// The key's `createRevision` equals this: the key is still the incarnation created then (an election key
        /// written once by its winner); 0 means the key is absent.
        case createRevision(Int64)
        /// The key exists and holds exactly these bytes.
        case value([UInt8])
    }

    public var key: String
    public var condition: Condition

    public init(key: String, _ condition: Condition) {
        self.key = key
        self.condition = condition
    }

    /// The key must not exist.
    public static func absent(_ key: String) -> Self { Self(key: key, .createRevision(0)) }

    /// The key's last write was at `revision` (0: the key is absent).
    public static func modRevision(of key: String, equals revision: Int64) -> Self {
        Self(key: key, .modRevision(revision))
    }

    /// The key is still the incarnation created at `revision` (0: the key is absent).
    public static func createRevision(of key: String, equals revision: Int64) -> Self {
        Self(key: key, .createRevision(revision))
    }

    /// The key exists and holds `value`.
    public static func value(of key: String, equals value: [UInt8]) -> Self { Self(key: key, .value(value)) }

    /// Whether the compare holds for `entry` (nil: the key is absent), as etcd evaluates it: an absent key has
    /// revisions 0 and no value, so a value compare on it fails.
    public func holds(for entry: MetadataEntry?) -> Bool {
        switch self.condition {
        case .modRevision(let revision): return (entry?.modRevision ?? 0) == revision
        case .createRevision(let revision): return (entry?.createRevision ?? 0) == revision
        case .value(let value): return entry?.value == value
        }
    }
}

/// One write of a transaction (etcd's `RequestOp` put and delete). A plain value; thread-safe.
public enum MetadataOperation: Hashable, Sendable {
    /// Puts `value` at `key`, attached to lease `leaseID` (nil: a lasting key; a put without a lease detaches the
    /// key from the lease it had).
    case put(key: String, value: [UInt8], leaseID: Int64? = nil)
    /// Deletes `key`; deleting an absent key is no change.
    case delete(key: String)

    public var key: String {
        switch self {
        case .put(let key, _, _), .delete(let key): return key
        }
    }
}

/// A transaction: if every compare holds, every operation applies at one new revision; otherwise nothing applies
/// and the answer names a compare that failed. Compares may name any key, not only the written ones, so a
/// controller fences each of its writes with a compare on its election key. A key may be written once per
/// transaction. A plain value; thread-safe.
public struct MetadataTransaction: Hashable, Sendable {
    public var compares: [MetadataCompare]
    public var operations: [MetadataOperation]

    public init(compares: [MetadataCompare] = [], operations: [MetadataOperation]) {
        self.compares = compares
        self.operations = operations
    }

    /// The larger of the compare count and the operation count: what a store's `maxOperationsPerTransaction`
    /// limits (etcd checks both against `--max-txn-ops`).
    public var operationCount: Int { max(self.compares.count, self.operations.count) }

    /// The transaction's size as a store's `maxTransactionBytes` counts it: every key and value, plus 32 bytes for
    /// each compare and operation.
    public var estimatedBytes: Int {
        let compares = self.compares.reduce(0) { total, compare in
            if case .value(let value) = compare.condition { return total + compare.key.utf8.count + value.count + 32 }
            return total + compare.key.utf8.count + 32
        }
        return self.operations.reduce(compares) { total, operation in
            if case .put(let key, let value, _) = operation { return total + key.utf8.count + value.count + 32 }
            return total + operation.key.utf8.count + 32
        }
    }
}

/// One write of `commit(_:)`'s convenience form: put `value` (or delete, when nil) if the key's `modRevision` is
/// still `expectedVersion`; 0 means "the key must not exist". A plain value; thread-safe.
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

/// The outcome of a transaction. A conflict is an expected answer (another writer got there first, or the writer
/// lost its election), not an error. A plain value; thread-safe.
public enum MetadataCommit: Hashable, Sendable {
    /// Every operation applied, at this store revision (a transaction that changed nothing, such as a delete of
    /// an absent key, answers the current revision).
    case committed(revision: Int64)
    /// Nothing applied: the compare on `key` failed; `current` is what the key holds now (nil if absent).
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

/// A change seen by a watch. A plain value; thread-safe.
public enum MetadataEvent: Hashable, Sendable {
    /// The key was written: its new entry.
    case put(MetadataEntry)
    /// The key was deleted (or its lease lapsed) at `revision`.
    case delete(key: String, revision: Int64)

    public var key: String {
        switch self {
        case .put(let entry): return entry.key
        case .delete(let key, _): return key
        }
    }
}

/// What one committed transaction changed under a watch's prefix: its revision and its events in the order the
/// transaction applied them. A watch delivers a transaction whole, never split. A plain value; thread-safe.
public struct MetadataTransactionEvents: Hashable, Sendable {
    public var revision: Int64
    public var events: [MetadataEvent]

    public init(revision: Int64, events: [MetadataEvent]) {
        self.revision = revision
        self.events = events
    }
}

/// A lease that keys can be attached to and that lapses unless kept alive; when it lapses or is revoked, every
/// key attached to it is deleted in one transaction. A plain value; thread-safe.
public struct MetadataLease: Hashable, Sendable {
    public var id: Int64
    /// The TTL granted.
    public var ttlSeconds: Int64

    public init(id: Int64, ttlSeconds: Int64) {
        self.id = id
        self.ttlSeconds = ttlSeconds
    }
}

/// The cluster metadata store of DESIGN.md ("Cluster"): a versioned key-value store with transactions, a revision
/// that increases by one on every transaction that changes something, watches and leases.
///
/// The model is etcd v3's, so `EtcdMetadataStore` implements it directly: keys are strings, values bytes, each key
/// carries the revisions of its creation and of its last write, `commit` is etcd's `Txn` (compares on any keys,
/// then puts and deletes), leases are etcd's leases and a watch is etcd's watch, delivered one transaction at a
/// time. `LocalMetadataStore` implements the same protocol in-process, so the standalone broker runs the same code
/// paths. This protocol knows nothing of Kafka.
///
/// Implementations must be thread-safe.
public protocol MetadataStore: Sendable {
    /// The most compares, and the most operations, one transaction may carry (etcd's `--max-txn-ops`, 128 by
    /// default); a larger change must be split into several transactions, each valid on its own.
    var maxOperationsPerTransaction: Int { get }

    /// The largest `MetadataTransaction.estimatedBytes` a transaction may have (etcd: its `--max-request-bytes`,
    /// 1.5 MiB by default, less room for the key prefix and the encoding); a larger change must be split.
    var maxTransactionBytes: Int { get }

    /// The revision of the last committed change; 0 for a local store that was never written (a new etcd starts at
    /// 1, and clusters sharing one etcd share its revisions, so a cluster's revisions may skip numbers).
    func revision() async throws(MetadataStoreError) -> Int64

    /// The entry of `key`, nil if absent.
    func get(_ key: String) async throws(MetadataStoreError) -> MetadataEntry?

    /// Every key starting with `prefix`, in key order, with the revision they were read at.
    func range(prefix: String) async throws(MetadataStoreError) -> MetadataRange

    /// Applies every operation of `transaction` at one new revision if all its compares hold, else none of them.
    /// - Throws: `invalidWrite` for a key written twice or an empty key, `tooManyOperations` beyond
    ///   `maxOperationsPerTransaction`, `transactionTooLarge` beyond `maxTransactionBytes`, `leaseNotFound` for a
    ///   put on a lapsed or unknown lease.
    func commit(_ transaction: MetadataTransaction) async throws(MetadataStoreError) -> MetadataCommit

    /// The transactions that change keys under `prefix`, from revision `fromRevision` on (a follower that applied
    /// revision R watches from R + 1; 0 means from the next revision), each delivered whole, in revision order,
    /// with only its events under `prefix`. It goes on until the consumer stops iterating or the store is shut
    /// down; the etcd store reconnects underneath it.
    /// - Throws: (from the sequence) `compacted` when the revisions from `fromRevision` on are no longer all in
    ///   the store's history: the caller re-reads with `range` and watches again from that range's revision + 1.
    func watch(prefix: String, fromRevision: Int64) async throws(MetadataStoreError) -> MetadataWatch

    /// A lease that lapses after `ttlSeconds` without a keep-alive.
    func grantLease(ttlSeconds: Int64) async throws(MetadataStoreError) -> MetadataLease

    /// Refreshes `lease` once and answers the TTL it has now, in seconds.
    /// - Throws: `leaseNotFound` when the lease lapsed or was revoked (its keys are gone).
    func keepAlive(_ lease: MetadataLease) async throws(MetadataStoreError) -> Int64

    /// Ends `lease` now, deleting its keys in one transaction.
    /// - Throws: `leaseNotFound` when it already lapsed or was revoked.
    func revoke(_ lease: MetadataLease) async throws(MetadataStoreError)
}

extension MetadataStore {
    /// Applies all of `writes` at one new revision if every key still has its `expectedVersion` (its `modRevision`,
    /// 0: absent), else none of them.
    public func commit(_ writes: [MetadataWrite]) async throws(MetadataStoreError) -> MetadataCommit {
        try await self.commit(
            MetadataTransaction(
                compares: writes.map { MetadataCompare.modRevision(of: $0.key, equals: $0.expectedVersion) },
                operations: writes.map { write in
                    write.value.map { .put(key: write.key, value: $0) } ?? .delete(key: write.key)
                }
            )
        )
    }

    /// Puts `value` at `key` (nil deletes it) if its `modRevision` is still `expectedVersion` (0: absent).
    public func compareAndSet(
        _ key: String,
        value: [UInt8]?,
        expectedVersion: Int64
    ) async throws(MetadataStoreError) -> MetadataCommit {
        try await self.commit([MetadataWrite(key: key, value: value, expectedVersion: expectedVersion)])
    }
}

/// One operation of a change too large for one transaction, with the compare that guards it (its key's
/// `modRevision` as last read, typically), or nil.
public struct GuardedOperation: Hashable, Sendable {
    public var operation: MetadataOperation
    public var compare: MetadataCompare?

    public init(_ operation: MetadataOperation, compare: MetadataCompare? = nil) {
        self.operation = operation
        self.compare = compare
    }
}

extension MetadataStore {
    /// `operations`, in order, cut into as few transactions as this store's limits allow
    /// (`maxOperationsPerTransaction`, `maxTransactionBytes`), each carrying every compare of `fence` (the
    /// controller's election key) and the compares of its own operations. Each transaction then commits or fails
    /// on its own, so the caller orders `operations` such that every prefix of them leaves a consistent image.
    /// - Throws: `tooManyOperations` or `transactionTooLarge` when `fence` with a single operation already exceeds
    ///   a limit.
    public func transactions(
        fencedBy fence: [MetadataCompare],
        _ operations: [GuardedOperation]
    ) throws(MetadataStoreError) -> [MetadataTransaction] {
        let empty = MetadataTransaction(compares: fence, operations: [])
        var transactions: [MetadataTransaction] = []
        var current = empty
        var currentBytes = empty.estimatedBytes
        for guarded in operations {
            var single = MetadataTransaction(compares: [], operations: [guarded.operation])
            if let compare = guarded.compare { single.compares.append(compare) }
            let bytes = single.estimatedBytes
            let fits = { (transaction: MetadataTransaction, bytes: Int) -> Bool in
                transaction.compares.count + single.compares.count <= self.maxOperationsPerTransaction
                    && transaction.operations.count + 1 <= self.maxOperationsPerTransaction
                    && bytes <= self.maxTransactionBytes
            }
            if !fits(current, currentBytes + bytes), !current.operations.isEmpty {
                transactions.append(current)
                (current, currentBytes) = (empty, empty.estimatedBytes)
            }
            guard fits(current, currentBytes + bytes) else {
                if fence.count + single.compares.count > self.maxOperationsPerTransaction {
                    throw .tooManyOperations(
                        count: fence.count + single.compares.count,
                        limit: self.maxOperationsPerTransaction
                    )
                }
                throw .transactionTooLarge(bytes: currentBytes + bytes, limit: self.maxTransactionBytes)
            }
            current.compares += single.compares
            current.operations.append(guarded.operation)
            currentBytes += bytes
        }
        if !current.operations.isEmpty { transactions.append(current) }
        return transactions
    }
}

/// The checks every store makes before a transaction reaches its storage: no empty key, no key written twice.
extension MetadataTransaction {
    package func validate() throws(MetadataStoreError) {
        var written: Set<String> = []
        for operation in self.operations {
            guard !operation.key.isEmpty else { throw .invalidWrite("an empty key") }
            guard written.insert(operation.key).inserted else {
                throw .invalidWrite("the key '\(operation.key)' is written twice")
            }
        }
        guard !self.compares.contains(where: { $0.key.isEmpty }) else {
            throw .invalidWrite("a compare on an empty key")
        }
    }
}
