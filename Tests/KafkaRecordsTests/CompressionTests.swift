import Foundation
import KafkaRecords
import KafkaWire
import NIOCore
import Testing

/// Partly compressible bytes: repeated words with random numbers, like log lines.
func sampleBytes(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
    var state = seed
    var result: [UInt8] = []
    result.reserveCapacity(count + 64)
    let words = ["GET", "/api/v1/items", "user=", "status=200", "latency_ms=", "INFO", "host=web-"]
    while result.count < count {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        result += Array(words[Int(state >> 60) % words.count].utf8)
        result += Array(String(state >> 40, radix: 16).utf8)
        result.append(0x20)
    }
    return Array(result.prefix(count))
}

func compress(_ bytes: [UInt8], _ codec: CompressionCodec) throws -> ByteBuffer {
    var output = ByteBuffer()
    try bytes.withUnsafeBytes { try CompressionContext().compress($0, codec: codec, appendingTo: &output) }
    return output
}

func decompress(_ buffer: ByteBuffer, _ codec: CompressionCodec, limit: Int) throws(RecordBatchError) -> ByteBuffer {
    var output = ByteBuffer()
    let context = CompressionContext()
    try buffer.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
        try context.decompress(bytes, codec: codec, maxDecompressedBytes: limit, appendingTo: &output)
    }
    return output
}

/// Runs `command` through /bin/sh with `input` on stdin (PATH lookup included) and returns its stdout.
func runTool(_ command: String, input: [UInt8]) throws -> [UInt8] {
    let directory = FileManager.default.temporaryDirectory
    let inputURL = directory.appendingPathComponent("kafkarecords-\(UUID().uuidString).in")
    let outputURL = directory.appendingPathComponent("kafkarecords-\(UUID().uuidString).out")
    defer {
        try? FileManager.default.removeItem(at: inputURL)
        try? FileManager.default.removeItem(at: outputURL)
    }
    try Data(input).write(to: inputURL)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", "(\(command)) < '\(inputURL.path)' > '\(outputURL.path)'"]
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw ToolFailure(command: command) }
    return [UInt8](try Data(contentsOf: outputURL))
}

struct ToolFailure: Error {
    var command: String
}

func toolExists(_ name: String) -> Bool {
    (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
        FileManager.default.isExecutableFile(atPath: "\($0)/\(name)")
    }
}

@Suite("Compression")
struct CompressionTests {
    static let codecs: [CompressionCodec] = [.none, .gzip, .snappy, .lz4, .zstd]

    @Test(arguments: Self.codecs)
    func roundTrips(_ codec: CompressionCodec) throws {
        for size in [0, 1, 100, 70_000, 1_000_000] {
            let input = sampleBytes(size)
            let compressed = try compress(input, codec)
            let output = try decompress(compressed, codec, limit: size)
            #expect(Array(output.readableBytesView) == input, "\(codec) size \(size)")
        }
    }

    @Test(arguments: Self.codecs)
    func contextIsReusable(_ codec: CompressionCodec) throws {
        let context = CompressionContext()
        for seed in 1...3 {
            let input = sampleBytes(50_000, seed: UInt64(seed))
            var compressed = ByteBuffer()
            input.withUnsafeBytes { try! context.compress($0, codec: codec, appendingTo: &compressed) }
            var output = ByteBuffer()
            try compressed.withUnsafeReadableBytes {
                try context.decompress($0, codec: codec, maxDecompressedBytes: input.count, appendingTo: &output)
            }
            #expect(Array(output.readableBytesView) == input)
        }
    }

    @Test(arguments: [("gzip -c", CompressionCodec.gzip), ("lz4 -c", .lz4), ("zstd -q -c", .zstd)])
    func commandLineToolOutputDecodes(_ command: String, _ codec: CompressionCodec) throws {
        let tool = String(command.split(separator: " ")[0])
        try #require(toolExists(tool), "\(tool) is not on PATH")
        let input = sampleBytes(300_000)
        let compressed = try runTool(command, input: input)
        let output = try decompress(ByteBuffer(bytes: compressed), codec, limit: input.count)
        #expect(Array(output.readableBytesView) == input)
    }

    @Test func xerialSnappyIsWrittenAndRead() throws {
        let input = sampleBytes(100_000)
        let compressed = try compress(input, .snappy)
        // Java's framing: magic, version 1, compatible version 1, then length-prefixed blocks.
        #expect(
            Array(compressed.readableBytesView.prefix(16)) == [
                0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1,
            ]
        )
        #expect(try Array(decompress(compressed, .snappy, limit: input.count).readableBytesView) == input)
    }

    @Test func rawSnappyAsLibrdkafkaWritesDecodes() throws {
        // A single xerial block stripped of its framing is a raw snappy block.
        let input = sampleBytes(20_000)
        var compressed = try compress(input, .snappy)
        compressed.moveReaderIndex(forwardBy: 16 + 4)
        #expect(try Array(decompress(compressed, .snappy, limit: input.count).readableBytesView) == input)

        // A hand-made raw block: length varint 5, one literal of 5 bytes.
        let literal: [UInt8] = [5, (5 - 1) << 2, 0x68, 0x65, 0x6C, 0x6C, 0x6F]
        #expect(try String(buffer: decompress(ByteBuffer(bytes: literal), .snappy, limit: 5)) == "hello")
    }

    /// Inflates `compressed` with a 1 MiB limit and checks it is refused without reserving the whole output.
    func expectRefusedAtLimit(_ compressed: ByteBuffer, _ codec: CompressionCodec) {
        let limit = 1 << 20
        var output = ByteBuffer()
        let context = CompressionContext()
        #expect(throws: RecordBatchError.decompressedTooLarge(codec: codec, limit: limit)) {
            try compressed.withUnsafeReadableBytes { bytes throws(RecordBatchError) in
                try context.decompress(bytes, codec: codec, maxDecompressedBytes: limit, appendingTo: &output)
            }
        }
        #expect(output.capacity <= 2 * limit, "\(codec) reserved \(output.capacity) bytes")
        #expect(RecordBatchError.decompressedTooLarge(codec: codec, limit: limit).kafkaErrorCode == .invalidRecord)
    }

    @Test(arguments: [CompressionCodec.gzip, .snappy, .lz4, .zstd])
    func streamedBombIsRefusedAtTheLimit(_ codec: CompressionCodec) throws {
        // 64 MiB of zeros against a 1 MiB limit: the streaming decoders must stop at the limit.
        let zeros = [UInt8](repeating: 0, count: 64 << 20)
        self.expectRefusedAtLimit(try compress(zeros, codec), codec)
    }

    @Test func zstdFrameWithoutContentSizeIsRefusedAtTheLimit() throws {
        try #require(toolExists("zstd"))
        // The zstd CLI reading a pipe cannot write the content size: the limit must stop the stream itself.
        let compressed = try runTool("head -c 268435456 /dev/zero | zstd -q -c", input: [])
        self.expectRefusedAtLimit(ByteBuffer(bytes: compressed), .zstd)
    }

    @Test func craftedHeadersClaimingTooMuchAreRefused() throws {
        // Raw snappy claiming 1 GiB (varint 0x40000000) with nothing behind it.
        self.expectRefusedAtLimit(ByteBuffer(bytes: [0x80, 0x80, 0x80, 0x80, 0x04, 0x00]), .snappy)
        // A zstd frame whose header states a 1 GiB content size.
        var zstd = try compress(sampleBytes(1000), .zstd)
        zstd.withUnsafeMutableReadableBytes { bytes in
            // Frame header descriptor: content-size field of 4 bytes, single segment.
            bytes[4] = 0b1010_0000
            bytes[5] = 0x00
            bytes[6] = 0x00
            bytes[7] = 0x00
            bytes[8] = 0x40
        }
        self.expectRefusedAtLimit(zstd, .zstd)
    }

    @Test(arguments: [CompressionCodec.gzip, .snappy, .lz4, .zstd])
    func truncatedOrDamagedStreamsAreCorrupt(_ codec: CompressionCodec) throws {
        let input = sampleBytes(50_000)
        let compressed = try compress(input, codec)
        let truncated = compressed.getSlice(at: 0, length: compressed.readableBytes / 2)!
        #expect(throws: RecordBatchError.self) { try decompress(truncated, codec, limit: 1 << 20) }
        do {
            _ = try decompress(truncated, codec, limit: 1 << 20)
        } catch {
            #expect(error.kafkaErrorCode == .corruptMessage, "\(error)")
        }
        #expect(throws: RecordBatchError.self) { try decompress(ByteBuffer(), codec, limit: 1 << 20) }
    }
}
