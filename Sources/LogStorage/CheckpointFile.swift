import KafkaWire
import SystemPackage

extension TopicPartition {
    /// The partition's directory name, `<topic>-<partition>`.
    public var directoryName: String { "\(self.topic)-\(self.partition)" }

    /// Parses a directory name `<topic>-<partition>` (topics may contain `-`, so the last one splits). Names with
    /// a suffix (`<topic>-<partition>.<id>-delete`, `-future`, `-stray`) are not partition directories: nil.
    public init?(directoryName: String) {
        guard let dash = directoryName.lastIndex(of: "-"), dash != directoryName.startIndex,
            let partition = Int32(directoryName[directoryName.index(after: dash)...]), partition >= 0
        else { return nil }
        self.init(String(directoryName[..<dash]), partition)
    }
}

/// Kafka's checkpoint text format (`CheckpointFile`): a version line `0`, a count line, then one entry per line,
/// fields separated by a space. Written atomically (temp file, fsync, rename, directory fsync).
///
/// Stateless; thread-safe, but two writers of one file must be serialised by the caller.
enum CheckpointFile {
    static let version = 0

    /// Without `durable` the file is replaced without fsync (see `FileIO.writeAtomically`).
    static func write(_ path: FilePath, lines: [String], durable: Bool = true) throws(StorageError) {
        var text = "\(Self.version)\n\(lines.count)\n"
        for line in lines { text += line + "\n" }
        try FileIO.writeAtomically(path, Array(text.utf8), durable: durable)
    }

    /// The entry lines split into fields, each line with `fieldCount` fields; nil if the file does not exist.
    static func read(_ path: FilePath, fieldCount: Int) throws(StorageError) -> [[Substring]]? {
        guard let bytes = try FileIO.readWholeFile(path) else { return nil }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 2 else { throw .corruptCheckpoint(path, line: lines.count + 1, "missing header") }
        guard Int(lines[0]) == Self.version else {
            throw .corruptCheckpoint(path, line: 1, "unsupported version \(lines[0])")
        }
        guard let count = Int(lines[1]), count >= 0 else {
            throw .corruptCheckpoint(path, line: 2, "bad entry count \(lines[1])")
        }
        var entries: [[Substring]] = []
        for (number, line) in lines.dropFirst(2).enumerated() where !line.isEmpty {
            let fields = line.split(separator: " ")
            guard fields.count == fieldCount else {
                throw .corruptCheckpoint(path, line: number + 3, "expected \(fieldCount) fields in \"\(line)\"")
            }
            entries.append(fields)
        }
        guard entries.count == count else {
            throw .corruptCheckpoint(path, line: 2, "count says \(count) entries, the file has \(entries.count)")
        }
        return entries
    }
}

/// A per-log-directory offsets checkpoint: `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint` or
/// `replication-offset-checkpoint`, lines of `topic partition offset`.
///
/// A value naming a file; reading and writing are blocking disk calls. Writers of one file must be serialised by
/// the caller (`LogManager` does).
public struct OffsetCheckpointFile: Sendable {
    public static let recoveryPoint = "recovery-point-offset-checkpoint"
    public static let logStartOffset = "log-start-offset-checkpoint"
    public static let replicationOffset = "replication-offset-checkpoint"
    /// The log cleaner's progress: each compacted partition's first dirty offset.
    public static let cleanerOffset = "cleaner-offset-checkpoint"

    public let path: FilePath

    public init(_ path: FilePath) {
        self.path = path
    }

    public func write(_ offsets: [TopicPartition: Int64]) throws(StorageError) {
        let lines = offsets.sorted { $0.key < $1.key }.map { "\($0.key.topic) \($0.key.partition) \($0.value)" }
        try CheckpointFile.write(self.path, lines: lines)
    }

    /// The offsets, empty if the file does not exist.
    public func read() throws(StorageError) -> [TopicPartition: Int64] {
        guard let entries = try CheckpointFile.read(self.path, fieldCount: 3) else { return [:] }
        var offsets: [TopicPartition: Int64] = [:]
        for (number, fields) in entries.enumerated() {
            guard let partition = Int32(fields[1]), let offset = Int64(fields[2]) else {
                throw .corruptCheckpoint(
                    self.path, line: number + 3, "bad numbers in \"\(fields.joined(separator: " "))\"")
            }
            offsets[TopicPartition(String(fields[0]), partition)] = offset
        }
        return offsets
    }
}
