import Foundation
import KafkaMessages
import KafkaNIO
import KafkaProperties
import LogBrokerServer
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Log lines kept in memory, so tests can assert that a closed connection was logged. Thread-safe (a Mutex).
final class CapturedLog: Sendable {
    private let lines = Mutex<[String]>([])

    func append(_ line: String) { self.lines.withLock { $0.append(line) } }
    var all: [String] { self.lines.withLock { $0 } }

    /// A logger at `debug` writing here (and nowhere else).
    func logger() -> Logger {
        Logger(label: "test") { _ in CapturingLogHandler(log: self) }
    }
}

/// A swift-log handler appending `level message metadata` to a `CapturedLog`. A value; thread-safe.
struct CapturingLogHandler: LogHandler {
    let log: CapturedLog
    var logLevel: Logger.Level = .debug
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = self.metadata.merging(event.metadata ?? [:]) { $1 }
        let metadata = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        self.log.append("\(event.level) \(event.message) \(metadata)")
    }
}

/// A broker configuration for tests: node 1, one listener on an ephemeral port of 127.0.0.1.
func testConfiguration(_ extra: [(String, String)] = []) throws -> BrokerConfiguration {
    let properties = Properties([("node.id", "1"), ("listeners", "PLAINTEXT://127.0.0.1:0")] + extra)
    return try BrokerConfiguration.resolve(properties).configuration
}

/// Runs an in-process broker serving `handlers` for the duration of `body`, which gets its port; then shuts it
/// down gracefully and waits until every connection is closed.
func withServer<Result: Sendable>(
    handlers: HandlerTable = HandlerTable(),
    configuration: BrokerConfiguration? = nil,
    log: CapturedLog = CapturedLog(),
    _ body: @Sendable (Int) async throws -> Result
) async throws -> Result {
    let configuration = try configuration ?? testConfiguration()
    let server = try await KafkaServer.bind(
        configuration: configuration,
        listeners: configuration.listeners,
        handlers: handlers,
        logger: log.logger()
    )
    let port = try requireNonNilValue(server.localAddresses.first?.port)
    let group = ServiceGroup(services: [server], logger: log.logger())
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let result: Swift.Result<Result, any Error>
        do {
            result = .success(try await body(port))
        } catch {
            result = .failure(error)
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        return try result.get()
    }
}

/// Starts a whole broker in-process, as `logbroker-server` assembles it (`Broker`), with `properties` on top of
/// `testConfiguration`'s; runs `body` with it, then shuts it down gracefully (the logs stop cleanly).
/// - Parameter logDirectory: its `log.dirs`, kept for a restart; nil: a temporary directory, removed at the end.
func withInProcessBroker<Result: Sendable>(
    _ properties: [(String, String)] = [],
    logDirectory: String? = nil,
    log: CapturedLog = CapturedLog(),
    _ body: @Sendable (Broker) async throws -> Result
) async throws -> Result {
    let directory =
        logDirectory ?? FileManager.default.temporaryDirectory.appendingPathComponent("broker-\(UUID())").path
    defer { if logDirectory == nil { try? FileManager.default.removeItem(atPath: directory) } }
    let configuration = try testConfiguration([("log.dirs", directory)] + properties)
    let broker = try await Broker.start(configuration: configuration, logger: log.logger())
    let group = ServiceGroup(services: [broker], logger: log.logger())
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let result: Swift.Result<Result, any Error>
        do {
            result = .success(try await body(broker))
        } catch {
            result = .failure(error)
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        return try result.get()
    }
}

struct MissingValue: Error {}

/// The value, or a thrown `MissingValue` (`#require` belongs in tests, this in helpers).
func requireNonNilValue<T>(_ value: T?) throws -> T {
    guard let value else { throw MissingValue() }
    return value
}

/// A TCP connection without Kafka framing, for sending hostile bytes and reading raw responses.
/// Not thread-safe: used by one task.
final class RawConnection {
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var buffered = ByteBuffer()

    private init(inbound: NIOAsyncChannelInboundStream<ByteBuffer>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>)
    {
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    static func withConnection<Result>(
        port: Int,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (RawConnection) async throws -> sending Result
    ) async throws -> sending Result {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true)
                    )
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await body(RawConnection(inbound: inbound, outbound: outbound))
        }
    }

    func write(_ bytes: [UInt8]) async throws {
        try await self.outbound.write(ByteBuffer(bytes: bytes))
    }

    /// Sends one frame: the size, then `contents`.
    func writeFrame(_ contents: [UInt8]) async throws {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int32(contents.count))
        buffer.writeBytes(contents)
        try await self.outbound.write(buffer)
    }

    /// Closes the sending side (the server sees EOF).
    func finishWriting() {
        self.outbound.finish()
    }

    /// The next whole frame, size included, or nil if the connection ends (EOF or reset) first.
    func readFrame() async -> [UInt8]? {
        while true {
            if let size = self.buffered.getInteger(at: self.buffered.readerIndex, as: Int32.self),
                self.buffered.readableBytes >= 4 + Int(size)
            {
                return self.buffered.readBytes(length: 4 + Int(size))
            }
            guard let next = try? await self.inbound.next() else { return nil }
            var chunk = next
            self.buffered.writeBuffer(&chunk)
        }
    }

    /// True once the server has closed the connection (EOF or reset), false if it sends anything instead.
    func isClosedByServer() async -> Bool {
        do {
            return try await self.inbound.next() == nil
        } catch {
            return true
        }
    }
}

@available(*, unavailable)
extension RawConnection: Sendable {}

/// A request frame's contents built by hand: header v1 (or v2 with an empty tag section), then `body`.
func requestFrame(apiKey: Int16, version: Int16, correlationID: Int32, flexibleHeader: Bool, body: [UInt8] = [])
    -> [UInt8]
{
    var buffer = ByteBuffer()
    buffer.writeInteger(apiKey)
    buffer.writeInteger(version)
    buffer.writeInteger(correlationID)
    buffer.writeInteger(Int16(4))
    buffer.writeString("test")
    if flexibleHeader { buffer.writeInteger(UInt8(0)) }
    buffer.writeBytes(body)
    return Array(buffer.readableBytesView)
}

/// Where the test binaries and the package's executables are built.
let buildDirectory: URL = {
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return executable.deletingLastPathComponent()
}()

/// The package root, from this file's path (Tests/LogBrokerServerTests/TestSupport.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// A whole request frame, size prefix included, for writing straight to a raw NIO channel.
func sizedRequestFrame<Request: KafkaRequest>(_ request: Request, version: Int16, clientID: String) -> ByteBuffer {
    let contents = KafkaFrame.request(request, version: version, correlationID: 1, clientID: clientID)
    var frame = ByteBuffer()
    frame.writeInteger(Int32(contents.readableBytes))
    frame.writeImmutableBuffer(contents)
    return frame
}
