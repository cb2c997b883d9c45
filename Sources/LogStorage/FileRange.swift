import NIOCore
import SystemPackage

/// An open segment file shared by its `Segment` and every `FileRange` handed to readers. The descriptor is closed
/// when the last holder lets go, so a fetch that is still sending a segment finishes even after retention renamed
/// it `.deleted` and unlinked it.
///
/// Thread-safe: immutable; the descriptor is only used with positional calls (pread, sendfile).
public final class SegmentFile: Sendable {
    public let descriptor: SystemPackage.FileDescriptor
    public let path: FilePath

    init(descriptor: SystemPackage.FileDescriptor, path: FilePath) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit {
        try? self.descriptor.close()
    }

    /// A new descriptor for the same open file, owned by the caller (NIO's `NIOFileHandle` closes what it holds).
    public func duplicateDescriptor() throws(StorageError) -> SystemPackage.FileDescriptor {
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

    /// The range's bytes in a new buffer: one pread straight into its storage, for paths that cannot send the
    /// file itself (tests, in-process callers of `FetchHandler.handle`, a fetch with no descriptor to spare).
    /// Shorter than `length` only if the file was cut meanwhile.
    public func readBuffer(allocator: ByteBufferAllocator = ByteBufferAllocator()) throws(StorageError) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: self.length)
        var failure: StorageError?
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: self.length) { destination in
            do throws(StorageError) {
                return try FileIO.read(
                    self.file.descriptor,
                    into: UnsafeMutableRawBufferPointer(rebasing: destination[..<self.length]),
                    at: self.position,
                    path: self.file.path
                )
            } catch {
                failure = error
                return 0
            }
        }
        if let failure { throw failure }
        return buffer
    }

    /// The range's bytes as an array (tests and tools).
    public func readBytes() throws(StorageError) -> [UInt8] {
        Array(try self.readBuffer().readableBytesView)
    }
}
