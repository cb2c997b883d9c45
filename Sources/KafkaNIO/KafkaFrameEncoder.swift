import NIOCore

/// Writes each outbound frame as its 4-byte big-endian size followed by the frame, without copying the frame: the
/// size goes out as a separate 4-byte buffer and the socket gathers both in one `writev` at the next flush. A later
/// zero-copy path adds file regions the same way.
///
/// Not thread-safe: a channel handler, used on its channel's event loop only.
public final class KafkaFrameEncoder: ChannelOutboundHandler {
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = Self.unwrapOutboundIn(data)
        var size = context.channel.allocator.buffer(capacity: 4)
        size.writeInteger(Int32(frame.readableBytes))
        context.write(Self.wrapOutboundOut(size), promise: nil)
        context.write(Self.wrapOutboundOut(frame), promise: promise)
    }
}

@available(*, unavailable)
extension KafkaFrameEncoder: Sendable {}
