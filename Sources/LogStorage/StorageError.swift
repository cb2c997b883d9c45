import KafkaProperties
import KafkaWire
import SystemPackage

/// Why a storage operation failed. The `description` names the file, partition or setting involved, so the log
/// line alone tells an operator where to look; `kafkaErrorCode` is what the broker puts on the wire.
///
/// A value type; thread-safe.
public struct StorageError: Error, Sendable, CustomStringConvertible {
    private enum Code: Sendable {
        case io(operation: String, path: FilePath, errno: Errno)
        case corruptIndex(path: FilePath, reason: String)
        case corruptCheckpoint(path: FilePath, line: Int, reason: String)
        case corruptBatch(path: FilePath, position: Int64, reason: String)
        case offsetOutOfRange(partition: String, offset: Int64, logStartOffset: Int64, logEndOffset: Int64)
        case metaPropertiesMismatch(path: FilePath, key: String, expected: String, found: String)
        case logDirectoryLocked(path: FilePath)
        case invalidConfig(PropertiesError)
        case partitionOffline(partition: String, reason: String)
        case invalidAppend(partition: String, reason: String)
        case recordTooLarge(partition: String, size: Int, limit: Int)
        case producerRejected(partition: String, error: ProducerStateError)
        case inconsistentTopicID(path: FilePath, expected: KafkaUUID, found: KafkaUUID)
    }

    private let code: Code

    private init(_ code: Code) {
        self.code = code
    }

    /// Whether a bookkeeping file's contents were malformed (repairable), as opposed to a failed disk call.
    var isCorruptCheckpoint: Bool {
        if case .corruptCheckpoint = self.code { return true }
        return false
    }

    /// A system call on `path` failed. Whether the partition must go offline depends on the errno: see
    /// `isTransient`.
    public static func io(_ operation: String, _ path: FilePath, _ errno: Errno) -> StorageError {
        StorageError(.io(operation: operation, path: path, errno: errno))
    }

    /// An index file that fails its sanity check; recovery rebuilds it.
    public static func corruptIndex(_ path: FilePath, _ reason: String) -> StorageError {
        StorageError(.corruptIndex(path: path, reason: reason))
    }

    /// A checkpoint file that does not follow Kafka's text format.
    public static func corruptCheckpoint(_ path: FilePath, line: Int, _ reason: String) -> StorageError {
        StorageError(.corruptCheckpoint(path: path, line: line, reason: reason))
    }

    /// A batch in a `.log` file that fails its size, CRC or record checks.
    public static func corruptBatch(_ path: FilePath, at position: Int64, _ reason: String) -> StorageError {
        StorageError(.corruptBatch(path: path, position: position, reason: reason))
    }

    /// A read or look-up at an offset outside `[logStartOffset, logEndOffset]`.
    public static func offsetOutOfRange(
        _ partition: String,
        offset: Int64,
        logStartOffset: Int64,
        logEndOffset: Int64
    ) -> StorageError {
        StorageError(
            .offsetOutOfRange(
                partition: partition,
                offset: offset,
                logStartOffset: logStartOffset,
                logEndOffset: logEndOffset
            )
        )
    }

    /// `meta.properties` names another cluster or node than this process was started with.
    public static func metaPropertiesMismatch(
        _ path: FilePath,
        key: String,
        expected: String,
        found: String
    ) -> StorageError {
        StorageError(.metaPropertiesMismatch(path: path, key: key, expected: expected, found: found))
    }

    /// Another process (or another handle in this one) holds the log directory's `.lock`.
    public static func logDirectoryLocked(_ path: FilePath) -> StorageError {
        StorageError(.logDirectoryLocked(path: path))
    }

    /// A per-log setting was refused.
    public static func invalidConfig(_ error: PropertiesError) -> StorageError {
        StorageError(.invalidConfig(error))
    }

    /// The partition was taken offline earlier (corruption below the recovery point, a failed disk call).
    public static func partitionOffline(_ partition: String, _ reason: String) -> StorageError {
        StorageError(.partitionOffline(partition: partition, reason: reason))
    }

    /// Batches that cannot go at the end of this log (offsets not after the log end, a bad header).
    public static func invalidAppend(_ partition: String, _ reason: String) -> StorageError {
        StorageError(.invalidAppend(partition: partition, reason: reason))
    }

    /// A batch larger than the segment can hold.
    public static func recordTooLarge(_ partition: String, size: Int, limit: Int) -> StorageError {
        StorageError(.recordTooLarge(partition: partition, size: size, limit: limit))
    }

    /// A client's batch refused by the idempotent-producer checks (sequence gap, stale epoch).
    public static func producerRejected(_ partition: String, _ error: ProducerStateError) -> StorageError {
        StorageError(.producerRejected(partition: partition, error: error))
    }

    /// A partition directory's `partition.metadata` names another topic id than the one the cluster gives it
    /// (Kafka's `InconsistentTopicIdException`): the directory is not the topic's and is not appended to.
    public static func inconsistentTopicID(_ path: FilePath, expected: KafkaUUID, found: KafkaUUID) -> StorageError {
        StorageError(.inconsistentTopicID(path: path, expected: expected, found: found))
    }

    /// The code Kafka returns for this failure.
    public var kafkaErrorCode: ErrorCode {
        switch self.code {
        case .io, .corruptIndex, .corruptCheckpoint, .metaPropertiesMismatch, .logDirectoryLocked, .partitionOffline:
            .kafkaStorageError
        case .corruptBatch: .corruptMessage
        case .offsetOutOfRange: .offsetOutOfRange
        case .invalidConfig: .invalidConfig
        case .invalidAppend: .invalidRecord
        case .recordTooLarge: .recordListTooLarge
        case .producerRejected(_, let error): error.kafkaErrorCode
        case .inconsistentTopicID: .inconsistentTopicID
        }
    }

    /// The errno of a failed system call, for callers that treat ENOSPC differently.
    public var errno: Errno? {
        if case .io(_, _, let errno) = self.code { return errno }
        return nil
    }

    /// A failure that says nothing about the data already stored: no descriptor (EMFILE, ENFILE), no memory or a
    /// call to retry (ENOMEM, EAGAIN, EINTR), no space (ENOSPC, EDQUOT). It fails the one operation, which can be
    /// retried, and never takes a partition offline. A failed fsync or msync is never transient, whatever its errno:
    /// the kernel may have dropped the dirty pages it could not write, so the file may no longer hold what was
    /// written. Everything else (EIO, a bad read of existing bytes, corruption) means the data may be wrong.
    public var isTransient: Bool {
        guard case .io(let operation, _, let errno) = self.code else { return false }
        guard operation != "fsync", operation != "msync" else { return false }
        return Self.transientErrnos.contains(errno)
    }

    private static let transientErrnos: Set<Errno> = [
        .tooManyOpenFiles, .tooManyOpenFilesInSystem, .resourceTemporarilyUnavailable, .noMemory, .interrupted,
        .noSpace, .diskQuotaExceeded,
    ]

    public var description: String {
        switch self.code {
        case .io(let operation, let path, let errno):
            "\(operation) failed on \(path): \(errno)"
                + (self.isTransient ? " (a transient failure: the partition stays online; retry)" : "")
        case .corruptIndex(let path, let reason):
            "Corrupt index file \(path): \(reason)"
        case .corruptCheckpoint(let path, let line, let reason):
            "Malformed checkpoint file \(path) at line \(line): \(reason)"
        case .corruptBatch(let path, let position, let reason):
            "Corrupt record batch in \(path) at position \(position): \(reason)"
        case .offsetOutOfRange(let partition, let offset, let start, let end):
            "Offset \(offset) is out of range for partition \(partition): log start offset \(start), "
                + "log end offset \(end)"
        case .metaPropertiesMismatch(let path, let key, let expected, let found):
            "\(path) has \(key)=\(found), but this broker is configured with \(key)=\(expected); refusing to start"
        case .logDirectoryLocked(let path):
            "Log directory \(path) is in use by another process (the lock on \(path.appending(".lock")) is held)"
        case .invalidConfig(let error):
            error.description
        case .partitionOffline(let partition, let reason):
            "Partition \(partition) is offline: \(reason)"
        case .invalidAppend(let partition, let reason):
            "Cannot append to partition \(partition): \(reason)"
        case .recordTooLarge(let partition, let size, let limit):
            "A batch of \(size) bytes for partition \(partition) exceeds the limit of \(limit) bytes"
        case .producerRejected(let partition, let error):
            "Cannot append to partition \(partition): \(error)"
        case .inconsistentTopicID(let path, let expected, let found):
            "\(path) names topic id \(found), but the cluster's topic has id \(expected)"
        }
    }
}
