import KafkaWire
import SystemPackage

/// Kafka's `partition.metadata` in a partition directory: the topic id the directory belongs to, so a directory
/// left by an earlier topic of the same name is never taken for the new one. Two lines, exactly Kafka's
/// (`PartitionMetadataFile`): `version: 0` and `topic_id: <id>`, the id as `Uuid.toString()` prints it.
///
/// Stateless; thread-safe.
enum PartitionMetadataFile {
    static let fileName = "partition.metadata"

    /// The file's contents for `id`.
    static func contents(_ id: KafkaUUID) -> String { "version: 0\ntopic_id: \(id)\n" }

    /// The topic id in `path`, nil when there is no such file.
    /// - Throws: `corruptCheckpoint` naming the file and line for anything but Kafka's two lines.
    static func read(_ path: FilePath) throws(StorageError) -> KafkaUUID? {
        guard let bytes = try FileIO.readWholeFile(path, limit: 4096) else { return nil }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first == "version: 0" else {
            throw .corruptCheckpoint(path, line: 1, "expected 'version: 0'")
        }
        guard lines.count >= 2, lines[1].hasPrefix("topic_id: "),
            let id = KafkaUUID(String(lines[1].dropFirst("topic_id: ".count)))
        else {
            throw .corruptCheckpoint(path, line: 2, "expected 'topic_id: <22 base64 characters>'")
        }
        return id
    }

    /// Writes `id` to `path` atomically (temporary file, fsync, rename, directory fsync).
    static func write(_ id: KafkaUUID, to path: FilePath) throws(StorageError) {
        try FileIO.writeAtomically(path, Array(Self.contents(id).utf8))
    }
}
