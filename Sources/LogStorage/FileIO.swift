import Synchronization
import SystemPackage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Thin wrappers over the system calls storage needs that swift-system lacks (fsync, flock, rename, directory
/// listing) and over the ones it has, converting failures to `StorageError`s that name the file. Every function is
/// a blocking disk call: run it on `DiskIOPool`, never on an event loop. Stateless; thread-safe.
enum FileIO {
    /// Fault injection for tests: `open` of a path under one of these directories fails with the errno given, as
    /// it would with the process out of descriptors (which a test cannot cause in a process that runs other tests
    /// at the same time). Empty outside tests; `injectedFaultCount` keeps the check to one atomic load then.
    static let injectedOpenFaults = Mutex<[String: Errno]>([:])
    static let injectedFaultCount = Atomic<Int>(0)

    /// Makes `open` under `directory` fail with `errno` (nil: stop).
    static func injectOpenFault(under directory: FilePath, _ errno: Errno?) {
        self.injectedOpenFaults.withLock { faults in
            faults[directory.string + "/"] = errno
            self.injectedFaultCount.store(faults.count, ordering: .relaxed)
        }
    }

    private static func injectedFault(for path: FilePath) -> Errno? {
        guard self.injectedFaultCount.load(ordering: .relaxed) > 0 else { return nil }
        let name = path.string
        return self.injectedOpenFaults.withLock { faults in
            faults.first { name.hasPrefix($0.key) }?.value
        }
    }

    static func open(
        _ path: FilePath,
        _ mode: FileDescriptor.AccessMode,
        options: FileDescriptor.OpenOptions = [],
        permissions: FilePermissions = [.ownerReadWrite, .groupRead, .otherRead]
    ) throws(StorageError) -> FileDescriptor {
        if let errno = Self.injectedFault(for: path) { throw .io("open", path, errno) }
        do {
            return try FileDescriptor.open(path, mode, options: options.union(.closeOnExec), permissions: permissions)
        } catch {
            throw .io("open", path, error as? Errno ?? .ioError)
        }
    }

    /// Writes all of `bytes` at `position`, retrying short writes.
    static func writeAll(
        _ fd: FileDescriptor,
        _ bytes: UnsafeRawBufferPointer,
        at position: Int64,
        path: FilePath
    ) throws(StorageError) {
        do {
            _ = try fd.writeAll(toAbsoluteOffset: position, bytes)
        } catch {
            throw .io("write", path, error as? Errno ?? .ioError)
        }
    }

    /// Linux's IOV_MAX (UIO_MAXIOV), which the C headers define where Swift cannot see it.
    static let maxPieces = 1024

    /// Writes all the bytes `pieces` point to, in order, at `position` with pwritev (at most IOV_MAX pieces per
    /// call), retrying short writes and EINTR. The pieces must stay valid during the call.
    static func writeAll(
        _ fd: FileDescriptor,
        pieces: inout [iovec],
        at position: Int64,
        path: FilePath
    ) throws(StorageError) {
        var first = 0
        var offset = position
        while first < pieces.count {
            let count = min(pieces.count - first, Self.maxPieces)
            let written = pieces.withUnsafeBufferPointer { buffer in
                pwritev(fd.rawValue, buffer.baseAddress! + first, Int32(count), off_t(offset))
            }
            if written < 0 {
                let error = Errno(rawValue: Glibc.errno)
                if error == .interrupted { continue }
                throw .io("write", path, error)
            }
            // No progress on a regular file should not happen; fail rather than spin.
            guard written > 0 else { throw .io("write (no progress)", path, .ioError) }
            offset += Int64(written)
            var remaining = written
            while first < pieces.count, remaining >= pieces[first].iov_len {
                remaining -= pieces[first].iov_len
                first += 1
            }
            if remaining > 0 {
                pieces[first].iov_base += remaining
                pieces[first].iov_len -= remaining
            }
        }
    }

    /// Reads up to `buffer.count` bytes at `position`; fewer only at the end of the file.
    static func read(
        _ fd: FileDescriptor,
        into buffer: UnsafeMutableRawBufferPointer,
        at position: Int64,
        path: FilePath
    ) throws(StorageError) -> Int {
        var done = 0
        while done < buffer.count {
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
            let count: Int
            do {
                count = try fd.read(fromAbsoluteOffset: position + Int64(done), into: chunk)
            } catch {
                throw .io("read", path, error as? Errno ?? .ioError)
            }
            if count == 0 { break }
            done += count
        }
        return done
    }

    static func size(_ fd: FileDescriptor, path: FilePath) throws(StorageError) -> Int64 {
        do {
            return try fd.seek(offset: 0, from: .end)
        } catch {
            throw .io("lseek", path, error as? Errno ?? .ioError)
        }
    }

    static func truncate(_ fd: FileDescriptor, to size: Int64, path: FilePath) throws(StorageError) {
        do {
            try fd.resize(to: size)
        } catch {
            throw .io("ftruncate", path, error as? Errno ?? .ioError)
        }
    }

    static func sync(_ fd: FileDescriptor, path: FilePath) throws(StorageError) {
        guard fsync(fd.rawValue) == 0 else { throw .io("fsync", path, Errno(rawValue: Glibc.errno)) }
    }

    /// `syncfs(2)`, looked up at run time: glibc declares it only under _GNU_SOURCE, out of Swift's sight.
    private nonisolated(unsafe) static let syncfsFunction: (@convention(c) (Int32) -> Int32)? = {
        guard let symbol = dlsym(nil, "syncfs") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32) -> Int32).self)
    }()

    /// Writes out everything dirty on the file system holding the open file `fd` (data, inodes, directory entries)
    /// in one call, instead of one fsync per file. Since Linux 5.8 it reports a writeback error that happened on the
    /// file system since `fd` was opened, so a long-lived descriptor (a log directory's `.lock`) catches errors of
    /// background writeback too.
    static func syncFileSystem(_ fd: FileDescriptor, path: FilePath) throws(StorageError) {
        guard let syncfs = self.syncfsFunction else {
            Glibc.sync()
            return
        }
        guard syncfs(fd.rawValue) == 0 else { throw .io("syncfs", path, Errno(rawValue: Glibc.errno)) }
    }

    static func close(_ fd: FileDescriptor) {
        try? fd.close()
    }

    /// fsyncs a directory, so that renames and creations in it survive a power loss.
    static func syncDirectory(_ path: FilePath) throws(StorageError) {
        let fd = try self.open(path, .readOnly, options: .directory)
        defer { self.close(fd) }
        try self.sync(fd, path: path)
    }

    static func rename(_ from: FilePath, to: FilePath) throws(StorageError) {
        let result = from.withPlatformString { source in to.withPlatformString { Glibc.rename(source, $0) } }
        guard result == 0 else { throw .io("rename to \(to)", from, Errno(rawValue: Glibc.errno)) }
    }

    /// Removes a file; a file already gone is not an error.
    static func unlink(_ path: FilePath) throws(StorageError) {
        guard path.withPlatformString({ Glibc.unlink($0) }) == 0 else {
            let error = Errno(rawValue: Glibc.errno)
            if error == .noSuchFileOrDirectory { return }
            throw .io("unlink", path, error)
        }
    }

    static func makeDirectory(_ path: FilePath) throws(StorageError) {
        guard path.withPlatformString({ mkdir($0, 0o755) }) == 0 else {
            let error = Errno(rawValue: Glibc.errno)
            if error == .fileExists { return }
            throw .io("mkdir", path, error)
        }
    }

    /// Creates `path` and any missing parents (as `mkdir -p`, and as Kafka creates a missing `log.dirs` entry).
    static func makeDirectories(_ path: FilePath) throws(StorageError) {
        if self.isDirectory(path) { return }
        var parent = path
        parent.removeLastComponent()
        if !parent.isEmpty && parent != path { try self.makeDirectories(parent) }
        try self.makeDirectory(path)
    }

    /// Whether this process may create files in `path`.
    static func isWritable(_ path: FilePath) -> Bool {
        path.withPlatformString { access($0, W_OK | X_OK) } == 0
    }

    static func removeDirectory(_ path: FilePath) throws(StorageError) {
        guard path.withPlatformString({ rmdir($0) }) == 0 else {
            throw .io("rmdir", path, Errno(rawValue: Glibc.errno))
        }
    }

    static func exists(_ path: FilePath) -> Bool {
        path.withPlatformString { access($0, F_OK) } == 0
    }

    /// The file's modification time in milliseconds, 0 when it cannot be read (Java's `File.lastModified`, what
    /// Kafka's segment reports).
    static func modificationTimeMs(_ path: FilePath) -> Int64 {
        var info = stat()
        guard path.withPlatformString({ stat($0, &info) }) == 0 else { return 0 }
        return Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
    }

    static func isDirectory(_ path: FilePath) -> Bool {
        var info = stat()
        guard path.withPlatformString({ stat($0, &info) }) == 0 else { return false }
        return info.st_mode & S_IFMT == S_IFDIR
    }

    /// The names in a directory, without `.` and `..`, in no particular order.
    static func listDirectory(_ path: FilePath) throws(StorageError) -> [String] {
        guard let directory = path.withPlatformString({ opendir($0) }) else {
            throw .io("opendir", path, Errno(rawValue: Glibc.errno))
        }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The whole file, or nil if it does not exist. For small files (checkpoints, properties).
    static func readWholeFile(_ path: FilePath, limit: Int = 64 << 20) throws(StorageError) -> [UInt8]? {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, .readOnly, options: .closeOnExec)
        } catch let error as Errno where error == .noSuchFileOrDirectory {
            return nil
        } catch {
            throw .io("open", path, error as? Errno ?? .ioError)
        }
        defer { self.close(fd) }
        let size = try self.size(fd, path: path)
        guard size <= limit else { throw .io("read (file larger than \(limit) bytes)", path, .fileTooLarge) }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        let count = try bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(StorageError) in try self.read(fd, into: buffer, at: 0, path: path) }
        }.get()
        return Array(bytes.prefix(count))
    }

    /// Replaces `path` with `contents` so that a crash leaves either the old or the new file, never a mix: writes
    /// `<path>.tmp`, fsyncs it, renames it over `path`, then fsyncs the directory (Kafka's `CheckpointFile.write`).
    /// Without `durable` nothing is fsynced: the caller makes the file durable later, with one `syncFileSystem`
    /// for many files (until then a crash may leave the old file, or on some file systems an empty one).
    static func writeAtomically(
        _ path: FilePath,
        _ contents: some Collection<UInt8>,
        durable: Bool = true
    ) throws(StorageError) {
        let temporary = FilePath(path.string + ".tmp")
        let fd = try self.open(temporary, .writeOnly, options: [.create, .truncate])
        do {
            try Array(contents).withUnsafeBytes { bytes in
                Result { () throws(StorageError) in try self.writeAll(fd, bytes, at: 0, path: temporary) }
            }.get()
            if durable { try self.sync(fd, path: temporary) }
        } catch {
            self.close(fd)
            throw error
        }
        self.close(fd)
        try self.rename(temporary, to: path)
        if durable { try self.syncDirectory(path.removingLastComponent()) }
    }
}
