import KafkaProperties
import SystemPackage

/// A log directory's `meta.properties` (KRaft's version 1: `version`, `cluster.id`, `node.id`, optionally
/// `directory.id`). Written once when the directory is first used; at every later start it must name the same
/// cluster and node, or the broker refuses to start, naming the file.
///
/// A value type; reading and writing are blocking disk calls.
public struct MetaProperties: Hashable, Sendable {
    public static let fileName = "meta.properties"
    public var clusterID: String
    public var nodeID: Int32
    public var directoryID: String?

    public init(clusterID: String, nodeID: Int32, directoryID: String? = nil) {
        self.clusterID = clusterID
        self.nodeID = nodeID
        self.directoryID = directoryID
    }

    /// The file in `directory`, or nil if there is none.
    public static func read(in directory: FilePath) throws(StorageError) -> MetaProperties? {
        let path = directory.appending(Self.fileName)
        guard let bytes = try FileIO.readWholeFile(path) else { return nil }
        let properties: Properties
        do {
            properties = try Properties(parsing: String(decoding: bytes, as: UTF8.self))
        } catch {
            throw .invalidConfig(error.from(path.string))
        }
        guard properties["version"] == "1" || properties["version"] == "0" else {
            throw .corruptCheckpoint(path, line: 0, "unsupported version \(properties["version"] ?? "(none)")")
        }
        guard let clusterID = properties["cluster.id"], !clusterID.isEmpty else {
            throw .corruptCheckpoint(path, line: 0, "cluster.id is missing")
        }
        guard let nodeText = properties["node.id"] ?? properties["broker.id"], let nodeID = Int32(nodeText) else {
            throw .corruptCheckpoint(path, line: 0, "node.id is missing or not a number")
        }
        return MetaProperties(clusterID: clusterID, nodeID: nodeID, directoryID: properties["directory.id"])
    }

    public func write(in directory: FilePath) throws(StorageError) {
        var properties = Properties([("cluster.id", self.clusterID), ("node.id", String(self.nodeID))])
        if let directoryID = self.directoryID { properties["directory.id"] = directoryID }
        properties["version"] = "1"
        let text = properties.formatted(comment: ["Written by LogBroker. Do not edit: a mismatch refuses to start."])
        try FileIO.writeAtomically(directory.appending(Self.fileName), Array(text.utf8))
    }

    /// Writes the file if `directory` has none; otherwise checks that it names the same cluster and node.
    /// - Throws: `StorageError.metaPropertiesMismatch` naming the file and the differing key.
    public func ensure(in directory: FilePath) throws(StorageError) {
        guard let existing = try Self.read(in: directory) else {
            try self.write(in: directory)
            return
        }
        let path = directory.appending(Self.fileName)
        guard existing.clusterID == self.clusterID else {
            throw .metaPropertiesMismatch(path, key: "cluster.id", expected: self.clusterID, found: existing.clusterID)
        }
        guard existing.nodeID == self.nodeID else {
            throw .metaPropertiesMismatch(path, key: "node.id", expected: "\(self.nodeID)", found: "\(existing.nodeID)")
        }
    }
}
