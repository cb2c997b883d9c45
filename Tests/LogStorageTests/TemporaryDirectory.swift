import SystemPackage

#if canImport(Glibc)
    import Glibc
#endif

/// A fresh directory under /tmp for one test, removed with everything in it by `remove()`.
struct TemporaryDirectory {
    let path: FilePath

    init() {
        var template = Array("/tmp/logstorage-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        self.path = FilePath(String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    func appending(_ component: String) -> FilePath {
        self.path.appending(component)
    }

    func remove() {
        Self.removeTree(self.path)
    }

    private static func removeTree(_ path: FilePath) {
        if let directory = path.withPlatformString({ opendir($0) }) {
            var names: [String] = []
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(directory)
            for name in names { Self.removeTree(path.appending(name)) }
            _ = path.withPlatformString { rmdir($0) }
        } else {
            _ = path.withPlatformString { unlink($0) }
        }
    }

    /// Runs `body` with a new directory and removes it afterwards, whatever happens.
    static func with<T>(_ body: (TemporaryDirectory) throws -> T) throws -> T {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        return try body(directory)
    }
}

/// Small file helpers for tests: whole-file reads and writes, sizes, truncation.
enum TestFiles {
    static func read(_ path: FilePath) -> [UInt8]? {
        guard let fd = try? FileDescriptor.open(path, .readOnly) else { return nil }
        defer { try? fd.close() }
        let size = Int((try? fd.seek(offset: 0, from: .end)) ?? 0)
        var bytes = [UInt8](repeating: 0, count: size)
        let count = bytes.withUnsafeMutableBytes { (try? fd.read(fromAbsoluteOffset: 0, into: $0)) ?? 0 }
        return Array(bytes.prefix(count))
    }

    static func write(_ path: FilePath, _ bytes: [UInt8]) throws {
        let fd = try FileDescriptor.open(path, .writeOnly, options: [.create, .truncate], permissions: .ownerReadWrite)
        defer { try? fd.close() }
        _ = try fd.writeAll(bytes)
    }

    static func append(_ path: FilePath, _ bytes: [UInt8]) throws {
        let fd = try FileDescriptor.open(path, .writeOnly, options: [.append])
        defer { try? fd.close() }
        _ = try fd.writeAll(bytes)
    }

    static func size(_ path: FilePath) -> Int? {
        guard let fd = try? FileDescriptor.open(path, .readOnly) else { return nil }
        defer { try? fd.close() }
        return Int((try? fd.seek(offset: 0, from: .end)) ?? -1)
    }

    static func truncate(_ path: FilePath, to size: Int) throws {
        let fd = try FileDescriptor.open(path, .writeOnly)
        defer { try? fd.close() }
        try fd.resize(to: Int64(size))
    }

    static func exists(_ path: FilePath) -> Bool {
        path.withPlatformString { access($0, F_OK) } == 0
    }

    static func text(_ path: FilePath) -> String? {
        self.read(path).map { String(decoding: $0, as: UTF8.self) }
    }
}
