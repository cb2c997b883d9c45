import SystemPackage

/// An open segment file shared by its `Segment` and every `FileRange` handed to readers. The descriptor is closed
/// when the last holder lets go, so a fetch that is still sending a segment finishes even after retention renamed
/// it `.deleted` and unlinked it.
///
/// Thread-safe: immutable; the descriptor is only used with positional calls (pread, sendfile).
public final class SegmentFile: Sendable {
    public let descriptor: FileDescriptor
    public let path: FilePath

    init(descriptor: FileDescriptor, path: FilePath) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit {
        try? self.descriptor.close()
    }

    /// A new descriptor for the same open file, owned by the caller (NIO's `NIOFileHandle` closes what it holds).
    public func duplicateDescriptor() throws(StorageError) -> FileDescriptor {
        do {
            return try self.descriptor.duplicate()
        } catch {
            throw .io("dup", self.path, error as? Errno ?? .badFileDescriptor)
        }
    }
}

/// Whole batches in one segment file, for the broker to send with sendfile: `length` bytes from `position`.
/// The file stays open while this value (or a copy) lives.
///
/// A value type; thread-safe.
public struct FileRange: Sendable {
    public let file: SegmentFile
    public let position: Int64
    public let length: Int

    /// Reads the bytes (for TLS listeners and tests, where sendfile cannot be used).
    public func readBytes() throws(StorageError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: self.length)
        let count = try bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(StorageError) in
                try FileIO.read(self.file.descriptor, into: buffer, at: self.position, path: self.file.path)
            }
        }.get()
        return Array(bytes.prefix(count))
    }
}
