/// Why a metadata store operation failed. A compare-and-set conflict is not an error (`MetadataCommit.conflict`).
///
/// One struct around a private code, as every target's error (STYLE.md §8.10); `description` names the file.
/// A plain value; thread-safe.
public struct MetadataStoreError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case io(path: String, operation: String, errno: Int32)
        case corrupt(path: String, reason: String)
        case unsupported(String)
        case invalidWrite(String)
    }

    private let code: Code

    private init(_ code: Code) { self.code = code }

    /// A system call on the store's file failed.
    public static func io(path: String, operation: String, errno: Int32) -> Self {
        Self(.io(path: path, operation: operation, errno: errno))
    }

    /// The store's file does not parse or fails its checksum: start-up must stop, not start an empty cluster.
    public static func corrupt(path: String, reason: String) -> Self { Self(.corrupt(path: path, reason: reason)) }

    /// The operation needs the etcd store (watches, leases).
    public static func unsupported(_ what: String) -> Self { Self(.unsupported(what)) }

    /// A transaction that names a key twice, or an empty key.
    public static func invalidWrite(_ reason: String) -> Self { Self(.invalidWrite(reason)) }

    /// The errno of a failed system call, nil for other failures.
    public var errno: Int32? {
        if case .io(_, _, let errno) = self.code { return errno }
        return nil
    }

    public var isCorrupt: Bool {
        if case .corrupt = self.code { return true }
        return false
    }

    public var isUnsupported: Bool {
        if case .unsupported = self.code { return true }
        return false
    }

    public var description: String {
        switch self.code {
        case .io(let path, let operation, let errno):
            return "\(path): \(operation) failed (errno \(errno))"
        case .corrupt(let path, let reason):
            return "\(path): the metadata store file is corrupt: \(reason)"
        case .unsupported(let what):
            return "\(what) is not available in the local metadata store; the etcd store comes with the cluster issue"
        case .invalidWrite(let reason):
            return "invalid metadata transaction: \(reason)"
        }
    }
}
