import KafkaMessages
import KafkaNIO
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The broker's network edge: one bound server socket per listener and, per accepted connection, one child task
/// (on the connection's event loop, through `EventLoopTaskExecutor`) that reads a frame, reads its header, checks
/// the version against the handler table, runs the handler and writes the response, then reads the next frame.
/// That is Kafka's connection model: responses are in order by construction, and a slow request holds up only its
/// own connection.
///
/// Bad input costs only its own connection: a frame size below 0 or above `socket.request.max.bytes`, bytes that
/// end inside a frame, a header that does not parse, an unknown API key or an unadvertised version each close that
/// connection with a log line, while every other connection goes on.
///
/// Connections and the memory they hold are bounded (DESIGN.md, principle 5): `ConnectionQuotas` closes a connection
/// over `max.connections` (or the descriptor split's share), its listener's or its address's limit at accept; each
/// connection's `KafkaRequestFrameReader` reserves every frame in the `queued.max.request.bytes` pool before reading
/// it, closes a connection whose frame does not arrive within `socket.request.read.timeout.ms` of its size, and one
/// idle for `connections.max.idle.ms`.
///
/// Use: `bind` (so bind errors are reported before anything runs, and tests learn the ports), then `run`, as a
/// `Service` in a `ServiceGroup`. On graceful shutdown (SIGTERM/SIGINT through the group) it stops accepting, lets
/// each connection finish the request it is serving and write its response, closes idle connections, and returns
/// once every connection is closed.
///
/// Thread safety: a `Sendable` value; `run` must be called once.
public struct KafkaServer: Service {
    /// One bound listener: its configuration, its address, and the stream of accepted connections.
    struct BoundListener: Sendable {
        let listener: BrokerConfiguration.Listener
        let channel: NIOAsyncChannel<NIOAsyncChannel<KafkaRequestFrame, IOData>, Never>
        let accepted: AcceptedConnections
    }

    private let listeners: [BoundListener]
    private let handlers: HandlerTable
    private let logger: Logger
    private let quotas: ConnectionQuotas
    /// The request memory pool (`queued.max.request.bytes`), shared by every connection.
    public let memoryPool: RequestMemoryPool

    /// Client connections open now.
    public var openConnections: Int { self.quotas.openConnections }

    /// The addresses actually bound, in the order of `listeners` (a port 0 listener shows its real port here).
    public var localAddresses: [SocketAddress] {
        self.listeners.compactMap { $0.channel.channel.localAddress }
    }

    private init(
        listeners: [BoundListener],
        handlers: HandlerTable,
        quotas: ConnectionQuotas,
        memoryPool: RequestMemoryPool,
        logger: Logger
    ) {
        self.listeners = listeners
        self.handlers = handlers
        self.quotas = quotas
        self.memoryPool = memoryPool
        self.logger = logger
    }

    /// Binds `listeners` (the client listeners of `configuration`, or its controller listeners), with the limits of
    /// `configuration`. Connections are accepted only once `run` is called.
    /// - Parameter connectionLimit: the descriptor split's share for connections (`FileHandleBudget.split`), which
    ///   lowers `max.connections` when it is smaller; nil: `max.connections` alone. Each server counts its own
    ///   connections, so the controller listeners' few connections never count against the clients' limit (Kafka
    ///   lets controller and inter-broker connections past the broker-wide limit too).
    /// - Throws: `LogBrokerServerError.bindFailed` naming the listener (the ones already bound are closed).
    public static func bind(
        configuration: BrokerConfiguration,
        listeners: [BrokerConfiguration.Listener],
        handlers: HandlerTable,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        connectionLimit: Int? = nil,
        logger: Logger
    ) async throws -> KafkaServer {
        let limits = configuration.connections
        let quotas = ConnectionQuotas(
            limits: limits,
            maxConnections: min(limits.maxConnections, connectionLimit ?? Int.max),
            logger: logger
        )
        let memoryPool = RequestMemoryPool(
            capacity: configuration.queuedMaxRequestBytes > 0
                ? Int(configuration.queuedMaxRequestBytes) : nil
        )
        let readTimeoutMs = configuration.socketRequestReadTimeoutMs
        let framing = KafkaServerFraming(
            maxFrameSize: Int(configuration.socketRequestMaxBytes),
            memoryPool: memoryPool,
            readTimeout: readTimeoutMs > 0 ? .milliseconds(readTimeoutMs) : nil,
            idleTimeout: limits.idleTimeoutMs.map { .milliseconds($0) }
        )
        var bound: [BoundListener] = []
        for listener in listeners {
            let name = listener.name
            let accepted = AcceptedConnections()
            do {
                let host = listener.host.isEmpty ? "0.0.0.0" : listener.host
                let channel = try await ServerBootstrap(group: eventLoopGroup)
                    .serverChannelOption(.backlog, value: 256)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .bind(host: host, port: listener.port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try Self.setUpConnection(
                                channel,
                                listener: name,
                                quotas: quotas,
                                framing: framing,
                                accepted: accepted
                            )
                        }
                    }
                bound.append(BoundListener(listener: listener, channel: channel, accepted: accepted))
            } catch {
                for listener in bound { try? await listener.channel.channel.close() }
                throw LogBrokerServerError.bindFailed(listener: listener.description, reason: "\(error)")
            }
        }
        return KafkaServer(
            listeners: bound,
            handlers: handlers,
            quotas: quotas,
            memoryPool: memoryPool,
            logger: logger
        )
    }

    /// An accepted connection: counted by `quotas` (given back when it closes), given Kafka framing and held by
    /// `accepted` until the accept loop takes it, or closed at once when it would pass a limit or the listener is
    /// closing (NIO then drops it; a refusal is logged by `quotas`).
    private static func setUpConnection(
        _ channel: any Channel,
        listener: String,
        quotas: ConnectionQuotas,
        framing: KafkaServerFraming,
        accepted: AcceptedConnections
    ) throws -> NIOAsyncChannel<KafkaRequestFrame, IOData> {
        var address = channel.remoteAddress?.ipAddress ?? "?"
        // An IPv4 client of a dual-stack listener counts as its IPv4 address, as the overrides name it.
        if address.hasPrefix("::ffff:"), address.contains(".") { address.removeFirst("::ffff:".count) }
        guard quotas.admit(listener: listener, address: address, eventLoop: channel.eventLoop) else {
            channel.close(promise: nil)
            throw ConnectionRefused()
        }
        let counted = address
        channel.closeFuture.whenComplete { _ in quotas.release(listener: listener, address: counted) }
        do {
            return try accepted.hold { try KafkaChannelSetup.makeServerAsyncChannel(channel, framing: framing) }
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }

    /// A connection closed at accept because it would pass a connection limit or its listener is closing.
    private struct ConnectionRefused: Error {}

    /// The connections of one listener that are set up but not yet taken by its accept loop. NIO drops the ones
    /// still queued when the listening channel closes, and an `NIOAsyncChannel` released without being closed
    /// traps (swift-nio#2813: seen when SIGTERM met a connection being accepted), so each is held here until the
    /// loop takes it, and the loop closes the ones left when it ends. Thread-safe: a `Mutex`.
    final class AcceptedConnections: Sendable {
        private struct State {
            var open = true
            var waiting: [ObjectIdentifier: NIOAsyncChannel<KafkaRequestFrame, IOData>] = [:]
        }
        private let state = Mutex(State())

        /// Makes the connection with `setUp` and holds it; once `close` has run, makes nothing and refuses it.
        func hold(
            _ setUp: () throws -> NIOAsyncChannel<KafkaRequestFrame, IOData>
        ) throws -> NIOAsyncChannel<KafkaRequestFrame, IOData> {
            try self.state.withLock { state in
                guard state.open else { throw ConnectionRefused() }
                let connection = try setUp()
                state.waiting[ObjectIdentifier(connection.channel)] = connection
                return connection
            }
        }

        /// The accept loop took `channel`'s connection.
        func take(_ channel: any Channel) {
            self.state.withLock { _ = $0.waiting.removeValue(forKey: ObjectIdentifier(channel)) }
        }

        /// Refuses every later connection and returns the ones never taken, for the caller to close.
        func close() -> [NIOAsyncChannel<KafkaRequestFrame, IOData>] {
            self.state.withLock { state in
                state.open = false
                defer { state.waiting = [:] }
                return Array(state.waiting.values)
            }
        }
    }

    public func run() async throws {
        for listener in self.listeners {
            let address = listener.channel.channel.localAddress
            self.logger.info(
                "listening",
                metadata: [
                    "listener": "\(listener.listener.name)",
                    "host": "\(address?.ipAddress ?? "?")",
                    "port": "\(address?.port.map(String.init) ?? "?")",
                ]
            )
        }
        try await withThrowingDiscardingTaskGroup { group in
            for listener in self.listeners {
                group.addTask { try await self.accept(on: listener) }
            }
        }
        self.logger.info("all connections closed")
    }

    /// Accepts connections until the listener is closed by graceful shutdown, each in its own child task; returns
    /// when those have all finished.
    private func accept(on listener: BoundListener) async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                defer {
                    for connection in listener.accepted.close() {
                        group.addTask { try? await connection.executeThenClose { _, _ in } }
                    }
                }
                try await listener.channel.executeThenClose { connections in
                    for try await connection in connections {
                        listener.accepted.take(connection.channel)
                        let executor = EventLoopTaskExecutor(connection.channel.eventLoop)
                        group.addTask(executorPreference: executor) {
                            await self.serve(connection, listener: listener.listener.name, executor: executor)
                        }
                    }
                }
                self.logger.info("stopped accepting connections", metadata: ["listener": "\(listener.listener.name)"])
            }
        } onGracefulShutdown: {
            listener.channel.channel.close(promise: nil)
        }
    }

    /// Serves one connection until the peer closes it, a request closes it, or graceful shutdown. Never throws:
    /// whatever goes wrong ends this connection only, with a log line.
    /// Runs on `executor`, the connection's event loop, and so does each request's handler.
    private func serve(
        _ connection: NIOAsyncChannel<KafkaRequestFrame, IOData>,
        listener: String,
        executor: EventLoopTaskExecutor
    ) async {
        var logger = self.logger
        let remoteAddress = connection.channel.remoteAddress
        logger[metadataKey: "peer"] = "\(remoteAddress.map(Self.describe) ?? "?")"
        logger[metadataKey: "listener"] = "\(listener)"
        let state = ConnectionState()
        let channel = connection.channel
        // A peer that closes while its request is parked (a long-poll Fetch) is not read from until the handler
        // returns: cancel the handler, so the parked operation leaves the queue at once instead of at its timeout.
        let lifetime = ConnectionLifetime()
        channel.closeFuture.whenComplete { _ in
            state.closed()
            lifetime.closed(runActions: !state.isShuttingDown)
        }
        logger.debug("connection opened")
        do {
            try await withGracefulShutdownHandler {
                try await connection.executeThenClose { inbound, outbound in
                    var frames = inbound.makeAsyncIterator()
                    while state.startWaiting() {
                        guard let frame = try await frames.next() else {
                            logger.debug(state.isShuttingDown ? "closed for shutdown" : "connection closed by the peer")
                            return
                        }
                        guard state.startRequest() else { return }
                        let request = Task(executorPreference: executor) { [logger] in
                            await self.handle(
                                frame.bytes,
                                remoteAddress: remoteAddress,
                                listener: listener,
                                connection: lifetime,
                                logger: logger
                            )
                        }
                        state.serving(request)
                        let outcome = await withTaskCancellationHandler {
                            await request.value
                        } onCancel: {
                            request.cancel()
                        }
                        // Handled: its bytes go back to the pool (the response is not the request's memory).
                        frame.release()
                        if state.isClosed {
                            Self.release(outcome)
                            return
                        }
                        switch outcome {
                        case .respond(let response):
                            try await outbound.write(contentsOf: Self.frame([.byteBuffer(response)]))
                        case .respondParts(let parts):
                            do {
                                try await outbound.write(contentsOf: Self.frame(parts))
                            } catch {
                                Self.release(outcome)
                                throw error
                            }
                        case .noResponse:
                            break
                        case .close(let reason):
                            logger.warning("closing connection: \(reason)")
                            return
                        }
                    }
                    logger.debug("closing connection for shutdown")
                }
            } onGracefulShutdown: {
                if state.shutDown() { channel.close(promise: nil) }
            }
        } catch {
            let cause = Self.unwrap(error)
            if state.isShuttingDown {
                logger.debug("connection ended during shutdown: \(cause)")
            } else if let cause = cause as? KafkaNIOError, cause.isIdleTimeout {
                // Routine (Kafka logs it at debug too); thousands at once must not flood the log.
                logger.debug("closing idle connection: \(cause)")
            } else if cause is KafkaNIOError {
                // Bytes that break Kafka's framing: worth an operator's attention.
                logger.warning("closing connection: \(cause)")
            } else {
                // The network's doing (a reset, a write to a closed socket): routine for a broker.
                logger.debug("connection ended: \(cause)")
            }
        }
    }

    /// Closes the descriptors of the file regions of a response that will not be written (the peer left while it
    /// was prepared): only a region handed to the channel is closed by `FileRegionOwner`. Closing one it already
    /// closed is a harmless error.
    private static func release(_ outcome: HandlerTable.Outcome) {
        guard case .respondParts(let parts) = outcome else { return }
        for case .fileRegion(let region) in parts { try? region.fileHandle.close() }
    }

    /// A frame: its size, then `parts`.
    private static func frame(_ parts: [IOData]) -> [IOData] {
        var size = ByteBuffer()
        size.writeInteger(Int32(truncatingIfNeeded: parts.reduce(0) { $0 + $1.readableBytes }))
        return [.byteBuffer(size)] + parts
    }

    /// Reads the request header of one frame and hands it to the handler table.
    private func handle(
        _ frame: ByteBuffer,
        remoteAddress: SocketAddress?,
        listener: String,
        connection: ConnectionLifetime,
        logger: Logger
    ) async -> HandlerTable.Outcome {
        let envelope: KafkaRequestEnvelope
        do {
            envelope = try KafkaRequestEnvelope(parsing: frame)
        } catch {
            return .close(reason: "\(error)")
        }
        var logger = logger
        logger[metadataKey: "correlation"] = "\(envelope.correlationID)"
        logger.trace("request", metadata: ["api": "\(envelope.apiKey)", "version": "\(envelope.apiVersion)"])
        let context = RequestContext(
            apiVersion: envelope.apiVersion,
            correlationID: envelope.correlationID,
            clientID: envelope.clientID,
            remoteAddress: remoteAddress,
            listenerName: listener,
            advertisedAPIs: self.handlers.advertised,
            logger: logger,
            connection: connection
        )
        let outcome = await self.handlers.handle(envelope, context: context)
        if case .respond = outcome {
            logger.debug(
                "served",
                metadata: [
                    "api": "\(envelope.apiKey)", "version": "\(envelope.apiVersion)", "client": "\(envelope.clientID)",
                ]
            )
        }
        return outcome
    }

    /// `host:port` of an address.
    private static func describe(_ address: SocketAddress) -> String {
        "\(address.ipAddress ?? "?"):\(address.port.map(String.init) ?? "?")"
    }

    /// The cause of a connection error (the frame decoder's errors can arrive wrapped by NIO).
    private static func unwrap(_ error: any Error) -> any Error {
        if case ByteToMessageDecoderError.dataReceivedInErrorState(let inner, _) = error { return inner }
        return error
    }
}

extension KafkaServer: CustomStringConvertible {
    /// The listeners, for ServiceLifecycle's logs (which would otherwise print the whole value).
    public var description: String {
        "KafkaServer(\(self.listeners.map { $0.listener.description }.joined(separator: ", ")))"
    }
}

/// Whether a connection is waiting for a request, serving one, or told to shut down, so graceful shutdown can
/// close idle connections at once and let busy ones finish their response first; and the request being served, so
/// that the channel closing cancels it.
///
/// Thread-safe: its state is guarded by a `Mutex`; graceful shutdown and the channel's close call it from other
/// tasks.
final class ConnectionState: Sendable {
    private struct State {
        var busy = false
        var shuttingDown = false
        var closed = false
        var request: Task<HandlerTable.Outcome, Never>?
    }

    private let state = Mutex(State())

    /// Marks the connection idle; false if it should close instead.
    func startWaiting() -> Bool {
        self.state.withLock { state in
            state.busy = false
            return !state.shuttingDown
        }
    }

    /// Marks the connection busy with a request; false if shutdown closed it while it waited.
    func startRequest() -> Bool {
        self.state.withLock { state in
            state.busy = true
            return !state.shuttingDown
        }
    }

    /// Records the shutdown; true if the connection is idle and should be closed now.
    func shutDown() -> Bool {
        self.state.withLock { state in
            state.shuttingDown = true
            return !state.busy
        }
    }

    var isShuttingDown: Bool { self.state.withLock { $0.shuttingDown } }

    /// Records the request being served; cancels it at once if the channel already closed.
    func serving(_ request: Task<HandlerTable.Outcome, Never>) {
        let closed = self.state.withLock { state in
            state.request = request
            return state.closed
        }
        if closed { request.cancel() }
    }

    /// The channel closed: cancels the request being served, if any.
    func closed() {
        let request = self.state.withLock { state in
            state.closed = true
            return state.request
        }
        request?.cancel()
    }

    var isClosed: Bool { self.state.withLock { $0.closed } }
}
