import KafkaRecords
import KafkaWire
import NIOCore
import Testing

/// Zig-zag varint, written independently of the library's encoder.
func zigZagVarint(_ value: Int64) -> [UInt8] {
    var raw = UInt64(bitPattern: (value << 1) ^ (value >> 63))
    var bytes: [UInt8] = []
    while raw >= 0x80 {
        bytes.append(UInt8(raw & 0x7F) | 0x80)
        raw >>= 7
    }
    bytes.append(UInt8(raw))
    return bytes
}

/// One record's bytes, by hand: length, attributes, timestamp delta, offset delta, key, value, no headers.
func handRecord(offsetDelta: Int64, timestampDelta: Int64 = 0, key: [UInt8]?, value: [UInt8]?) -> [UInt8] {
    var body: [UInt8] = [0] + zigZagVarint(timestampDelta) + zigZagVarint(offsetDelta)
    for field in [key, value] {
        if let field {
            body += zigZagVarint(Int64(field.count)) + field
        } else {
            body += zigZagVarint(-1)
        }
    }
    body += zigZagVarint(0)
    return zigZagVarint(Int64(body.count)) + body
}

/// A batch around hand-made records area bytes, with a correct CRC.
func handBatch(
    records: [UInt8],
    count: Int32,
    lastOffsetDelta: Int32? = nil,
    attributes: Int16 = 0,
    baseTimestamp: Int64 = 1_700_000_000_000
) throws -> RecordBatch {
    var buffer = ByteBuffer()
    buffer.writeInteger(Int64(0))
    buffer.writeInteger(Int32(61 - 12 + records.count))
    buffer.writeInteger(Int32(-1))  // partitionLeaderEpoch: producers send -1
    buffer.writeInteger(Int8(2))
    buffer.writeInteger(UInt32(0))
    buffer.writeInteger(attributes)
    buffer.writeInteger(lastOffsetDelta ?? (count - 1))
    buffer.writeInteger(baseTimestamp)
    buffer.writeInteger(baseTimestamp)
    buffer.writeInteger(Int64(-1))
    buffer.writeInteger(Int16(-1))
    buffer.writeInteger(Int32(-1))
    buffer.writeInteger(count)
    buffer.writeBytes(records)
    var batch = try RecordBatch(buffer)
    batch.recomputeCRC()
    return batch
}

func validate(_ batch: RecordBatch, _ options: RecordBatchValidationOptions = .init()) throws(RecordBatchError)
    -> RecordBatchSummary
{
    var validator = RecordBatchValidator(options: options)
    return try validator.validate(batch)
}

/// The error `body` throws, or nil.
func caught(_ body: () throws -> Void) -> RecordBatchError? {
    do {
        try body()
        return nil
    } catch let error as RecordBatchError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

@Suite("Record batches")
struct RecordBatchTests {
    static let codecs: [CompressionCodec] = [.none, .gzip, .snappy, .lz4, .zstd]

    func makeBuilder(_ codec: CompressionCodec, count: Int = 50) -> RecordBatchBuilder {
        var builder = RecordBatchBuilder(codec: codec, producerID: 42, producerEpoch: 3, baseSequence: 7)
        for index in 0..<count {
            let key: ByteBuffer? = index % 5 == 4 ? nil : ByteBuffer(string: "key-\(index)")
            let value: ByteBuffer? = index % 7 == 3 ? nil : ByteBuffer(bytes: sampleBytes(100, seed: UInt64(index)))
            let headers: [RecordHeader] =
                index % 3 == 0
                ? [RecordHeader(key: "trace", value: ByteBuffer(string: "t\(index)")), .init(key: "empty", value: nil)]
                : []
            builder.append(
                timestamp: 1_700_000_000_000 + Int64(index % 11) * 1000,
                key: key,
                value: value,
                headers: headers
            )
        }
        return builder
    }

    @Test(arguments: Self.codecs)
    func builderValidatorIteratorRoundTrip(_ codec: CompressionCodec) throws {
        let builder = self.makeBuilder(codec)
        let context = CompressionContext()
        let batch = try builder.build(baseOffset: 1000, partitionLeaderEpoch: 5, compression: context)
        #expect(batch.magic == 2)
        #expect(batch.baseOffset == 1000)
        #expect(batch.partitionLeaderEpoch == 5)
        #expect(batch.recordCount == 50)
        #expect(batch.lastOffsetDelta == 49)
        #expect(batch.lastOffset == 1049)
        #expect(batch.attributes.compressionCodec == codec)
        #expect(batch.attributes.timestampType == .createTime)
        #expect(!batch.attributes.isControl && !batch.attributes.isTransactional)
        #expect(batch.producerID == 42 && batch.producerEpoch == 3 && batch.baseSequence == 7)
        #expect(batch.baseTimestamp == 1_700_000_000_000)
        #expect(batch.maxTimestamp == 1_700_000_010_000)
        #expect(batch.isCRCValid)
        #expect(Int(batch.batchLength) + 12 == batch.sizeInBytes)

        let summary = try validate(batch)
        #expect(summary.recordCount == 50)
        #expect(summary.maxTimestamp == 1_700_000_010_000)
        #expect(summary.offsetDeltaOfMaxTimestamp == 10)

        var iterator = try batch.makeRecordIterator(compression: context, maxDecompressedBytes: 1 << 20)
        let records = try iterator.collect()
        #expect(records.count == 50)
        for (index, record) in records.enumerated() {
            #expect(record.offset == 1000 + Int64(index))
            #expect(record.timestamp == 1_700_000_000_000 + Int64(index % 11) * 1000)
            #expect(record.key.map { String(buffer: $0) } == (index % 5 == 4 ? nil : "key-\(index)"))
            let value = record.value.map { Array($0.readableBytesView) }
            #expect(value == (index % 7 == 3 ? nil : sampleBytes(100, seed: UInt64(index))))
            if index % 3 == 0 {
                #expect(
                    record.headers == [
                        .init(key: "trace", value: ByteBuffer(string: "t\(index)")), .init(key: "empty", value: nil),
                    ]
                )
            } else {
                #expect(record.headers.isEmpty)
            }
        }
    }

    @Test func uncompressedEncodingMatchesHandEncoding() throws {
        var builder = RecordBatchBuilder()
        builder.append(timestamp: 1_700_000_000_000, key: ByteBuffer(string: "k"), value: ByteBuffer(string: "v1"))
        builder.append(timestamp: 1_699_999_999_000, key: nil, value: ByteBuffer(string: "value"))
        let built = try builder.build()
        let records =
            handRecord(offsetDelta: 0, key: Array("k".utf8), value: Array("v1".utf8))
            + handRecord(offsetDelta: 1, timestampDelta: -1000, key: nil, value: Array("value".utf8))
        let expected = try handBatch(records: records, count: 2)
        #expect(Array(built.buffer.readableBytesView) == Array(expected.buffer.readableBytesView))
    }

    @Test func everyCorruptedByteIsCaughtOrIgnoredAsKafkaDoes() throws {
        var builder = RecordBatchBuilder()
        builder.append(timestamp: 1000, key: ByteBuffer(string: "a"), value: ByteBuffer(string: "one"))
        builder.append(
            timestamp: 1001,
            key: nil,
            value: ByteBuffer(string: "two"),
            headers: [.init(key: "h", value: nil)]
        )
        let batch = try builder.build()
        let bytes = Array(batch.buffer.readableBytesView)
        for position in 0..<bytes.count {
            var damaged = bytes
            damaged[position] ^= 0x5A
            let error = caught {
                let view = try RecordBatch(ByteBuffer(bytes: damaged))
                _ = try validate(view)
            }
            switch position {
            case 0..<8, 12..<16:
                // baseOffset and partitionLeaderEpoch are outside the CRC: the broker rewrites them.
                #expect(error == nil, "byte \(position)")
            case 8..<12:
                #expect(error?.kafkaErrorCode == .corruptMessage, "byte \(position): \(String(describing: error))")
            case 16:
                #expect(error == .unsupportedMagic(Int8(bitPattern: bytes[16] ^ 0x5A)))
            default:
                #expect(error?.kafkaErrorCode == .corruptMessage, "byte \(position): \(String(describing: error))")
                #expect(error?.description.contains("CRC") == true)
            }
        }
    }

    @Test func recordCountThatLiesIsRefused() throws {
        let records =
            handRecord(offsetDelta: 0, key: [1], value: [2]) + handRecord(offsetDelta: 1, key: [1], value: [2])
        // Header says 3 (and lastOffsetDelta 2) but 2 records follow.
        #expect(
            caught { _ = try validate(handBatch(records: records, count: 3)) }
                == .recordsWalkedMismatch(declared: 3, walked: 2)
        )
        // Header says 1: the second record is trailing bytes.
        let error = caught { _ = try validate(handBatch(records: records, count: 1)) }
        #expect(error == .trailingBytes(count: records.count / 2, afterRecords: 1))
        #expect(error?.kafkaErrorCode == .invalidRecord)
        // Count and lastOffsetDelta disagree.
        #expect(
            caught { _ = try validate(handBatch(records: records, count: 2, lastOffsetDelta: 5)) }
                == .recordCountMismatch(declared: 2, lastOffsetDelta: 5)
        )
        #expect(caught { _ = try validate(handBatch(records: [], count: 0)) } == .invalidRecordCount(0))
    }

    @Test(arguments: Self.codecs)
    func nonConsecutiveOffsetDeltasAreRefused(_ codec: CompressionCodec) throws {
        let records =
            handRecord(offsetDelta: 0, key: nil, value: [1]) + handRecord(offsetDelta: 2, key: nil, value: [2])
        var area = ByteBuffer()
        try records.withUnsafeBytes { try CompressionContext().compress($0, codec: codec, appendingTo: &area) }
        let batch = try handBatch(records: Array(area.readableBytesView), count: 2, attributes: codec.rawValue)
        let error = caught { _ = try validate(batch) }
        #expect(error == .nonConsecutiveOffsetDelta(index: 1, expected: 1, found: 2))
        #expect(error?.kafkaErrorCode == .invalidRecord)
        // A stored batch may have gaps (the log cleaner leaves them): the iterator reads it, within lastOffsetDelta.
        let gapped = try handBatch(records: Array(area.readableBytesView), count: 2, lastOffsetDelta: 2,
                                   attributes: codec.rawValue)
        var iterator = try gapped.makeRecordIterator(compression: CompressionContext(), maxDecompressedBytes: 1000)
        #expect(try iterator.collect().map(\.offset) == [0, 2])
        // Deltas that do not grow, or pass the last offset delta, are refused.
        let backwards =
            handRecord(offsetDelta: 1, key: nil, value: [1]) + handRecord(offsetDelta: 1, key: nil, value: [2])
        var backwardsArea = ByteBuffer()
        try backwards.withUnsafeBytes { try CompressionContext().compress($0, codec: codec, appendingTo: &backwardsArea) }
        let bad = try handBatch(records: Array(backwardsArea.readableBytesView), count: 2, lastOffsetDelta: 1,
                                attributes: codec.rawValue)
        var badIterator = try bad.makeRecordIterator(compression: CompressionContext(), maxDecompressedBytes: 1000)
        #expect(throws: RecordBatchError.offsetDeltaOutOfOrder(index: 1, previous: 1, found: 1, last: 1)) {
            _ = try badIterator.collect()
        }
        var beyond = try batch.makeRecordIterator(compression: CompressionContext(), maxDecompressedBytes: 1000)
        #expect(throws: RecordBatchError.offsetDeltaOutOfOrder(index: 1, previous: 0, found: 2, last: 1)) {
            _ = try beyond.collect()
        }
    }

    @Test func lengthsPastTheEndAreRefused() throws {
        var record = handRecord(offsetDelta: 0, key: [1, 2, 3], value: [4])
        record[0] = zigZagVarint(Int64(record.count + 10))[0]  // record length past the end of the batch
        var error = caught { _ = try validate(handBatch(records: record, count: 1)) }
        #expect(error?.kafkaErrorCode == .invalidRecord)
        #expect(error?.description.contains("record length") == true)

        var key = handRecord(offsetDelta: 0, key: [1, 2, 3], value: [4])
        key[4] = zigZagVarint(50)[0]  // key length 50 inside a record of a few bytes
        error = caught { _ = try validate(handBatch(records: key, count: 1)) }
        #expect(error?.description.contains("key length 50") == true, "\(String(describing: error))")

        var negative = handRecord(offsetDelta: 0, key: [1, 2, 3], value: [4])
        negative[4] = zigZagVarint(-2)[0]
        error = caught { _ = try validate(handBatch(records: negative, count: 1)) }
        #expect(error?.description.contains("key length -2") == true, "\(String(describing: error))")

        let cut = Array(handRecord(offsetDelta: 0, key: [1], value: [2]).prefix(1)) + [0x80]
        error = caught { _ = try validate(handBatch(records: cut, count: 1)) }
        #expect(error?.kafkaErrorCode == .invalidRecord)
    }

    @Test func controlBatchesAndMissingKeysAreRefusedWhenAsked() throws {
        let records = handRecord(offsetDelta: 0, key: nil, value: [1])
        let control = try handBatch(records: records, count: 1, attributes: 0x20)
        #expect(caught { _ = try validate(control) } == .controlBatchNotAllowed)
        #expect(caught { _ = try validate(control, .init(refuseControlBatches: false)) } == nil)

        let keyless = try handBatch(records: records, count: 1)
        #expect(caught { _ = try validate(keyless, .init(requireKeys: true)) } == .missingKey(index: 0))
        #expect(RecordBatchError.missingKey(index: 0).kafkaErrorCode == .invalidRecord)
        #expect(caught { _ = try validate(keyless) } == nil)
    }

    @Test func unknownCodecAndTimestampsOutOfBounds() throws {
        let records = handRecord(offsetDelta: 0, key: nil, value: [1])
        let unknown = caught { _ = try validate(handBatch(records: records, count: 1, attributes: 5)) }
        #expect(unknown == .unsupportedCompression(5))
        #expect(unknown?.kafkaErrorCode == .unsupportedCompressionType)

        let batch = try handBatch(records: records, count: 1, baseTimestamp: 1_000_000)
        let near = TimestampBounds(now: 1_000_500, maxDifference: 1000)
        #expect(caught { _ = try validate(batch, .init(timestampBounds: near)) } == nil)
        let far = TimestampBounds(now: 5_000_000, maxDifference: 1000)
        let error = caught { _ = try validate(batch, .init(timestampBounds: far)) }
        #expect(error == .timestampOutOfBounds(index: 0, timestamp: 1_000_000, now: 5_000_000))
        #expect(error?.kafkaErrorCode == .invalidTimestamp)
    }

    @Test func idempotentBatchWithoutSequenceIsRefused() throws {
        var builder = RecordBatchBuilder(producerID: 9, producerEpoch: 0, baseSequence: -1)
        builder.append(timestamp: 1, key: nil, value: ByteBuffer(string: "x"))
        #expect(caught { _ = try validate(builder.build()) } == .invalidSequence(producerID: 9, baseSequence: -1))
    }

    @Test func settersRewriteInPlace() throws {
        var builder = RecordBatchBuilder(codec: .lz4)
        builder.append(timestamp: 10, key: nil, value: ByteBuffer(string: "x"))
        var batch = try builder.build()
        let crc = batch.crc
        batch.baseOffset = 123_456
        batch.partitionLeaderEpoch = 9
        #expect(batch.crc == crc && batch.isCRCValid)
        #expect(batch.baseOffset == 123_456 && batch.partitionLeaderEpoch == 9)
        batch.setLogAppendTime(99_999)
        #expect(batch.attributes.timestampType == .logAppendTime)
        #expect(batch.attributes.compressionCodec == .lz4)
        #expect(batch.maxTimestamp == 99_999)
        #expect(batch.crc != crc && batch.isCRCValid)
        #expect(caught { _ = try validate(batch) } == nil)
        var iterator = try batch.makeRecordIterator(compression: CompressionContext(), maxDecompressedBytes: 100)
        #expect(try iterator.next()?.timestamp == 99_999)
    }

    @Test func splitterYieldsWholeBatchesAndStopsAtAPartialOne() throws {
        var all = ByteBuffer()
        var sizes: [Int] = []
        for codec in Self.codecs {
            let batch = try self.makeBuilder(codec, count: 5).build()
            sizes.append(batch.sizeInBytes)
            all.writeImmutableBuffer(batch.buffer)
        }
        let whole = all.readableBytes
        all.writeBytes(all.getBytes(at: 0, length: 30)!)  // a torn tail
        var splitter = RecordBatchSplitter(all)
        var seen: [Int] = []
        while let batch = try splitter.next() {
            seen.append(batch.sizeInBytes)
            _ = try validate(batch)
        }
        #expect(seen == sizes)
        #expect(splitter.wholeBytes == whole)
        #expect(splitter.remainingBytes == 30)

        var tiny = ByteBuffer()
        tiny.writeInteger(Int64(0))
        tiny.writeInteger(Int32(10))
        tiny.writeBytes([UInt8](repeating: 0, count: 10))
        var refused = RecordBatchSplitter(tiny)
        #expect(throws: RecordBatchError.batchTooShort(size: 22)) { _ = try refused.next() }
        var limited = RecordBatchSplitter(all, maxBatchSize: 100)
        #expect(throws: RecordBatchError.batchTooLarge(size: sizes[0], limit: 100)) { _ = try limited.next() }
    }

    @Test func viewRefusesWrongSizes() {
        #expect(throws: RecordBatchError.batchTooShort(size: 10)) {
            _ = try RecordBatch(ByteBuffer(bytes: [UInt8](repeating: 0, count: 10)))
        }
        var buffer = ByteBuffer(bytes: [UInt8](repeating: 0, count: 70))
        buffer.setInteger(Int32(100), at: 8)
        #expect(throws: RecordBatchError.batchLengthMismatch(declared: 112, available: 70)) {
            _ = try RecordBatch(buffer)
        }
    }

    @Test func compressedBatchInflatingPastTheLimitIsRefused() throws {
        var builder = RecordBatchBuilder(codec: .zstd)
        let zeros = ByteBuffer(bytes: [UInt8](repeating: 0, count: 1 << 20))
        for index in 0..<8 { builder.append(timestamp: Int64(index), key: nil, value: zeros) }
        let batch = try builder.build()
        let error = caught { _ = try validate(batch, .init(maxDecompressedBytes: 1 << 20)) }
        #expect(error == .decompressedTooLarge(codec: .zstd, limit: 1 << 20))
        #expect(caught { _ = try validate(batch, .init(maxDecompressedBytes: 16 << 20)) } == nil)
    }
}
