import NIOCore

/// Splits a byte stream into Kafka frames: a 4-byte big-endian size, then that many bytes (request or response
/// header and body). Emits each frame's contents without the size, as a slice of the received bytes. Clients read
/// responses with it; the broker reads requests with `KafkaRequestFrameReader`, which also bounds their memory.
///
/// A declared size below 0 or above `maxFrameSize` throws as soon as the
/// four size bytes are in, before any of the frame is buffered, so a hostile 2 GB prefix costs nothing; NIO then
/// fires the error and drops further input, and the connection's owner logs it and closes the socket. A connection
/// that ends in the middle of a frame throws `truncatedFrame` so that is logged too.
///
/// A value owned by one `ByteToMessageHandler`, used on its channel's event loop only.
public struct KafkaFrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    /// The largest frame accepted, in bytes, not counting the 4-byte size itself.
    public let maxFrameSize: Int

    /// - Parameter maxFrameSize: the largest frame accepted; a broker passes `socket.request.max.bytes`.
    public init(maxFrameSize: Int) {
        precondition(maxFrameSize >= 0, "maxFrameSize must not be negative")
        self.maxFrameSize = maxFrameSize
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        guard size >= 0 else { throw KafkaNIOError.negativeFrameSize(Int(size)) }
        guard Int(size) <= self.maxFrameSize else {
            throw KafkaNIOError.frameTooLarge(declared: Int(size), limit: self.maxFrameSize)
        }
        guard buffer.readableBytes >= 4 + Int(size) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        return buffer.readSlice(length: Int(size))
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        if let frame = try self.decode(buffer: &buffer) { return frame }
        if seenEOF, buffer.readableBytes > 0 {
            let buffered = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: buffered)
            throw KafkaNIOError.truncatedFrame(bufferedBytes: buffered)
        }
        return nil
    }
}
