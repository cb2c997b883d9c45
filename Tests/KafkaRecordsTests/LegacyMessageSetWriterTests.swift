import Foundation
import KafkaRecords
import NIOCore
import Testing

/// One record as a reader of the converted message set should see it.
private struct Expected: Equatable {
    var offset: Int64
    var timestamp: Int64?
    var key: [UInt8]?
    var value: [UInt8]?
}

/// One v2 record to write: offset delta, timestamp, key, value, headers.
private struct Source {
    var delta: Int32
    var timestamp: Int64
    var key: [UInt8]?
    var value: [UInt8]?
    var headers: [RecordHeader] = []
}

/// The records of the tests: keys, a null key, a null value, an empty value, headers (which must be dropped).
private let sources: [Source] = [
    Source(delta: 0, timestamp: 1_700_000_000_000, key: Array("k0".utf8), value: Array("value-0".utf8)),
    Source(
        delta: 1,
        timestamp: 1_700_000_000_050,
        key: nil,
        value: Array("value-1 without a key".utf8),
        headers: [RecordHeader(key: "trace", value: ByteBuffer(string: "abc"))]
    ),
    Source(delta: 2, timestamp: 1_700_000_000_020, key: Array("k2".utf8), value: nil),
    Source(
        delta: 3,
        timestamp: 1_700_000_000_030,
        key: Array("k3".utf8),
        value: [],
        headers: [RecordHeader(key: "h", value: nil), RecordHeader(key: "i", value: ByteBuffer(string: "j"))]
    ),
    Source(delta: 4, timestamp: 1_700_000_000_040, key: Array("k4".utf8), value: Array(repeating: 0x61, count: 3000)),
]

private func batch(
    _ records: [Source],
    baseOffset: Int64,
    codec: CompressionCodec,
    timestampType: TimestampType = .createTime,
    logAppendTime: Int64? = nil,
    isControl: Bool = false,
    lastOffsetDelta: Int32? = nil
) throws -> ByteBuffer {
    var builder = RecordBatchBuilder(codec: codec, isControl: isControl, timestampType: timestampType)
    for record in records {
        let key = record.key.map { ByteBuffer(bytes: $0) }
        let value = record.value.map { ByteBuffer(bytes: $0) }
        key.withBytes { key in
            value.withBytes { value in
                builder.append(
                    offsetDelta: record.delta,
                    timestamp: record.timestamp,
                    key: key,
                    value: value,
                    headers: record.headers
                )
            }
        }
    }
    builder.lastOffsetDeltaOverride = lastOffsetDelta
    builder.maxTimestampOverride = logAppendTime
    return try builder.build(baseOffset: baseOffset, compression: CompressionContext()).buffer
}

extension Optional where Wrapped == ByteBuffer {
    fileprivate func withBytes<R>(_ body: (UnsafeRawBufferPointer?) -> R) -> R {
        guard let buffer = self else { return body(nil) }
        return buffer.withUnsafeReadableBytes { body($0) }
    }
}

private func concatenated(_ parts: [ByteBuffer]) -> ByteBuffer {
    var all = ByteBuffer()
    for var part in parts { all.writeBuffer(&part) }
    return all
}

private func messages(_ conversion: LegacyDownConversion) throws -> ByteBuffer {
    guard case .messages(let messages) = conversion else {
        Issue.record("expected messages, got \(conversion)")
        throw ToolFailure(command: "down-conversion")
    }
    return messages
}

/// The top-level messages of a legacy set as (offset, size with the 12-byte log overhead); fails on a partial one.
private func topLevel(_ set: ByteBuffer) -> [(offset: Int64, size: Int)] {
    var buffer = set
    var result: [(Int64, Int)] = []
    while buffer.readableBytes > 0 {
        guard let offset = buffer.readInteger(as: Int64.self), let size = buffer.readInteger(as: Int32.self),
            buffer.readSlice(length: Int(size)) != nil
        else {
            Issue.record("partial message after \(result.count) whole ones")
            break
        }
        result.append((offset, Int(size) + 12))
    }
    return result
}

/// The offsets written inside each compressed wrapper of `set`, read back by decompressing its value.
private func innerOffsets(_ set: ByteBuffer, magic: Int8, codec: CompressionCodec) throws -> [[Int64]] {
    var result: [[Int64]] = []
    var position = set.readerIndex
    while position < set.writerIndex {
        let size = Int(set.getInteger(at: position + 8, as: Int32.self)!)
        let keyAt = position + 12 + (magic == 0 ? 6 : 14)
        let keyLength = Int(set.getInteger(at: keyAt, as: Int32.self)!)
        let valueAt = keyAt + 4 + max(keyLength, 0)
        let valueLength = Int(set.getInteger(at: valueAt, as: Int32.self)!)
        var value = ByteBuffer(bytes: set.getBytes(at: valueAt + 4, length: valueLength)!)
        if codec == .lz4, magic == 0 {
            // The standard frame descriptor checksum, so that liblz4 accepts the frame: for our frames' descriptor
            // (60 40: independent 64 KiB blocks, no content size) it is 0x82.
            value.setInteger(UInt8(0x82), at: 6)
        }
        let inner = try decompress(value, codec, limit: 1 << 20)
        var offsets: [Int64] = []
        var innerPosition = inner.readerIndex
        while innerPosition < inner.writerIndex {
            offsets.append(inner.getInteger(at: innerPosition, as: Int64.self)!)
            innerPosition += 12 + Int(inner.getInteger(at: innerPosition + 8, as: Int32.self)!)
        }
        result.append(offsets)
        position += 12 + size
    }
    return result
}

/// What kafka-python 3.0.12's legacy reader makes of a converted message set (Tests/CrossCheck/legacy_message_sets.py).
private struct KafkaPythonReading {
    struct Batch {
        var magic: Int
        var offset: Int64
        var compressionType: Int
        var timestampType: Int?
        var timestamp: Int64?
        var crcOK: Bool
        var lz4HeaderChecksum: String?
        var records: [Record]
    }

    struct Record {
        var offset: Int64
        var timestamp: Int64?
        var timestampType: Int?
        var key: [UInt8]?
        var value: [UInt8]?
        var headerCount: Int
        var crcOK: Bool
    }

    var batches: [Batch]
    var remaining: Int

    var records: [Record] { self.batches.flatMap(\.records) }

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("CrossCheck/legacy_message_sets.py")

    init(_ set: ByteBuffer) throws {
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("legacy-\(UUID().uuidString).bin")
        defer { try? FileManager.default.removeItem(at: input) }
        try Data(set.readableBytesView).write(to: input)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.script.path, input.path]
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "kafka-python could not read the set: \(errorText)")
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        func bytes(_ value: Any?) -> [UInt8]? {
            guard let hex = value as? String else { return nil }
            var result: [UInt8] = []
            var index = hex.startIndex
            while index < hex.endIndex {
                let next = hex.index(index, offsetBy: 2)
                result.append(UInt8(hex[index..<next], radix: 16)!)
                index = next
            }
            return result
        }
        func int64(_ value: Any?) -> Int64? { (value as? NSNumber)?.int64Value }
        self.remaining = (object["remaining"] as? Int) ?? -1
        self.batches = try (object["batches"] as? [[String: Any]] ?? []).map { batch in
            Batch(
                magic: try #require(batch["magic"] as? Int),
                offset: try #require(int64(batch["offset"])),
                compressionType: try #require(batch["compression_type"] as? Int),
                timestampType: batch["timestamp_type"] as? Int,
                timestamp: int64(batch["timestamp"]),
                crcOK: batch["crc_ok"] as? Bool ?? false,
                lz4HeaderChecksum: batch["lz4_header_checksum"] as? String,
                records: try (batch["records"] as? [[String: Any]] ?? []).map { record in
                    Record(
                        offset: try #require(int64(record["offset"])),
                        timestamp: int64(record["timestamp"]),
                        timestampType: record["timestamp_type"] as? Int,
                        key: bytes(record["key"]),
                        value: bytes(record["value"]),
                        headerCount: (record["headers"] as? [Any])?.count ?? -1,
                        crcOK: record["crc_ok"] as? Bool ?? false
                    )
                }
            )
        }
    }
}

@Suite("Legacy message set writer")
struct LegacyMessageSetWriterTests {
    static let codecs: [CompressionCodec] = [.none, .gzip, .snappy, .lz4]

    /// Two batches, the second compacted (offset gaps, its last offset past its last record); fetched from offset
    /// 102, in the middle of the first.
    @Test(arguments: Self.codecs, [Int8(0), 1])
    func kafkaPythonReadsWhatWasStored(_ codec: CompressionCodec, _ magic: Int8) throws {
        let first = try batch(sources, baseOffset: 100, codec: codec)
        let compacted = [sources[0], sources[2], sources[4]].enumerated().map { index, source in
            var source = source
            source.delta = [0, 2, 3][index]
            return source
        }
        let second = try batch(compacted, baseOffset: 105, codec: codec, lastOffsetDelta: 4)
        var writer = LegacyMessageSetWriter(magic: magic)
        let set = try messages(writer.downConvert(concatenated([first, second]), fetchOffset: 102))
        let reading = try KafkaPythonReading(set)

        // Uncompressed: one message per record, none below the fetch offset. Compressed: whole batches, as Kafka.
        var expected: [Expected] = []
        for (base, records) in [(Int64(100), sources), (105, compacted)] {
            for record in records where codec != .none || base + Int64(record.delta) >= 102 {
                expected.append(
                    Expected(
                        offset: base + Int64(record.delta),
                        timestamp: magic == 1 ? record.timestamp : nil,
                        key: record.key,
                        value: record.value
                    )
                )
            }
        }
        let read = reading.records.map {
            Expected(offset: $0.offset, timestamp: $0.timestamp, key: $0.key, value: $0.value)
        }
        #expect(read == expected)
        #expect(reading.remaining == 0)
        #expect(reading.records.allSatisfy { $0.headerCount == 0 && $0.crcOK })
        #expect(reading.batches.allSatisfy { $0.crcOK && $0.magic == Int(magic) })
        #expect(reading.batches.allSatisfy { $0.compressionType == Int(codec.rawValue) })
        if codec == .none {
            #expect(reading.batches.count == expected.count)
        } else {
            // The wrapper carries its last record's absolute offset (108, not the batch's last offset 109) and,
            // with magic 1, the largest timestamp.
            #expect(reading.batches.map(\.offset) == [104, 108])
            if magic == 1 {
                #expect(reading.batches.map(\.timestamp) == [1_700_000_000_050, 1_700_000_000_040])
                #expect(reading.batches.allSatisfy { $0.timestampType == 0 })
            }
        }
        if codec == .lz4 {
            let checksums = reading.batches.map(\.lz4HeaderChecksum)
            #expect(checksums == Array(repeating: magic == 0 ? "magic0" : "correct", count: 2))
        }
        // Inner offsets: relative to the wrapper's first record with magic 1, absolute with magic 0.
        if codec != .none {
            let inner = try innerOffsets(set, magic: magic, codec: codec)
            #expect(inner == (magic == 1 ? [[0, 1, 2, 3, 4], [0, 2, 3]] : [Array(100...104), [105, 107, 108]]))
        }
    }

    @Test(arguments: [CompressionCodec.none, .gzip])
    func logAppendTimeStampsEveryMessage(_ codec: CompressionCodec) throws {
        let stored = try batch(
            sources,
            baseOffset: 0,
            codec: codec,
            timestampType: .logAppendTime,
            logAppendTime: 1_800_000_000_000
        )
        var writer = LegacyMessageSetWriter(magic: 1)
        let reading = try KafkaPythonReading(try messages(writer.downConvert(stored, fetchOffset: 0)))
        #expect(reading.records.count == sources.count)
        #expect(reading.records.allSatisfy { $0.timestamp == 1_800_000_000_000 && $0.timestampType == 1 })
        #expect(reading.batches.allSatisfy { $0.timestamp == 1_800_000_000_000 && $0.timestampType == 1 })
    }

    @Test func magicZeroHasNoTimestamps() throws {
        var writer = LegacyMessageSetWriter(magic: 0)
        let set = try messages(writer.downConvert(try batch(sources, baseOffset: 7, codec: .none), fetchOffset: 0))
        let reading = try KafkaPythonReading(set)
        #expect(reading.records.map(\.offset) == Array(7...11))
        #expect(reading.records.allSatisfy { $0.timestamp == nil && $0.timestampType == nil })
        // 12 bytes of offset and size, 14 of message header: 26 + key + value each.
        #expect(topLevel(set).map(\.size) == sources.map { 26 + ($0.key?.count ?? 0) + ($0.value?.count ?? 0) })
    }

    @Test func controlBatchesAreSkipped() throws {
        let marker = try batch(
            [Source(delta: 0, timestamp: 1, key: [0, 0, 0, 1], value: [0, 0, 0, 0, 0, 0])],
            baseOffset: 5,
            codec: .none,
            isControl: true
        )
        let data = try batch(Array(sources.prefix(2)), baseOffset: 6, codec: .none)
        var writer = LegacyMessageSetWriter(magic: 1)
        let set = try messages(writer.downConvert(concatenated([marker, data]), fetchOffset: 5))
        #expect(try KafkaPythonReading(set).records.map(\.offset) == [6, 7])
        let onlyMarker = try messages(writer.downConvert(marker, fetchOffset: 5))
        #expect(onlyMarker.readableBytes == 0)
    }

    @Test func zstdIsRefusedFirstAndEndsTheSetLater() throws {
        let zstd = try batch(sources, baseOffset: 10, codec: .zstd)
        let plain = try batch(sources, baseOffset: 0, codec: .gzip)
        var writer = LegacyMessageSetWriter(magic: 1)
        guard case .unsupportedCompression(.zstd) = try writer.downConvert(zstd, fetchOffset: 10) else {
            Issue.record("a zstd batch first in line must be refused")
            return
        }
        let set = try messages(writer.downConvert(concatenated([plain, zstd, plain]), fetchOffset: 0))
        #expect(try KafkaPythonReading(set).records.map(\.offset) == Array(0...4))
    }

    /// Kafka's rule: the first converted batch always goes whole, however large; after it only what fits, and never
    /// part of a message.
    @Test(arguments: [CompressionCodec.none, .snappy])
    func sizeLimitKeepsTheFirstBatchWholeAndNeverCutsAMessage(_ codec: CompressionCodec) throws {
        let batches = try (0..<3).map { try batch(sources, baseOffset: Int64($0 * 5), codec: codec) }
        var writer = LegacyMessageSetWriter(magic: 1)
        let all = try messages(writer.downConvert(concatenated(batches), fetchOffset: 0))
        let sizes = topLevel(all).map(\.size)

        let tiny = try messages(writer.downConvert(concatenated(batches), fetchOffset: 0, maxBytes: 1))
        let firstBatchSize = codec == .none ? sizes.prefix(5).reduce(0, +) : sizes[0]
        #expect(tiny.readableBytes == firstBatchSize)

        // Room for the first batch and a little more: whole messages only.
        let limit = firstBatchSize + (codec == .none ? sizes[5] + sizes[6] / 2 : sizes[1] / 2)
        let bounded = try messages(writer.downConvert(concatenated(batches), fetchOffset: 0, maxBytes: limit))
        #expect(bounded.readableBytes <= limit)
        #expect(bounded.readableBytes == firstBatchSize + (codec == .none ? sizes[5] : 0))
        let reading = try KafkaPythonReading(bounded)
        #expect(reading.remaining == 0)
        #expect(reading.records.map(\.offset) == Array(0..<(codec == .none ? 6 : 5)))
    }

    @Test func trailingPartialBatchIsIgnored() throws {
        let whole = try batch(sources, baseOffset: 0, codec: .none)
        var cut = concatenated([whole, whole])
        cut.moveWriterIndex(to: cut.writerIndex - 10)
        var writer = LegacyMessageSetWriter(magic: 0)
        #expect(try KafkaPythonReading(try messages(writer.downConvert(cut, fetchOffset: 0))).records.count == 5)
    }
}
