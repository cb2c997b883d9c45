import KafkaMessages
import KafkaWire
import NIOCore
import NIOPosix

/// One client connection to a Kafka broker, used from one task: send a request, await its response, then the
/// next. It numbers requests with correlation ids and checks that each response carries the id of the request in
/// flight. There is never more than one request in flight, which keeps it simple and is how Kafka's own tests
/// talk to a broker; `KafkaPipelinedConnection` is the one that pipelines.
///
/// Open one with `withConnection(host:port:configuration:_:)`; the connection is closed when the closure returns.
/// Not thread-safe, and deliberately not `Sendable`: it belongs to the task that opened it.
public final class KafkaClientConnection {
    /// What a connection sends and accepts. A plain value: freely shareable across threads.
    public struct Configuration: Sendable {
        /// The header's client id; Kafka's clients send their `client.id` here. Default "logbroker".
        public var clientID: String?
        /// The largest response frame accepted, in bytes. Default `Int32.max`: a client trusts its broker.
        public var maxFrameSize: Int
        /// How long to wait for the TCP connection. Default 10 seconds.
        public var connectTimeout: TimeAmount

        public init(
            clientID: String? = "logbroker",
            maxFrameSize: Int = Int(Int32.max),
            connectTimeout: TimeAmount = .seconds(10)
        ) {
            self.clientID = clientID
            self.maxFrameSize = maxFrameSize
            self.connectTimeout = connectTimeout
        }
    }

    public let configuration: Configuration
    /// The broker's address, as connected.
    public let remoteAddress: SocketAddress?
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var nextCorrelationID: Int32 = 0

    private init(
        configuration: Configuration,
        remoteAddress: SocketAddress?,
        inbound: NIOAsyncChannelInboundStream<ByteBuffer>,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) {
        self.configuration = configuration
        self.remoteAddress = remoteAddress
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    /// Connects to `host:port`, runs `body` with the connection, then closes it (also when `body` throws).
    public static func withConnection<Result>(
        host: String,
        port: Int,
        configuration: Configuration = Configuration(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (KafkaClientConnection) async throws -> sending Result
    ) async throws -> sending Result {
        let channel = try await KafkaChannelSetup.connect(
            host: host,
            port: port,
            configuration: configuration,
            eventLoopGroup: eventLoopGroup
        )
        let remoteAddress = channel.channel.remoteAddress
        return try await channel.executeThenClose { inbound, outbound in
            let connection = KafkaClientConnection(
                configuration: configuration,
                remoteAddress: remoteAddress,
                inbound: inbound,
                outbound: outbound
            )
            return try await body(connection)
        }
    }

    /// Sends `request` at `version` and returns its decoded response.
    /// - Throws: `KafkaNIOError.connectionClosed` if the broker closes the connection first (as Kafka does for an
    ///   API or version it does not support), `correlationMismatch` or `malformedResponse` for a wrong answer, or
    ///   the channel's error.
    public func send<Request: KafkaRequest>(_ request: Request, version: Int16) async throws -> Request.Response {
        let correlationID = self.takeCorrelationID()
        let frame = KafkaFrame.request(
            request,
            version: version,
            correlationID: correlationID,
            clientID: self.configuration.clientID
        )
        try await self.outbound.write(frame)
        guard let responseFrame = try await self.receiveFrame() else { throw KafkaNIOError.connectionClosed }
        let (receivedID, response) = try KafkaFrame.decodeResponse(responseFrame, to: Request.self, version: version)
        guard receivedID == correlationID else {
            throw KafkaNIOError.correlationMismatch(expected: correlationID, received: receivedID)
        }
        return response
    }

    /// Sends the contents of one frame as given (the size is added); for requests built by hand.
    public func sendFrame(_ frame: ByteBuffer) async throws {
        try await self.outbound.write(frame)
    }

    /// The contents of the next frame the broker sends, or nil once it has closed the connection.
    public func receiveFrame() async throws -> ByteBuffer? {
        try await self.inbound.next()
    }

    /// A correlation id not used yet on this connection.
    public func takeCorrelationID() -> Int32 {
        defer { self.nextCorrelationID = self.nextCorrelationID == .max ? 0 : self.nextCorrelationID + 1 }
        return self.nextCorrelationID
    }
}

@available(*, unavailable)
extension KafkaClientConnection: Sendable {}
