import NIOCore

/// One request frame read by the broker: its contents (the 4-byte size removed) and the pool memory reserved for
/// it. The connection's owner calls `release()` once the request has been handled; a frame dropped unhandled (its
/// connection closed with it queued) gives its memory back when it is freed.
public struct KafkaRequestFrame: Sendable {
    /// The frame's contents: request header and body.
    public var bytes: ByteBuffer
    /// The bytes reserved for it in the request memory pool.
    public let reservation: RequestMemoryReservation

    /// Gives the frame's reserved bytes back to the pool.
    public func release() {
        self.reservation.release()
    }
}

/// How the broker reads request frames from a connection: the size limit, the memory pool every connection draws
/// on, the read deadline of a frame and the idle timeout of a connection.
public struct KafkaServerFraming: Sendable {
    /// The largest frame accepted (`socket.request.max.bytes`).
    public var maxFrameSize: Int
    /// The memory all request frames share (`queued.max.request.bytes`).
    public var memoryPool: RequestMemoryPool
    /// How long a frame's bytes may take to arrive once its size has (`socket.request.read.timeout.ms`, LogBroker's
    /// own setting); nil: no deadline.
    public var readTimeout: TimeAmount?
    /// How long a connection may go without reading or writing a byte (`connections.max.idle.ms`); nil: forever.
    public var idleTimeout: TimeAmount?

    public init(
        maxFrameSize: Int,
        memoryPool: RequestMemoryPool = .unbounded,
        readTimeout: TimeAmount? = nil,
        idleTimeout: TimeAmount? = nil
    ) {
        precondition(maxFrameSize >= 0, "maxFrameSize must not be negative")
        self.maxFrameSize = maxFrameSize
        self.memoryPool = memoryPool
        self.readTimeout = readTimeout
        self.idleTimeout = idleTimeout
    }
}

/// The broker's frame reader: splits a connection's bytes into `KafkaRequestFrame`s, bounding the memory they take.
///
/// - A frame's size is checked (0 to `maxFrameSize`) and its bytes reserved in the memory pool as soon as the 4-byte
///   size is in, before any of the frame is buffered; the frame is then read into one buffer of exactly that size
///   (a frame that arrived whole in one read is a slice of it, not a copy).
/// - While the pool cannot cover the frame, the connection is not read: NIO's `read()` is withheld until the pool
///   grants the bytes, so the rest stays in the kernel's socket buffer. A frame larger than the whole pool fails the
///   connection.
/// - Once the size is in, the frame's bytes must arrive within `readTimeout`; the clock counts only while the
///   connection is being read (a read is outstanding), never while the broker itself holds reads back (a queue of
///   requests not yet served). A connection that misses it is failed and closed: a slowloris cannot hold memory.
/// - A connection that reads and writes nothing for `idleTimeout` is failed and closed (Kafka's
///   `connections.max.idle.ms`), unless it is waiting for pool memory.
///
/// Failures go through the pipeline as `KafkaNIOError`s (the connection's owner logs them); input after one is
/// dropped. A connection that ends inside a frame fires `truncatedFrame`.
///
/// Not thread-safe: a channel handler, used on its channel's event loop only.
final class KafkaRequestFrameReader: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = KafkaRequestFrame
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private enum Phase {
        /// Reading a frame's size (`partialSize` holds the bytes of it read so far).
        case size
        /// The size is in, the pool cannot cover it yet; `pending` holds the input read past the size.
        case waitingForMemory(size: Int, waiterID: UInt64)
        /// Accumulating a frame's bytes into `body`.
        case body(size: Int, reservation: RequestMemoryReservation)
        /// A failure was fired or the channel closed; input is dropped.
        case stopped
    }

    private let framing: KafkaServerFraming
    private var phase = Phase.size
    private var partialSize: UInt32 = 0
    private var partialSizeBytes = 0
    private var body: ByteBuffer?
    private var pending: ByteBuffer?
    /// A `read()` came while the connection waited for memory; it is issued once the memory is granted.
    private var readHeld = false
    /// A `read()` went to the socket and has not been satisfied by a read completion: the peer is being waited on.
    private var readOutstanding = false
    /// Frames fired outside a read cycle (after a grant), which need a read completion to be delivered.
    private var firedOutOfBand = false
    /// Counts frames started, so a deadline timer knows whether its frame is still the current one.
    private var frameNumber: UInt64 = 0
    private var deadline: Scheduled<Void>?
    /// The deadline passed while the broker held reads back; it restarts with the next read.
    private var deadlineDeferred = false
    private var idleCheck: Scheduled<Void>?
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    private var context: ChannelHandlerContext?

    init(framing: KafkaServerFraming) {
        self.framing = framing
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.lastActivity = context.eventLoop.now
        self.scheduleIdleCheck(in: self.framing.idleTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.stop()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        let buffered: Int? =
            switch self.phase {
            case .size: self.partialSizeBytes > 0 ? self.partialSizeBytes : nil
            case .waitingForMemory: 4 + (self.pending?.readableBytes ?? 0)
            case .body: 4 + (self.body?.readableBytes ?? 0)
            case .stopped: nil
            }
        self.stop()
        if let buffered { context.fireErrorCaught(KafkaNIOError.truncatedFrame(bufferedBytes: buffered)) }
        context.fireChannelInactive()
    }

    /// Gives back what the connection holds: timers, its place in the pool's queue, a partial frame's memory.
    private func stop() {
        self.deadline?.cancel()
        self.deadline = nil
        self.idleCheck?.cancel()
        self.idleCheck = nil
        switch self.phase {
        case .waitingForMemory(_, let waiterID): self.framing.memoryPool.cancelWait(waiterID)
        case .body(_, let reservation): reservation.release()
        case .size, .stopped: break
        }
        self.phase = .stopped
        self.body = nil
        self.pending = nil
    }

    private func fail(_ error: KafkaNIOError, context: ChannelHandlerContext, close: Bool) {
        self.stop()
        context.fireErrorCaught(error)
        if close { context.close(promise: nil) }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = Self.unwrapInboundIn(data)
        self.lastActivity = context.eventLoop.now
        self.process(&input, context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.readOutstanding = false
        self.firedOutOfBand = false
        context.fireChannelReadComplete()
    }

    private func process(_ input: inout ByteBuffer, context: ChannelHandlerContext) {
        while true {
            switch self.phase {
            case .stopped:
                return
            case .waitingForMemory:
                if input.readableBytes > 0 {
                    if self.pending == nil {
                        self.pending = input
                    } else {
                        self.pending!.writeBuffer(&input)
                    }
                }
                return
            case .body(let size, let reservation):
                let take = min(size - self.body!.readableBytes, input.readableBytes)
                var chunk = input.readSlice(length: take)!
                self.body!.writeBuffer(&chunk)
                guard self.body!.readableBytes == size else { return }
                let frame = KafkaRequestFrame(bytes: self.body!, reservation: reservation)
                self.body = nil
                self.endFrame()
                self.fire(frame, context: context)
            case .size:
                guard let size = self.readSize(&input) else { return }
                guard size >= 0 else {
                    return self.fail(.negativeFrameSize(size), context: context, close: false)
                }
                guard size <= self.framing.maxFrameSize else {
                    return self.fail(
                        .frameTooLarge(declared: size, limit: self.framing.maxFrameSize),
                        context: context,
                        close: false
                    )
                }
                let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
                let eventLoop = context.eventLoop
                let outcome = self.framing.memoryPool.reserve(size) { reservation in
                    eventLoop.execute { loopBound.value.granted(reservation) }
                }
                switch outcome {
                case .reserved(let reservation):
                    self.startFrame(size: size, reservation: reservation, input: &input, context: context)
                case .waiting(let waiterID):
                    self.phase = .waitingForMemory(size: size, waiterID: waiterID)
                    self.pending = input.readableBytes > 0 ? input : nil
                    input.moveReaderIndex(to: input.writerIndex)
                    return
                case .tooLarge:
                    return self.fail(
                        .frameExceedsMemoryPool(declared: size, pool: self.framing.memoryPool.capacity ?? 0),
                        context: context,
                        close: false
                    )
                }
            }
        }
    }

    /// The frame size, once its 4 bytes are in (they may come in several reads).
    private func readSize(_ input: inout ByteBuffer) -> Int? {
        if self.partialSizeBytes == 0, let size = input.readInteger(as: Int32.self) { return Int(size) }
        while self.partialSizeBytes < 4, let byte = input.readInteger(as: UInt8.self) {
            self.partialSize = self.partialSize << 8 | UInt32(byte)
            self.partialSizeBytes += 1
        }
        guard self.partialSizeBytes == 4 else { return nil }
        defer { (self.partialSize, self.partialSizeBytes) = (0, 0) }
        return Int(Int32(bitPattern: self.partialSize))
    }

    /// The memory for a frame is reserved: fires it at once if `input` holds it whole, else starts a buffer of its
    /// size and the read deadline.
    private func startFrame(
        size: Int,
        reservation: RequestMemoryReservation,
        input: inout ByteBuffer,
        context: ChannelHandlerContext
    ) {
        if input.readableBytes >= size {
            self.phase = .size
            self.fire(
                KafkaRequestFrame(bytes: input.readSlice(length: size)!, reservation: reservation),
                context: context
            )
            return
        }
        self.phase = .body(size: size, reservation: reservation)
        self.body = context.channel.allocator.buffer(capacity: size)
        self.frameNumber &+= 1
        self.scheduleDeadline(context: context)
    }

    private func endFrame() {
        self.phase = .size
        self.deadline?.cancel()
        self.deadline = nil
        self.deadlineDeferred = false
    }

    private func fire(_ frame: KafkaRequestFrame, context: ChannelHandlerContext) {
        self.firedOutOfBand = true
        context.fireChannelRead(Self.wrapInboundOut(frame))
    }

    /// The pool granted the bytes of the frame this connection waits for (on the channel's event loop).
    private func granted(_ reservation: RequestMemoryReservation) {
        guard let context = self.context, case .waitingForMemory(let size, _) = self.phase else {
            reservation.release()
            return
        }
        var input = self.pending ?? ByteBuffer()
        self.pending = nil
        self.firedOutOfBand = false
        self.startFrame(size: size, reservation: reservation, input: &input, context: context)
        self.process(&input, context: context)
        // Frames fired outside a read cycle are delivered to the connection's task only with a read completion.
        if self.firedOutOfBand {
            self.firedOutOfBand = false
            context.fireChannelReadComplete()
        }
        switch self.phase {
        case .size, .body: if self.readHeld { self.issueRead(context: context) }
        case .waitingForMemory, .stopped: break
        }
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        if case .waitingForMemory = self.phase {
            self.readHeld = true
            return
        }
        self.issueRead(context: context)
    }

    private func issueRead(context: ChannelHandlerContext) {
        self.readHeld = false
        self.readOutstanding = true
        if self.deadlineDeferred {
            self.deadlineDeferred = false
            self.scheduleDeadline(context: context)
        }
        context.read()
    }

    func flush(context: ChannelHandlerContext) {
        self.lastActivity = context.eventLoop.now
        context.flush()
    }

    // MARK: Timers

    private func scheduleDeadline(context: ChannelHandlerContext) {
        guard let timeout = self.framing.readTimeout else { return }
        self.deadline?.cancel()
        let number = self.frameNumber
        self.deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            self.deadlinePassed(frame: number)
        }
    }

    private func deadlinePassed(frame number: UInt64) {
        guard let context = self.context, number == self.frameNumber, case .body(let size, _) = self.phase else {
            return
        }
        self.deadline = nil
        guard self.readOutstanding else {
            // The broker holds reads back (requests queued ahead of this one): not the peer's delay.
            self.deadlineDeferred = true
            return
        }
        let timeoutMs = self.framing.readTimeout.map { $0.nanoseconds / 1_000_000 } ?? 0
        let received = self.body?.readableBytes ?? 0
        self.fail(
            .requestReadTimeout(declared: size, received: received, timeoutMs: timeoutMs),
            context: context,
            close: true
        )
    }

    private func scheduleIdleCheck(in delay: TimeAmount?) {
        guard let delay, let context = self.context else { return }
        self.idleCheck = context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            self.checkIdle()
        }
    }

    private func checkIdle() {
        guard let context = self.context, let idleTimeout = self.framing.idleTimeout else { return }
        switch self.phase {
        case .stopped:
            return
        case .waitingForMemory:
            // Not read because of the broker's memory, not the peer's silence.
            self.scheduleIdleCheck(in: idleTimeout)
            return
        case .size, .body:
            break
        }
        let idleFor = context.eventLoop.now - self.lastActivity
        if idleFor >= idleTimeout {
            self.fail(.idleTimeout(ms: idleTimeout.nanoseconds / 1_000_000), context: context, close: true)
        } else {
            self.scheduleIdleCheck(in: idleTimeout - idleFor)
        }
    }
}
