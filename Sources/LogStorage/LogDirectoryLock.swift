import SystemPackage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// An exclusive `flock` on `<log.dir>/.lock`, held for as long as this value lives, so that two brokers (or two
/// `LogManager`s in one process: flock is per open file) cannot use one log directory at once. The kernel drops
/// the lock if the process dies, so a crash never leaves a directory locked.
///
/// Thread-safe: immutable after `init`; `unlock` must be called once, by the owner.
public final class LogDirectoryLock: Sendable {
    public static let fileName = ".lock"
    public let directory: FilePath
    private let fd: FileDescriptor

    /// Takes the lock without waiting.
    /// - Throws: `StorageError.logDirectoryLocked` if another holder has it.
    public init(directory: FilePath) throws(StorageError) {
        let path = directory.appending(Self.fileName)
        let fd = try FileIO.open(path, .readWrite, options: .create)
        guard flock(fd.rawValue, LOCK_EX | LOCK_NB) == 0 else {
            let error = Errno(rawValue: errno)
            FileIO.close(fd)
            if error == .wouldBlock { throw .logDirectoryLocked(directory) }
            throw .io("flock", path, error)
        }
        self.directory = directory
        self.fd = fd
    }

    /// Writes out everything dirty on the directory's file system (`FileIO.syncFileSystem`); the lock's descriptor
    /// was opened at start-up, so a writeback error since then is reported.
    public func syncFileSystem() throws(StorageError) {
        try FileIO.syncFileSystem(self.fd, path: self.directory)
    }

    /// Releases the lock and closes the file.
    public func unlock() {
        _ = flock(self.fd.rawValue, LOCK_UN)
        FileIO.close(self.fd)
    }
}
