#if canImport(Glibc)
    import Glibc
#endif

/// Thrown when stdout's reader went away (`logcat ... | head -1`): the program stops and exits 0, as kcat does.
public struct StdoutClosed: Error {}

/// Buffered, binary-safe writes to stdout with write(2). A closed pipe (EPIPE, with SIGPIPE ignored) throws
/// `StdoutClosed`. Not thread-safe: one per program.
public final class Output {
    private var buffer: [UInt8] = []

    public init() {}

    public func write(_ bytes: [UInt8]) throws {
        self.buffer += bytes
        if self.buffer.count >= 64 * 1024 { try self.flush() }
    }

    /// Throws `StdoutClosed` when stdout is a pipe whose reader has gone, even with nothing to write: a consumer
    /// waiting for records notices `| head -1` has finished.
    public func checkOpen() throws {
        var descriptor = pollfd(fd: 1, events: 0, revents: 0)
        if poll(&descriptor, 1, 0) > 0, descriptor.revents & Int16(POLLERR) != 0 { throw StdoutClosed() }
    }

    public func flush() throws {
        var written = 0
        while written < self.buffer.count {
            let result = self.buffer[written...].withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
            if result < 0 {
                if errno == EINTR { continue }
                throw StdoutClosed()
            }
            written += result
        }
        self.buffer.removeAll(keepingCapacity: true)
    }
}
