import NIOCore
import NIOEmbedded
import Testing

@testable import KafkaNIO

/// Counts the `read()` calls that reach the socket (it sits between the reader and the head of the pipeline).
final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = Any
    var reads = 0
    func read(context: ChannelHandlerContext) {
        self.reads += 1
        context.read()
    }
}

/// Collects the frames the reader fires and the errors that reach the end of the pipeline.
final class FrameSink: ChannelInboundHandler {
    typealias InboundIn = KafkaRequestFrame
    var frames: [KafkaRequestFrame] = []
    var errors: [KafkaNIOError] = []
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.frames.append(Self.unwrapInboundIn(data))
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? KafkaNIOError { self.errors.append(error) }
    }
}

@Suite struct KafkaRequestFrameReaderTests {
    /// A channel with a reader configured by `framing`, a read counter before it and a sink after it.
    static func channel(_ framing: KafkaServerFraming) throws -> (EmbeddedChannel, ReadCounter, FrameSink) {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        let sink = FrameSink()
        try channel.pipeline.syncOperations.addHandlers([counter, KafkaRequestFrameReader(framing: framing), sink])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, counter, sink)
    }

    static func frame(_ bytes: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int32(bytes.count))
        buffer.writeBytes(bytes)
        return buffer
    }

    @Test(arguments: [1, 2, 3, 4, 5, 7, 64, 1000])
    func framesSurviveEverySplit(chunkSize: Int) throws {
        let frames: [[UInt8]] = [[], [7], (0..<300).map { UInt8(truncatingIfNeeded: $0) }]
        var stream = ByteBuffer()
        for frame in frames {
            var framed = Self.frame(frame)
            stream.writeBuffer(&framed)
        }
        let pool = RequestMemoryPool(capacity: 1000)
        let (channel, _, sink) = try Self.channel(KafkaServerFraming(maxFrameSize: 1000, memoryPool: pool))
        while let chunk = stream.readSlice(length: min(chunkSize, stream.readableBytes)), chunk.readableBytes > 0 {
            try channel.writeInbound(chunk)
        }
        #expect(sink.frames.map { Array($0.bytes.readableBytesView) } == frames)
        #expect(pool.availableBytes == 1000 - 301)
        for frame in sink.frames { frame.release() }
        #expect(pool.availableBytes == 1000)
        _ = try channel.finish()
    }

    @Test func aConnectionIsNotReadWhileThePoolCannotCoverItsFrame() throws {
        let pool = RequestMemoryPool(capacity: 100)
        let framing = KafkaServerFraming(maxFrameSize: 100, memoryPool: pool)
        let (first, _, firstSink) = try Self.channel(framing)
        let (second, secondReads, secondSink) = try Self.channel(framing)
        try first.writeInbound(Self.frame([UInt8](repeating: 1, count: 60)))
        #expect(firstSink.frames.count == 1)

        // 60 more do not fit: the size is read, the bytes after it are held, and reads stop.
        try second.writeInbound(Self.frame([UInt8](repeating: 2, count: 60)))
        #expect(secondSink.frames.isEmpty)
        let readsBefore = secondReads.reads
        second.read()
        #expect(secondReads.reads == readsBefore)
        #expect(pool.waitingCount == 1)

        // Memory back: the held frame is delivered and the withheld read goes out.
        firstSink.frames[0].release()
        second.embeddedEventLoop.run()
        #expect(secondSink.frames.map { Array($0.bytes.readableBytesView) } == [[UInt8](repeating: 2, count: 60)])
        #expect(secondReads.reads == readsBefore + 1)
        #expect(pool.availableBytes == 40)
        secondSink.frames[0].release()
        _ = try first.finish()
        _ = try second.finish()
    }

    @Test func aFrameLargerThanThePoolFailsTheConnection() throws {
        let pool = RequestMemoryPool(capacity: 100)
        let (channel, _, sink) = try Self.channel(KafkaServerFraming(maxFrameSize: 1000, memoryPool: pool))
        var size = ByteBuffer()
        size.writeInteger(Int32(101))
        try channel.writeInbound(size)
        #expect(sink.errors == [.frameExceedsMemoryPool(declared: 101, pool: 100)])
        #expect(pool.availableBytes == 100)
        _ = try? channel.finish()
    }

    @Test func aClosedConnectionGivesBackItsPartialFrameAndItsPlaceInTheQueue() throws {
        let pool = RequestMemoryPool(capacity: 100)
        let framing = KafkaServerFraming(maxFrameSize: 100, memoryPool: pool)
        let (partial, _, _) = try Self.channel(framing)
        let (waiting, _, _) = try Self.channel(framing)
        var head = ByteBuffer()
        head.writeInteger(Int32(80))
        head.writeBytes([1, 2, 3])
        try partial.writeInbound(head)
        #expect(pool.availableBytes == 20)
        try waiting.writeInbound(Self.frame([UInt8](repeating: 0, count: 50)))
        #expect(pool.waitingCount == 1)
        _ = try? waiting.finish()
        #expect(pool.waitingCount == 0)
        _ = try? partial.finish()
        #expect(pool.availableBytes == 100)
    }

    @Test func aFrameThatDoesNotArriveWithinTheReadTimeoutClosesTheConnection() throws {
        let framing = KafkaServerFraming(maxFrameSize: 100, readTimeout: .seconds(3))
        let (channel, _, sink) = try Self.channel(framing)
        var head = ByteBuffer()
        head.writeInteger(Int32(50))
        head.writeBytes([1, 2])
        try channel.writeInbound(head)
        channel.read()  // the broker waits on the peer
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        try channel.writeInbound(ByteBuffer(bytes: [3]))  // a trickle does not extend the deadline
        channel.read()
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(sink.errors == [.requestReadTimeout(declared: 50, received: 3, timeoutMs: 3000)])
        #expect(!channel.isActive)
    }

    @Test func theReadTimeoutDoesNotRunWhileTheBrokerHoldsReadsBack() throws {
        let framing = KafkaServerFraming(maxFrameSize: 100, readTimeout: .seconds(3))
        let (channel, _, sink) = try Self.channel(framing)
        var head = ByteBuffer()
        head.writeInteger(Int32(50))
        try channel.writeInbound(head)
        // No read() after the read completed: the connection's queue of requests is full, not the peer slow.
        channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        #expect(channel.isActive)
        channel.read()
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(sink.errors.count == 1)
        #expect(!channel.isActive)
    }

    @Test func anIdleConnectionIsClosedAndActivityKeepsItOpen() throws {
        let framing = KafkaServerFraming(maxFrameSize: 100, idleTimeout: .seconds(10))
        let (channel, _, sink) = try Self.channel(framing)
        channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        try channel.writeInbound(Self.frame([1]))
        channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        #expect(channel.isActive)
        channel.flush()  // a response written
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(sink.errors == [.idleTimeout(ms: 10_000)])
        #expect(sink.errors[0].isIdleTimeout)
        #expect(!channel.isActive)
    }
}
