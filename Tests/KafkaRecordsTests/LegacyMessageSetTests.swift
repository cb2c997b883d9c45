import Foundation
import KafkaWire
import NIOCore
import Testing

@testable import KafkaRecords

/// One message set of `Fixtures/legacy/manifest.json`, written by kafka-python 3.0.12's legacy builder
/// (`make_legacy_message_sets.py`).
struct LegacyFixture: Decodable, Sendable, CustomStringConvertible {
    struct Message: Decodable, Sendable {
        var offset: Int64
        var timestamp: Int64
        var key: String?
        var value: String?
        var crc: UInt32
    }

    var file: String
    var magic: Int8
    var codec: String
    var wrapperCRC: UInt32?
    var records: [Message]

    enum CodingKeys: String, CodingKey {
        case file, magic, codec, records
        case wrapperCRC = "wrapper_crc"
    }

    var description: String { self.file }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/legacy")

    static let all: [LegacyFixture] = {
        struct Manifest: Decodable { var sets: [LegacyFixture] }
        do {
            let data = try Data(contentsOf: directory.appendingPathComponent("manifest.json"))
            return try JSONDecoder().decode(Manifest.self, from: data).sets
        } catch {
            fatalError("cannot read the legacy message-set manifest: \(error)")
        }
    }()

    static func named(_ file: String) -> LegacyFixture { Self.all.first { $0.file == file }! }

    func bytes() throws -> ByteBuffer {
        ByteBuffer(bytes: try Data(contentsOf: Self.directory.appendingPathComponent(self.file)))
    }
}

/// A magic 0/1 message written by hand, for the malformed sets kafka-python will not build.
func legacyMessage(
    offset: Int64,
    magic: Int8,
    attributes: UInt8 = 0,
    timestamp: Int64 = 1_700_000_000_000,
    key: [UInt8]?,
    value: [UInt8]?
) -> ByteBuffer {
    var body = ByteBuffer()
    body.writeInteger(magic)
    body.writeInteger(attributes)
    if magic == 1 { body.writeInteger(timestamp) }
    for field in [key, value] {
        if let field {
            body.writeInteger(Int32(field.count))
            body.writeBytes(field)
        } else {
            body.writeInteger(Int32(-1))
        }
    }
    var message = ByteBuffer()
    message.writeInteger(offset)
    message.writeInteger(Int32(4 + body.readableBytes))
    message.writeInteger(body.withUnsafeReadableBytes { LegacyMessageSet.crc32($0) })
    message.writeImmutableBuffer(body)
    return message
}

/// A wrapper message holding `inner` compressed with `codec`.
func legacyWrapper(offset: Int64, magic: Int8, codec: CompressionCodec, inner: [ByteBuffer]) throws -> ByteBuffer {
    var set = ByteBuffer()
    for message in inner { set.writeImmutableBuffer(message) }
    var compressed = ByteBuffer()
    try set.withUnsafeReadableBytes { try CompressionContext().compress($0, codec: codec, appendingTo: &compressed) }
    return legacyMessage(
        offset: offset,
        magic: magic,
        attributes: UInt8(codec.rawValue),
        timestamp: 0,
        key: nil,
        value: Array(compressed.readableBytesView)
    )
}

/// Rewrites the CRC-32 of the message at `start` after a test changed its bytes.
func resealLegacyMessage(_ set: inout ByteBuffer, at start: Int = 0) {
    let size = Int(set.getInteger(at: set.readerIndex + start + 8, as: Int32.self)!)
    let crc = set.withUnsafeReadableBytes {
        LegacyMessageSet.crc32(UnsafeRawBufferPointer(rebasing: $0[(start + 16)..<(start + 12 + size)]))
    }
    set.setInteger(crc, at: set.readerIndex + start + 12)
}

func convertLegacy(
    _ set: ByteBuffer,
    maxMessageBytes: Int = 1 << 20,
    maxDecompressedBytes: Int = 1 << 20,
    logAppendTimeTopic: Bool = false
) throws(RecordBatchError) -> LegacyMessageSetConversion {
    var converter = LegacyMessageSetConverter(
        options: LegacyMessageSetConversionOptions(
            maxMessageBytes: maxMessageBytes,
            maxDecompressedBytes: maxDecompressedBytes,
            logAppendTimeTopic: logAppendTimeTopic
        )
    )
    return try converter.convert(set)
}

/// The Kafka error code `convertLegacy` answers for `set`, nil if it converts.
func legacyRefusal(
    _ set: ByteBuffer,
    maxMessageBytes: Int = 1 << 20,
    maxDecompressedBytes: Int = 1 << 20,
    logAppendTimeTopic: Bool = false
) -> ErrorCode? {
    do {
        _ = try convertLegacy(
            set,
            maxMessageBytes: maxMessageBytes,
            maxDecompressedBytes: maxDecompressedBytes,
            logAppendTimeTopic: logAppendTimeTopic
        )
        return nil
    } catch {
        return error.kafkaErrorCode
    }
}

@Suite("Legacy message sets (magic 0/1)")
struct LegacyMessageSetTests {
    @Test func everyMagicAndCodecIsAFixture() {
        let kinds = Set(LegacyFixture.all.map { "\($0.magic)-\($0.codec)" })
        #expect(kinds == ["0-none", "0-gzip", "0-snappy", "0-lz4", "1-none", "1-gzip", "1-snappy", "1-lz4"])
    }

    /// The CRCs kafka-python reported are the ones in the bytes, and LogBroker's CRC-32 computes the same.
    @Test(arguments: LegacyFixture.all)
    func fixtureCRCsAreKafkaPythons(fixture: LegacyFixture) throws {
        let bytes = try fixture.bytes()
        func crcs(of set: ByteBuffer) -> [(stored: UInt32, computed: UInt32)] {
            var found: [(UInt32, UInt32)] = []
            var position = set.readerIndex
            while position < set.writerIndex {
                let size = Int(set.getInteger(at: position + 8, as: Int32.self)!)
                let computed = set.withUnsafeReadableBytes {
                    LegacyMessageSet.crc32(
                        UnsafeRawBufferPointer(
                            rebasing: $0[(position - set.readerIndex + 16)..<(position - set.readerIndex + 12 + size)]
                        )
                    )
                }
                found.append((set.getInteger(at: position + 12)!, computed))
                position += 12 + size
            }
            return found
        }
        let outer = crcs(of: bytes)
        for (stored, computed) in outer { #expect(stored == computed) }
        if let wrapperCRC = fixture.wrapperCRC {
            #expect(outer.map(\.stored) == [wrapperCRC])
        } else {
            #expect(outer.map(\.stored) == fixture.records.map(\.crc))
        }
    }

    @Test(arguments: LegacyFixture.all)
    func goldenSetConvertsToOneV2Batch(fixture: LegacyFixture) throws {
        let conversion = try convertLegacy(try fixture.bytes())
        let codec: CompressionCodec = ["none": .none, "gzip": .gzip, "snappy": .snappy, "lz4": .lz4][fixture.codec]!
        #expect(conversion.magic == fixture.magic)
        #expect(conversion.codec == codec)
        #expect(conversion.recordCount == fixture.records.count)

        let batch = conversion.batch
        #expect(batch.magic == 2)
        #expect(batch.isCRCValid)
        #expect(batch.baseOffset == 0)
        #expect(batch.recordCount == Int32(fixture.records.count))
        #expect(batch.lastOffsetDelta == Int32(fixture.records.count - 1))
        #expect(batch.attributes.compressionCodec == codec)
        #expect(batch.attributes.timestampType == .createTime)
        #expect(!batch.attributes.isTransactional && !batch.attributes.isControl)
        #expect(batch.producerID == -1 && batch.producerEpoch == -1 && batch.baseSequence == -1)
        let timestamps = fixture.records.map(\.timestamp)
        #expect(batch.maxTimestamp == (fixture.magic == 0 ? -1 : timestamps.max()!))
        // The batch passes the checks a producer's v2 batch gets.
        var validator = RecordBatchValidator()
        #expect(try validator.validate(batch).recordCount == fixture.records.count)

        var iterator = try batch.makeRecordIterator(compression: CompressionContext(), maxDecompressedBytes: 1 << 20)
        let records = try iterator.collect()
        #expect(records.count == fixture.records.count)
        for (index, (record, expected)) in zip(records, fixture.records).enumerated() {
            // Offsets are assigned afresh, in the set's order, whatever the inner offsets were.
            #expect(record.offset == Int64(index))
            #expect(record.timestamp == (fixture.magic == 0 ? -1 : expected.timestamp))
            #expect(record.key.map { String(buffer: $0) } == expected.key)
            #expect(record.value.map { String(buffer: $0) } == expected.value)
            #expect(record.headers.isEmpty)
        }
    }

    @Test func magicIsReadFromByte16() throws {
        #expect(LegacyMessageSet.legacyMagic(of: try LegacyFixture.named("v0-none.bin").bytes()) == 0)
        #expect(LegacyMessageSet.legacyMagic(of: try LegacyFixture.named("v1-gzip.bin").bytes()) == 1)
        var builder = RecordBatchBuilder()
        builder.append(timestamp: 1, key: nil, value: ByteBuffer(string: "v2"))
        #expect(LegacyMessageSet.legacyMagic(of: try builder.build().buffer) == nil)
        #expect(LegacyMessageSet.legacyMagic(of: ByteBuffer(bytes: [0, 0, 0])) == nil)
    }

    @Test func xxHash32MatchesTheReferenceVectors() {
        #expect(XXHash32.hash([], seed: 0) == 0x02CC_5D05)
        #expect(XXHash32.hash(Array("a".utf8), seed: 0) == 0x550D_7456)
        #expect(XXHash32.hash(Array("abc".utf8), seed: 0) == 0x32D1_53FF)
    }

    /// Magic 0 lz4 from kafka-python's old-Kafka framing carries a wrong frame-descriptor checksum, which Kafka
    /// ignores for magic 0 and checks for magic 1.
    @Test func lz4DescriptorChecksumIsIgnoredOnlyForMagic0() throws {
        #expect(legacyRefusal(try LegacyFixture.named("v0-lz4.bin").bytes()) == nil)
        var magic1 = try LegacyFixture.named("v1-lz4.bin").bytes()
        // The wrapper's value starts at byte 34; FLG 0x68 (content size present) puts the checksum at 34 + 14.
        #expect(magic1.getInteger(at: 34 + 4, as: UInt8.self) == 0x68)
        let checksum = magic1.getInteger(at: 34 + 14, as: UInt8.self)!
        magic1.setInteger(checksum ^ 0x5A, at: 34 + 14)
        resealLegacyMessage(&magic1)
        #expect(legacyRefusal(magic1) == .corruptMessage)
    }

    // MARK: Refusals

    @Test func wrongCRCIsCorruptMessage() throws {
        for file in ["v1-none.bin", "v0-none.bin", "v1-gzip.bin", "v0-snappy.bin"] {
            var set = try LegacyFixture.named(file).bytes()
            let last = set.writerIndex - 1
            set.setInteger(set.getInteger(at: last, as: UInt8.self)! ^ 1, at: last)
            #expect(legacyRefusal(set) == .corruptMessage, "\(file)")
        }
        // An inner message's CRC, under a valid wrapper CRC.
        var inner = legacyMessage(offset: 0, magic: 1, key: nil, value: Array("inner".utf8))
        inner.setInteger(UInt32(0xDEAD_BEEF), at: 12)
        #expect(legacyRefusal(try legacyWrapper(offset: 0, magic: 1, codec: .gzip, inner: [inner])) == .corruptMessage)
    }

    /// Kafka's `DeepRecordsIterator`: a magic 1 wrapper's offset is its last inner offset, or 0; a non-zero
    /// one below the last inner offset is INVALID_RECORD. Inner offsets that merely go backwards are accepted.
    @Test func wrapperOffsetBelowItsInnerOffsetsIsInvalidRecord() throws {
        var set = try LegacyFixture.named("v1-gzip.bin").bytes()
        #expect(legacyRefusal(set) == nil)
        set.setInteger(Int64(1), at: 0)  // the offset is outside the CRC: the set stays intact otherwise
        #expect(legacyRefusal(set) == .invalidRecord)
        set.setInteger(Int64(5), at: 0)
        #expect(legacyRefusal(set) == nil)

        var backwards = try LegacyFixture.named("v1-gzip-backwards.bin").bytes()
        #expect(legacyRefusal(backwards) == nil)
        backwards.setInteger(Int64(3), at: 0)  // last inner offset 0: any wrapper offset is at least that
        #expect(legacyRefusal(backwards) == nil)
        // With inner offsets 0...5 a wrapper offset of 2 goes backwards from the last inner one.
        let inner = (0..<6).map { legacyMessage(offset: Int64($0), magic: 1, key: nil, value: [UInt8($0)]) }
        #expect(legacyRefusal(try legacyWrapper(offset: 2, magic: 1, codec: .snappy, inner: inner)) == .invalidRecord)
        #expect(legacyRefusal(try legacyWrapper(offset: 0, magic: 1, codec: .snappy, inner: inner)) == nil)
        // Magic 0 has no relative offsets to check.
        let inner0 = (0..<6).map { legacyMessage(offset: Int64($0), magic: 0, key: nil, value: [UInt8($0)]) }
        #expect(legacyRefusal(try legacyWrapper(offset: 2, magic: 0, codec: .gzip, inner: inner0)) == nil)
    }

    @Test func truncatedMessagesAreCorrupt() throws {
        for file in ["v1-none.bin", "v0-gzip.bin"] {
            let set = try LegacyFixture.named(file).bytes()
            for cut in [1, 7, set.readableBytes - 11, set.readableBytes - 1] {
                #expect(
                    legacyRefusal(set.getSlice(at: 0, length: set.readableBytes - cut)!) == .corruptMessage,
                    "\(file) -\(cut)"
                )
            }
        }
        #expect(legacyRefusal(ByteBuffer()) == .invalidRecord)
        // A cut inner message inside an intact wrapper.
        var inner = legacyMessage(offset: 0, magic: 0, key: nil, value: Array("whole".utf8))
        inner.moveWriterIndex(to: inner.writerIndex - 2)
        #expect(legacyRefusal(try legacyWrapper(offset: 0, magic: 0, codec: .lz4, inner: [inner])) == .corruptMessage)
    }

    @Test func absurdSizesAreRefusedBeforeAnythingIsRead() throws {
        var set = try LegacyFixture.named("v1-none.bin").bytes()
        for size in [Int32.max, Int32.min, -1, 0, 13] {
            set.setInteger(size, at: 8)
            #expect(legacyRefusal(set) == .corruptMessage, "size \(size)")
        }
        // A magic 1 message needs 22 bytes after its size field.
        var short = legacyMessage(offset: 0, magic: 1, key: nil, value: nil)
        short.setInteger(Int32(14), at: 8)
        #expect(legacyRefusal(short.getSlice(at: 0, length: 26)!) == .corruptMessage)
        // Key and value lengths past the message's end, under a valid CRC.
        var key = legacyMessage(offset: 0, magic: 0, key: Array("k".utf8), value: nil)
        key.setInteger(Int32(1000), at: 18)
        resealLegacyMessage(&key)
        #expect(legacyRefusal(key) == .corruptMessage)
        // A whole message larger than max.message.bytes.
        let large = try LegacyFixture.named("v0-none.bin").bytes()
        #expect(legacyRefusal(large, maxMessageBytes: 40) == .messageTooLarge)
        // A wrapper inflating past the decompression limit.
        #expect(
            legacyRefusal(try LegacyFixture.named("v1-gzip.bin").bytes(), maxDecompressedBytes: 100) == .invalidRecord
        )
    }

    @Test func structuresKafkaRefusesAreInvalidRecord() throws {
        let v0 = legacyMessage(offset: 0, magic: 0, key: nil, value: Array("zero".utf8))
        let v1 = legacyMessage(offset: 1, magic: 1, key: nil, value: Array("one".utf8))
        var mixed = v0
        mixed.writeImmutableBuffer(v1)
        #expect(legacyRefusal(mixed) == .invalidRecord)

        // A compressed wrapper must be alone.
        var beside = try LegacyFixture.named("v1-gzip.bin").bytes()
        beside.writeImmutableBuffer(v1)
        #expect(legacyRefusal(beside) == .invalidRecord)
        var after = v1
        after.writeImmutableBuffer(try LegacyFixture.named("v1-gzip.bin").bytes())
        #expect(legacyRefusal(after) == .invalidRecord)

        // Inner messages: the wrapper's magic, never compressed, at least one.
        #expect(legacyRefusal(try legacyWrapper(offset: 0, magic: 1, codec: .gzip, inner: [v0])) == .invalidRecord)
        let nested = try legacyWrapper(offset: 0, magic: 1, codec: .gzip, inner: [v1])
        #expect(legacyRefusal(try legacyWrapper(offset: 0, magic: 1, codec: .gzip, inner: [nested])) == .invalidRecord)
        #expect(legacyRefusal(try legacyWrapper(offset: 0, magic: 1, codec: .snappy, inner: [])) == .invalidRecord)
        var nullValue = legacyMessage(offset: 0, magic: 1, attributes: 1, key: nil, value: nil)
        resealLegacyMessage(&nullValue)
        #expect(legacyRefusal(nullValue) == .invalidRecord)

        // zstd needs magic 2; ids 5-7 are no codec at all.
        var zstd = legacyMessage(offset: 0, magic: 1, attributes: 4, key: nil, value: Array("z".utf8))
        #expect(legacyRefusal(zstd) == .invalidRecord)
        zstd.setInteger(UInt8(6), at: 17)
        resealLegacyMessage(&zstd)
        #expect(legacyRefusal(zstd) == .unsupportedCompressionType)

        // A magic 2 batch after magic 1 messages; a magic byte that is no format.
        var builder = RecordBatchBuilder()
        builder.append(timestamp: 1, key: nil, value: ByteBuffer(string: "v2"))
        var withBatch = v1
        withBatch.writeImmutableBuffer(try builder.build().buffer)
        #expect(legacyRefusal(withBatch) == .invalidRecord)
        var badMagic = v1
        badMagic.writeImmutableBuffer(v0)
        badMagic.setInteger(Int8(7), at: v1.readableBytes + 16)
        #expect(legacyRefusal(badMagic) == .corruptMessage)
    }

    /// Kafka's `validateTimestamp`: only the broker sets LogAppendTime; a producer's mark is refused on a
    /// LogAppendTime topic or without a timestamp, and otherwise the record keeps its own timestamp. Inner messages
    /// of a wrapper marked LogAppendTime take the wrapper's timestamp.
    @Test func producerLogAppendTimeMarks() throws {
        let marked = legacyMessage(offset: 0, magic: 1, attributes: 0x08, timestamp: 1234, key: nil, value: [1])
        #expect(legacyRefusal(marked, logAppendTimeTopic: true) == .invalidTimestamp)
        var records = try convertLegacy(marked).batch.makeRecordIterator(
            compression: CompressionContext(),
            maxDecompressedBytes: 1 << 20
        )
        #expect(try records.collect().map(\.timestamp) == [1234])
        let noTimestamp = legacyMessage(offset: 0, magic: 1, attributes: 0x08, timestamp: -1, key: nil, value: [1])
        #expect(legacyRefusal(noTimestamp) == .invalidTimestamp)
        // A plain magic 1 message on a LogAppendTime topic is fine: the v2 append stamps the broker's time.
        #expect(
            legacyRefusal(legacyMessage(offset: 0, magic: 1, key: nil, value: [1]), logAppendTimeTopic: true) == nil
        )

        let inner = (0..<3).map {
            legacyMessage(offset: Int64($0), magic: 1, timestamp: 100 + Int64($0), key: nil, value: [UInt8($0)])
        }
        var wrapper = try legacyWrapper(offset: 2, magic: 1, codec: .gzip, inner: inner)
        wrapper.setInteger(UInt8(0x08 | 1), at: 17)
        wrapper.setInteger(Int64(5000), at: 18)
        resealLegacyMessage(&wrapper)
        var iterator = try convertLegacy(wrapper).batch.makeRecordIterator(
            compression: CompressionContext(),
            maxDecompressedBytes: 1 << 20
        )
        #expect(try iterator.collect().map(\.timestamp) == [5000, 5000, 5000])
        #expect(legacyRefusal(wrapper, logAppendTimeTopic: true) == .invalidTimestamp)

        // A CRC error later in the set wins over a record refused earlier: Kafka collects record errors, but a
        // corrupt message ends the request at once.
        var marksThenCorrupt = marked
        var corrupt = legacyMessage(offset: 1, magic: 1, key: nil, value: [2])
        corrupt.setInteger(UInt8(0xFF), at: corrupt.writerIndex - 1)
        marksThenCorrupt.writeImmutableBuffer(corrupt)
        #expect(legacyRefusal(marksThenCorrupt, logAppendTimeTopic: true) == .corruptMessage)
    }

    /// Every byte of every fixture damaged in turn: outside the CRC (the offsets) the set still converts; inside,
    /// the CRC catches it (CORRUPT_MESSAGE) or the size or magic checks come first. For the wrappers, every byte of
    /// the inflated inner set is damaged too and the wrapper recompressed and resealed, so the inner parser sees it:
    /// whatever comes out is either a refusal with a Kafka error code or a v2 batch the validator accepts.
    @Test(arguments: LegacyFixture.all)
    func everyDamagedByteIsRefusedOrConvertsToAValidBatch(fixture: LegacyFixture) throws {
        let original = Array(try fixture.bytes().readableBytesView)
        var converter = LegacyMessageSetConverter(options: LegacyMessageSetConversionOptions(maxMessageBytes: 1 << 20))
        var validator = RecordBatchValidator()
        func check(_ bytes: [UInt8]) -> ErrorCode? {
            do {
                let conversion = try converter.convert(ByteBuffer(bytes: bytes))
                #expect(try validator.validate(conversion.batch).recordCount == conversion.recordCount)
                return nil
            } catch {
                #expect(error.kafkaErrorCode != .unknownServerError)
                return error.kafkaErrorCode
            }
        }
        // The outer bytes; each message's offset (its first 8 bytes) is outside its CRC.
        var offsetFields = Set<Int>()
        var start = 0
        while start < original.count {
            offsetFields.formUnion(start..<(start + 8))
            start +=
                12
                + Int(
                    Int32(
                        bigEndian: original[(start + 8)..<(start + 12)].withUnsafeBytes {
                            $0.loadUnaligned(as: Int32.self)
                        }
                    )
                )
        }
        for position in original.indices {
            var damaged = original
            damaged[position] ^= 0x5A
            let refusal = check(damaged)
            #expect(
                (refusal == nil) == offsetFields.contains(position),
                "byte \(position): \(String(describing: refusal))"
            )
        }
        guard fixture.codec != "none" else { return }
        // The inner set, recompressed with the wrapper's codec and resealed.
        let codec: CompressionCodec = ["gzip": .gzip, "snappy": .snappy, "lz4": .lz4][fixture.codec]!
        let valueStart = fixture.magic == 0 ? 26 : 34
        var inflated = ByteBuffer()
        try original[valueStart...].withUnsafeBytes { compressed in
            var source = ByteBuffer(bytes: compressed)
            if fixture.magic == 0, codec == .lz4 { LegacyMessageSet.repairLZ4DescriptorChecksum(&source) }
            try source.withUnsafeReadableBytes {
                try CompressionContext().decompress(
                    $0,
                    codec: codec,
                    maxDecompressedBytes: 1 << 20,
                    appendingTo: &inflated
                )
            }
        }
        let inner = Array(inflated.readableBytesView)
        var refused = 0
        for position in inner.indices {
            var damaged = inner
            damaged[position] ^= 0x5A
            var set = legacyMessage(
                offset: 0,
                magic: fixture.magic,
                attributes: UInt8(codec.rawValue),
                timestamp: 0,
                key: nil,
                value: Array(try compress(damaged, codec).readableBytesView)
            )
            resealLegacyMessage(&set)
            if check(Array(set.readableBytesView)) != nil { refused += 1 }
        }
        // Only inner offsets lie outside the inner CRCs.
        #expect(refused >= inner.count - 8 * fixture.records.count)
    }

    /// One converter serves many sets in turn: nothing of one leaks into the next.
    @Test func aConverterIsReusable() throws {
        var converter = LegacyMessageSetConverter(options: LegacyMessageSetConversionOptions(maxMessageBytes: 1 << 20))
        for fixture in LegacyFixture.all + LegacyFixture.all.reversed() {
            let conversion = try converter.convert(try fixture.bytes())
            #expect(conversion.recordCount == fixture.records.count, "\(fixture)")
            #expect(conversion.batch.recordCount == Int32(fixture.records.count))
        }
        #expect(throws: RecordBatchError.self) { try converter.convert(ByteBuffer(bytes: [1, 2, 3])) }
        #expect(try converter.convert(try LegacyFixture.named("v0-none.bin").bytes()).recordCount == 6)
    }
}
