import KafkaNIO
import NIOCore
import Testing

@Suite struct KafkaFrameDecoderTests {
    /// Frames of 0, 1 and 300 bytes, back to back.
    static func stream() -> (bytes: ByteBuffer, frames: [[UInt8]]) {
        let frames: [[UInt8]] = [[], [7], (0..<300).map { UInt8(truncatingIfNeeded: $0) }]
        var bytes = ByteBuffer()
        for frame in frames {
            bytes.writeInteger(Int32(frame.count))
            bytes.writeBytes(frame)
        }
        return (bytes, frames)
    }

    /// Feeds `bytes` to a decoder in chunks of `chunkSize`, as a socket might deliver them.
    static func decodeAll(_ bytes: ByteBuffer, chunkSize: Int, maxFrameSize: Int = 1000) throws -> [[UInt8]] {
        var decoder = KafkaFrameDecoder(maxFrameSize: maxFrameSize)
        var buffered = ByteBuffer()
        var remaining = bytes
        var frames: [[UInt8]] = []
        while let chunk = remaining.readSlice(length: min(chunkSize, remaining.readableBytes)), chunk.readableBytes > 0
        {
            var chunk = chunk
            buffered.writeBuffer(&chunk)
            while let frame = try decoder.decode(buffer: &buffered) { frames.append(Array(frame.readableBytesView)) }
        }
        while let frame = try decoder.decodeLast(buffer: &buffered, seenEOF: true) {
            frames.append(Array(frame.readableBytesView))
        }
        return frames
    }

    @Test(arguments: [1, 2, 3, 4, 5, 7, 64, 1000])
    func framesSurviveEverySplit(chunkSize: Int) throws {
        let (bytes, frames) = Self.stream()
        #expect(try Self.decodeAll(bytes, chunkSize: chunkSize) == frames)
    }

    @Test func aFrameOfExactlyTheLimitIsAccepted() throws {
        var bytes = ByteBuffer()
        bytes.writeInteger(Int32(10))
        bytes.writeRepeatingByte(1, count: 10)
        #expect(try Self.decodeAll(bytes, chunkSize: 3, maxFrameSize: 10) == [[UInt8](repeating: 1, count: 10)])
    }

    @Test(arguments: [Int32(11), Int32.max, Int32(1 << 30)])
    func anOversizedFrameFailsAsSoonAsItsSizeIsIn(size: Int32) throws {
        var decoder = KafkaFrameDecoder(maxFrameSize: 10)
        var buffer = ByteBuffer()
        buffer.writeInteger(size)
        #expect(throws: KafkaNIOError.frameTooLarge(declared: Int(size), limit: 10)) {
            try decoder.decode(buffer: &buffer)
        }
    }

    @Test(arguments: [Int32(-1), Int32.min])
    func aNegativeSizeFails(size: Int32) throws {
        var decoder = KafkaFrameDecoder(maxFrameSize: 10)
        var buffer = ByteBuffer()
        buffer.writeInteger(size)
        #expect(throws: KafkaNIOError.negativeFrameSize(Int(size))) { try decoder.decode(buffer: &buffer) }
    }

    @Test func fewerThanFourBytesWaitForMore() throws {
        var decoder = KafkaFrameDecoder(maxFrameSize: 10)
        var buffer = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF])
        #expect(try decoder.decode(buffer: &buffer) == nil)
    }

    @Test func endOfStreamInsideAFrameIsATruncatedFrame() throws {
        var decoder = KafkaFrameDecoder(maxFrameSize: 100)
        var buffer = ByteBuffer()
        buffer.writeInteger(Int32(20))
        buffer.writeBytes([1, 2, 3])
        #expect(try decoder.decode(buffer: &buffer) == nil)
        #expect(throws: KafkaNIOError.truncatedFrame(bufferedBytes: 7)) {
            try decoder.decodeLast(buffer: &buffer, seenEOF: true)
        }
    }

    @Test func endOfStreamBetweenFramesIsClean() throws {
        var decoder = KafkaFrameDecoder(maxFrameSize: 100)
        var buffer = ByteBuffer()
        #expect(try decoder.decodeLast(buffer: &buffer, seenEOF: true) == nil)
    }
}
