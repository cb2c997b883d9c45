import NIOCore
import NIOPosix

/// Installs Kafka framing on a freshly created channel and wraps it for async use: inbound, the contents of each
/// frame (size removed, bounded by `maxFrameSize`); outbound, frame contents to which the size is added
/// (`makeAsyncChannel`, for `KafkaClientConnection`) or whole frames in parts (`makeServerAsyncChannel`, for the
/// broker's accepted connections). Stateless.
public enum KafkaChannelSetup {
    /// How many decoded frames may wait for the connection's task before NIO stops reading the socket. Kafka's
    /// broker reads one request and mutes the socket until it has answered; a frame can be as large as
    /// `socket.request.max.bytes`, so the queue is kept this short (1 to 2 frames) to keep a pipelining or hostile
    /// client from making the broker hold many of them. Further requests wait in the kernel's socket buffer.
    public static let inboundBackPressure = NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark(
        lowWatermark: 1,
        highWatermark: 2
    )

    /// Adds `KafkaFrameDecoder` and `KafkaFrameEncoder` to `channel` and wraps it in an `NIOAsyncChannel` whose
    /// inbound queue is bounded by `inboundBackPressure`.
    ///
    /// Must run on `channel`'s event loop, before any read (inside a bootstrap's channel initializer), as
    /// `NIOAsyncChannel(wrappingChannelSynchronously:)` requires.
    public static func makeAsyncChannel(
        _ channel: any Channel,
        maxFrameSize: Int
    ) throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(KafkaFrameDecoder(maxFrameSize: maxFrameSize))
        )
        try channel.pipeline.syncOperations.addHandler(KafkaFrameEncoder())
        return try NIOAsyncChannel(
            wrappingChannelSynchronously: channel,
            configuration: .init(backPressureStrategy: Self.inboundBackPressure)
        )
    }

    /// A client's TCP connection to `host:port` (TCP_NODELAY, `configuration`'s connect timeout) set up by
    /// `makeAsyncChannel`; for `KafkaClientConnection` and `KafkaPipelinedConnection`.
    static func connect(
        host: String,
        port: Int,
        configuration: KafkaClientConnection.Configuration,
        eventLoopGroup: any EventLoopGroup
    ) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        let maxFrameSize = configuration.maxFrameSize
        return try await ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Self.makeAsyncChannel(channel, maxFrameSize: maxFrameSize)
                }
            }
    }

    /// The broker's side: `KafkaRequestFrameReader` inbound (frames bounded by `framing`: size, memory pool, read
    /// deadline, idle timeout); outbound, whole frames as `IOData` parts written in order (the caller writes the
    /// size), so responses can send log segment bytes as `FileRegion`s (sendfile), each owning its descriptor
    /// (`FileRegionOwner`).
    ///
    /// Must run on `channel`'s event loop, before any read.
    public static func makeServerAsyncChannel(
        _ channel: any Channel,
        framing: KafkaServerFraming
    ) throws -> NIOAsyncChannel<KafkaRequestFrame, IOData> {
        try channel.pipeline.syncOperations.addHandler(KafkaRequestFrameReader(framing: framing))
        try channel.pipeline.syncOperations.addHandler(FileRegionOwner())
        return try NIOAsyncChannel(
            wrappingChannelSynchronously: channel,
            configuration: .init(backPressureStrategy: Self.inboundBackPressure)
        )
    }
}
