import KafkaMessages
import KafkaWire
import NIOCore
import NIOPosix
import Synchronization

/// A client connection to a Kafka broker that any number of tasks share, each request going out without waiting
/// for the answers to earlier ones (Kafka's clients keep up to max.in.flight.requests.per.connection in flight).
/// A reader task hands each response frame to the request with its correlation id, so the next request is
/// already in the broker's socket buffer while it works on the current one.
///
/// Once the connection fails (the broker closes it, a read fails, or a response names no request in flight),
/// every waiting and later request throws that error.
///
/// Open one with `withConnection(host:port:configuration:_:)`; it is closed when the closure returns.
/// Thread-safe.
public final class KafkaPipelinedConnection: Sendable {
    public typealias Configuration = KafkaClientConnection.Configuration

    public let configuration: Configuration
    /// The broker's address, as connected.
    public let remoteAddress: SocketAddress?
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private let state = Mutex(State())

    private struct State {
        var nextCorrelationID: Int32 = 0
        /// Requests sent whose response has not been taken yet.
        var inFlight: [Int32: Slot] = [:]
        var failure: KafkaNIOError?
        var closedWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private enum Slot {
        case sent
        case waiting(CheckedContinuation<ByteBuffer, any Error>)
        /// The response came before its caller started waiting.
        case arrived(ByteBuffer)
    }

    private init(
        configuration: Configuration,
        remoteAddress: SocketAddress?,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) {
        self.configuration = configuration
        self.remoteAddress = remoteAddress
        self.outbound = outbound
    }

    /// Connects to `host:port`, runs `body` with the connection while a child task reads the responses, then
    /// closes it (also when `body` throws).
    public static func withConnection<Result: Sendable>(
        host: String,
        port: Int,
        configuration: Configuration = Configuration(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: @Sendable (KafkaPipelinedConnection) async throws -> Result
    ) async throws -> Result {
        let channel = try await KafkaChannelSetup.connect(
            host: host,
            port: port,
            configuration: configuration,
            eventLoopGroup: eventLoopGroup
        )
        let remoteAddress = channel.channel.remoteAddress
        return try await channel.executeThenClose { inbound, outbound in
            let connection = KafkaPipelinedConnection(
                configuration: configuration,
                remoteAddress: remoteAddress,
                outbound: outbound
            )
            return try await withThrowingTaskGroup(of: Void.self, returning: Result.self) { group in
                group.addTask { await connection.readResponses(inbound) }
                defer {
                    group.cancelAll()
                    connection.fail(.connectionClosed)
                }
                return try await body(connection)
            }
        }
    }

    /// A request written whose response has not been read yet. Await `response()` once: an answer nobody takes
    /// stays held by the connection.
    public struct PendingResponse<Request: KafkaRequest>: Sendable {
        let connection: KafkaPipelinedConnection
        let correlationID: Int32
        /// The version the request was sent at.
        public let version: Int16

        /// The decoded response.
        /// - Throws: `KafkaNIOError.connectionClosed` (or the error that broke the connection) if the connection
        ///   fails before the answer, or `malformedResponse` for an answer that does not decode.
        public func response() async throws -> Request.Response {
            let frame = try await self.connection.response(to: self.correlationID)
            return try KafkaFrame.decodeResponse(frame, to: Request.self, version: self.version).response
        }
    }

    /// Sends `request` at `version` and returns its decoded response.
    /// - Throws: as `write` and `PendingResponse.response()`.
    public func send<Request: KafkaRequest>(_ request: Request, version: Int16) async throws -> Request.Response {
        try await self.write(request, version: version).response()
    }

    /// Writes `request` at `version` and returns at once; the answer is awaited with the result's `response()`.
    /// Requests go out in the order their writes are called, so a caller that awaits each write before the next
    /// keeps its requests in order while their answers are awaited side by side.
    /// - Throws: the connection's failure, or the channel's error.
    public func write<Request: KafkaRequest>(_ request: Request, version: Int16) async throws -> PendingResponse<Request> {
        let correlationID = try self.takeCorrelationID(expectingResponse: true)
        do {
            try await self.outbound.write(self.frame(request, version: version, correlationID: correlationID))
        } catch {
            _ = self.state.withLock { $0.inFlight.removeValue(forKey: correlationID) }
            throw error
        }
        return PendingResponse(connection: self, correlationID: correlationID, version: version)
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    public func sendWithoutResponse<Request: KafkaRequest>(_ request: Request, version: Int16) async throws {
        let correlationID = try self.takeCorrelationID(expectingResponse: false)
        try await self.outbound.write(self.frame(request, version: version, correlationID: correlationID))
    }

    /// False once the connection has failed or been closed.
    public var isOpen: Bool { self.state.withLock { $0.failure == nil } }

    /// Fails every request in flight and later with `connectionClosed`, and wakes `closed()`; the socket itself
    /// closes when `withConnection`'s closure returns.
    public func close() {
        self.fail(.connectionClosed)
    }

    /// Returns once the connection has failed or been closed.
    public func closed() async {
        await withCheckedContinuation { continuation in
            let closed = self.state.withLock { state in
                guard state.failure == nil else { return true }
                state.closedWaiters.append(continuation)
                return false
            }
            if closed { continuation.resume() }
        }
    }

    private func frame<Request: KafkaRequest>(_ request: Request, version: Int16, correlationID: Int32) -> ByteBuffer {
        KafkaFrame.request(request, version: version, correlationID: correlationID, clientID: self.configuration.clientID)
    }

    private func takeCorrelationID(expectingResponse: Bool) throws(KafkaNIOError) -> Int32 {
        try self.state.withLock { state throws(KafkaNIOError) in
            if let failure = state.failure { throw failure }
            let id = state.nextCorrelationID
            state.nextCorrelationID = id == .max ? 0 : id + 1
            if expectingResponse { state.inFlight[id] = .sent }
            return id
        }
    }

    /// The response frame for `correlationID`, once it has come.
    private func response(to correlationID: Int32) async throws -> ByteBuffer {
        try await withCheckedThrowingContinuation { continuation in
            let outcome: Result<ByteBuffer, KafkaNIOError>? = self.state.withLock { state in
                if case .arrived(let frame)? = state.inFlight[correlationID] {
                    state.inFlight[correlationID] = nil
                    return .success(frame)
                }
                if let failure = state.failure { return .failure(failure) }
                state.inFlight[correlationID] = .waiting(continuation)
                return nil
            }
            if let outcome { continuation.resume(with: outcome.mapError { $0 as any Error }) }
        }
    }

    /// Hands each inbound frame to its request until the stream ends or fails; then fails the connection.
    private func readResponses(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>) async {
        do {
            for try await frame in inbound {
                guard let correlationID = KafkaFrame.peekCorrelationID(frame) else {
                    throw KafkaNIOError.truncatedFrame(bufferedBytes: frame.readableBytes)
                }
                let waiter: CheckedContinuation<ByteBuffer, any Error>? = try self.state.withLock {
                    state throws(KafkaNIOError) in
                    switch state.inFlight[correlationID] {
                    case .waiting(let continuation)?:
                        state.inFlight[correlationID] = nil
                        return continuation
                    case .sent?:
                        state.inFlight[correlationID] = .arrived(frame)
                        return nil
                    case .arrived?, nil:
                        throw .unexpectedCorrelationID(correlationID)
                    }
                }
                waiter?.resume(returning: frame)
            }
            self.fail(.connectionClosed)
        } catch let error as KafkaNIOError {
            self.fail(error)
        } catch {
            self.fail(.connectionClosed)
        }
    }

    /// Marks the connection failed with `error` (the first failure wins) and resumes everyone waiting.
    private func fail(_ error: KafkaNIOError) {
        let (failure, waiters, closedWaiters) = self.state.withLock { state in
            let failure = state.failure ?? error
            state.failure = failure
            let waiters = state.inFlight.values.compactMap { slot -> CheckedContinuation<ByteBuffer, any Error>? in
                if case .waiting(let continuation) = slot { return continuation }
                return nil
            }
            state.inFlight.removeAll()
            let closedWaiters = state.closedWaiters
            state.closedWaiters = []
            return (failure, waiters, closedWaiters)
        }
        for waiter in waiters { waiter.resume(throwing: failure) }
        for waiter in closedWaiters { waiter.resume() }
    }
}
