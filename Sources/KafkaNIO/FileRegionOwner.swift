import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Outbound handler for the broker's connections: every `FileRegion` written through it owns a duplicated
/// descriptor, which this closes once the write completes or fails (NIO never closes a region's handle).
///
/// It also stops a transfer from spinning when its file shrinks underneath: NIO treats a sendfile that returns
/// 0 bytes before the region's end as a partial write and retries as soon as the socket is writable, forever.
/// While a region is pending this checks its file's size every `truncationCheckInterval`; a file now shorter than
/// the region's end closes the connection (the response can no longer be completed).
///
/// Not thread-safe: one instance per channel, used on its event loop.
public final class FileRegionOwner: ChannelOutboundHandler {
    public typealias OutboundIn = IOData
    public typealias OutboundOut = IOData

    /// How often a pending region's file size is checked.
    public static let truncationCheckInterval = TimeAmount.milliseconds(500)

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .fileRegion(let region) = self.unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        let written = promise ?? context.eventLoop.makePromise()
        let watch = Self.watch(region, context: context)
        written.futureResult.whenComplete { _ in
            watch.cancel()
            try? region.fileHandle.close()
        }
        context.write(data, promise: written)
    }

    /// Checks `region`'s file size until the write completes; closes the channel if the file got too short.
    private static func watch(_ region: FileRegion, context: ChannelHandlerContext) -> RepeatedTask {
        let channel = context.channel
        let endIndex = region.endIndex
        let handle = region.fileHandle
        return context.eventLoop.scheduleRepeatedTask(
            initialDelay: Self.truncationCheckInterval,
            delay: Self.truncationCheckInterval
        ) { task in
            let size: Int? = try? handle.withUnsafeFileDescriptor { descriptor in
                var status = stat()
                return fstat(descriptor, &status) == 0 ? Int(status.st_size) : nil
            }
            if let size, size < endIndex {
                task.cancel()
                channel.close(promise: nil)
            }
        }
    }
}

@available(*, unavailable)
extension FileRegionOwner: Sendable {}
