import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A real single-member etcd for tests: `/usr/bin/etcd` (Debian's `etcd-server`) on two free loopback ports, with
/// its data in a fresh temporary directory. `start()` returns once etcd answers `/health`; `kill()` and `start()`
/// again restart it on the same data and ports (a crash and recovery); `stop()` ends it with SIGTERM and removes
/// the directory.
///
/// Not thread-safe: one test drives it.
public final class EtcdServer: @unchecked Sendable {
    /// `http://127.0.0.1:<client port>`, what a store is configured with.
    public var endpoint: String { "http://127.0.0.1:\(self.clientPort)" }
    /// The port etcd serves clients on; `start(clientPort:)` may move it.
    public private(set) var clientPort: Int
    public let peerPort: Int
    /// Holds `data/` (etcd's data dir) and `etcd.log` (its output, appended across restarts).
    public let directory: String
    private var process: Process?

    /// Picks the ports and makes the directory; nothing runs until `start()`.
    public init() throws {
        self.clientPort = try Self.freePort()
        var peer = try Self.freePort()
        while peer == self.clientPort { peer = try Self.freePort() }
        self.peerPort = peer
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
    }

    /// A started etcd; stopped and removed when `body` returns or throws.
    public static func with<Result>(_ body: (EtcdServer) async throws -> Result) async throws -> Result {
        let server = try EtcdServer()
        defer { server.stop() }
        try server.start()
        return try await body(server)
    }

    /// Starts etcd (again, on the same data and ports, after `kill()`; on another client port when given, so that
    /// clients of the old one cannot reach it) and waits until it answers `/health`.
    public func start(clientPort: Int? = nil, timeout: Duration = .seconds(30)) throws {
        precondition(self.process == nil, "etcd is already running")
        if let clientPort { self.clientPort = clientPort }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd") else {
            throw EtcdServerError("/usr/bin/etcd is missing: run bin/setup (Debian package etcd-server)")
        }
        let url = "http://127.0.0.1:\(self.peerPort)"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
        process.arguments = [
            "--name", "t", "--data-dir", self.directory + "/data",
            "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", url, "--initial-advertise-peer-urls", url, "--initial-cluster", "t=\(url)",
            "--log-level", "warn",
        ]
        let logPath = self.directory + "/etcd.log"
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + timeout
        while !self.isHealthy() {
            guard process.isRunning else {
                self.process = nil
                throw EtcdServerError("etcd exited with status \(process.terminationStatus):\n\(self.logTail())")
            }
            guard ContinuousClock.now < deadline else {
                throw EtcdServerError("etcd did not answer /health within \(timeout):\n\(self.logTail())")
            }
            usleep(50_000)
        }
    }

    /// SIGKILL: etcd dies at once, as in a crash; `start()` brings it back on the same data.
    public func kill() {
        guard let process = self.process else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    /// SIGTERM (SIGKILL after 10 s), then removes the directory.
    public func stop() {
        if let process = self.process {
            process.terminate()
            let deadline = ContinuousClock.now + .seconds(10)
            while process.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
            if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            self.process = nil
        }
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    /// Whether etcd answers `GET /health` with `"health":"true"` (it has a leader and serves).
    public func isHealthy() -> Bool {
        guard let answer = Self.get("/health", port: self.clientPort) else { return false }
        return answer.contains("\"health\":\"true\"")
    }

    private func logTail() -> String {
        let text = (try? String(contentsOfFile: self.directory + "/etcd.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(20).joined(separator: "\n")
    }

    /// A port the kernel picked as free on 127.0.0.1 (bound, read, closed: free unless someone takes it at once).
    public static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw EtcdServerError("socket failed (errno \(errno))") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw -> Bool in
                bind(descriptor, raw, length) == 0 && getsockname(descriptor, raw, &length) == 0
            }
        }
        guard bound else { throw EtcdServerError("bind failed (errno \(errno))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A blocking HTTP/1.0 GET on 127.0.0.1; the whole answer, or nil when the connection fails.
    static func get(_ path: String, port: Int) -> String? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else { return nil }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        guard send(descriptor, request, request.count, 0) == request.count else { return nil }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &chunk, chunk.count, 0)
            if count <= 0 { break }
            answer.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: answer, as: UTF8.self)
    }
}

/// Why the test etcd could not be started.
public struct EtcdServerError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}
