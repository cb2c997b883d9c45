import NIOCore

/// Installs Kafka framing on a freshly created channel and wraps it for async use: inbound, the contents of each
/// frame (size removed, bounded by `maxFrameSize`); outbound, frame contents to which the size is added. Shared by
/// the broker's accepted connections and `KafkaClientConnection`. Stateless.
public enum KafkaChannelSetup {
    /// Adds `KafkaFrameDecoder` and `KafkaFrameEncoder` to `channel` and wraps it in an `NIOAsyncChannel`.
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
        return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
    }
}
