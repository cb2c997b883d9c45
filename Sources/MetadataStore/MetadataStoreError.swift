/// Why a metadata store operation failed. A failed compare is not an error (`MetadataCommit.conflict`).
///
/// One struct around a private code, as every target's error (STYLE.md §8.10); `description` names the file or
/// the etcd endpoint. A plain value; thread-safe.
public struct MetadataStoreError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case io(path: String, operation: String, errno: Int32)
        case corrupt(path: String, reason: String)
        case invalidWrite(String)
        case invalidConfiguration(String)
        case tooManyOperations(count: Int, limit: Int)
        case transactionTooLarge(bytes: Int, limit: Int)
        case compacted(compactRevision: Int64)
        case leaseNotFound(Int64)
        case unreachable(endpoints: [String], reason: String)
        case rejected(endpoint: String, code: Int, message: String)
        case invalidResponse(endpoint: String, reason: String)
        case closed(String)
    }

    private let code: Code

    private init(_ code: Code) { self.code = code }

    /// A system call on the store's file failed.
    public static func io(path: String, operation: String, errno: Int32) -> Self {
        Self(.io(path: path, operation: operation, errno: errno))
    }

    /// The store's file does not parse or fails its checksum: start-up must stop, not start an empty cluster.
    public static func corrupt(path: String, reason: String) -> Self { Self(.corrupt(path: path, reason: reason)) }

    /// A transaction that names a key twice, or an empty key.
    public static func invalidWrite(_ reason: String) -> Self { Self(.invalidWrite(reason)) }

    /// The store's settings cannot work (no etcd endpoint, an endpoint that is not an `http://` URL).
    public static func invalidConfiguration(_ reason: String) -> Self { Self(.invalidConfiguration(reason)) }

    /// A transaction with more compares or operations than the store takes (etcd: `--max-txn-ops`).
    public static func tooManyOperations(count: Int, limit: Int) -> Self {
        Self(.tooManyOperations(count: count, limit: limit))
    }

    /// A transaction larger than the store takes in one request (etcd: `--max-request-bytes`).
    public static func transactionTooLarge(bytes: Int, limit: Int) -> Self {
        Self(.transactionTooLarge(bytes: bytes, limit: limit))
    }

    /// A watch's start revision is older than the store's history: everything up to `compactRevision` was
    /// compacted away. The watcher re-reads the whole prefix and watches again from there.
    public static func compacted(compactRevision: Int64) -> Self { Self(.compacted(compactRevision: compactRevision)) }

    /// The lease lapsed, was revoked, or never existed; keys attached to it are gone.
    public static func leaseNotFound(_ id: Int64) -> Self { Self(.leaseNotFound(id)) }

    /// No endpoint answered (each tried in turn), or the connection failed before the answer (a transaction's
    /// outcome is then unknown: the caller re-reads).
    public static func unreachable(endpoints: [String], reason: String) -> Self {
        Self(.unreachable(endpoints: endpoints, reason: reason))
    }

    /// The store answered with an error (etcd's gRPC code and message).
    public static func rejected(endpoint: String, code: Int, message: String) -> Self {
        Self(.rejected(endpoint: endpoint, code: code, message: message))
    }

    /// The store's answer could not be read.
    public static func invalidResponse(endpoint: String, reason: String) -> Self {
        Self(.invalidResponse(endpoint: endpoint, reason: reason))
    }

    /// The store was shut down, or a watch ended for another reason than compaction.
    public static func closed(_ reason: String) -> Self { Self(.closed(reason)) }

    /// The errno of a failed system call, nil for other failures.
    public var errno: Int32? {
        if case .io(_, _, let errno) = self.code { return errno }
        return nil
    }

    public var isCorrupt: Bool {
        if case .corrupt = self.code { return true }
        return false
    }

    /// The revision compacted away, for a `compacted` error.
    public var compactRevision: Int64? {
        if case .compacted(let revision) = self.code { return revision }
        return nil
    }

    public var isLeaseNotFound: Bool {
        if case .leaseNotFound = self.code { return true }
        return false
    }

    public var isUnreachable: Bool {
        if case .unreachable = self.code { return true }
        return false
    }

    public var isTooManyOperations: Bool {
        if case .tooManyOperations = self.code { return true }
        return false
    }

    public var isTransactionTooLarge: Bool {
        if case .transactionTooLarge = self.code { return true }
        return false
    }

    public var description: String {
        switch self.code {
        case .io(let path, let operation, let errno):
            return "\(path): \(operation) failed (errno \(errno))"
        case .corrupt(let path, let reason):
            return "\(path): the metadata store file is corrupt: \(reason)"
        case .invalidWrite(let reason):
            return "invalid metadata transaction: \(reason)"
        case .invalidConfiguration(let reason):
            return "invalid metadata store configuration: \(reason)"
        case .tooManyOperations(let count, let limit):
            return
                "the metadata store refused a transaction of \(count) operations: it takes at most \(limit) per transaction (etcd's --max-txn-ops); split the change"
        case .transactionTooLarge(let bytes, let limit):
            return
                "the metadata store refused a transaction of about \(bytes) bytes: it takes at most \(limit) (etcd's --max-request-bytes); split the change"
        case .compacted(let revision):
            return "the metadata store's history was compacted up to revision \(revision): re-read and watch again"
        case .leaseNotFound(let id):
            return "metadata store lease \(id) lapsed or was revoked"
        case .unreachable(let endpoints, let reason):
            return "etcd unreachable at \(endpoints.joined(separator: ", ")): \(reason)"
        case .rejected(let endpoint, let code, let message):
            return "etcd at \(endpoint) refused the request: \(message) (gRPC code \(code))"
        case .invalidResponse(let endpoint, let reason):
            return "etcd at \(endpoint) sent an answer that does not parse: \(reason)"
        case .closed(let reason):
            return "metadata store closed: \(reason)"
        }
    }
}
