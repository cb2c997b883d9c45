import KafkaWire
import NIOCore
import Testing

private func makeReader(_ bytes: [UInt8], limits: WireLimits = .default) -> WireReader {
    WireReader(buffer: ByteBuffer(bytes: bytes), limits: limits)
}

private func written(_ body: (inout WireWriter) -> Void) -> [UInt8] {
    var writer = WireWriter()
    body(&writer)
    return Array(writer.buffer.readableBytesView)
}

@Suite struct VarintTests {
    static let unsignedCases: [(UInt32, [UInt8])] = [
        (0, [0x00]),
        (1, [0x01]),
        (127, [0x7F]),
        (128, [0x80, 0x01]),
        (300, [0xAC, 0x02]),
        (16_383, [0xFF, 0x7F]),
        (16_384, [0x80, 0x80, 0x01]),
        (UInt32(Int32.max), [0xFF, 0xFF, 0xFF, 0xFF, 0x07]),
        (UInt32.max, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
    ]

    @Test(arguments: Self.unsignedCases)
    func unsignedVarintEdges(value: UInt32, bytes: [UInt8]) throws {
        #expect(written { $0.writeUnsignedVarint(value) } == bytes)
        var reader = makeReader(bytes)
        #expect(try reader.readUnsignedVarint() == value)
        try reader.expectEnd()
    }

    static let zigZagCases: [(Int32, [UInt8])] = [
        (0, [0x00]),
        (-1, [0x01]),
        (1, [0x02]),
        (-64, [0x7F]),
        (64, [0x80, 0x01]),
        (Int32.max, [0xFE, 0xFF, 0xFF, 0xFF, 0x0F]),
        (Int32.min, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
    ]

    @Test(arguments: Self.zigZagCases)
    func zigZagVarintEdges(value: Int32, bytes: [UInt8]) throws {
        #expect(written { $0.writeVarint(value) } == bytes)
        var reader = makeReader(bytes)
        #expect(try reader.readVarint() == value)
    }

    @Test(arguments: [Int64(0), -1, 1, Int64(Int32.max) + 1, Int64(Int32.min) - 1, Int64.max, Int64.min])
    func varlongRoundTrips(value: Int64) throws {
        let bytes = written { $0.writeVarlong(value) }
        #expect(bytes.count <= 10)
        var reader = makeReader(bytes)
        #expect(try reader.readVarlong() == value)
        try reader.expectEnd()
    }

    @Test func varlongExtremesUseTenBytes() {
        #expect(written { $0.writeVarlong(.min) } == [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
    }

    @Test func sixByteVarintIsRefused() {
        var reader = makeReader([0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
        #expect(throws: WireError.varintTooLong(maxBytes: 5)) { try reader.readUnsignedVarint() }
    }

    @Test func fifthByteBeyondThirtyTwoBitsIsRefused() {
        var reader = makeReader([0xFF, 0xFF, 0xFF, 0xFF, 0x1F])
        #expect(throws: WireError.varintTooLong(maxBytes: 5)) { try reader.readUnsignedVarint() }
    }

    @Test func elevenByteVarlongIsRefused() {
        var reader = makeReader([UInt8](repeating: 0xFF, count: 10) + [0x01])
        #expect(throws: WireError.varintTooLong(maxBytes: 10)) { try reader.readVarlong() }
        var overflow = makeReader([UInt8](repeating: 0xFF, count: 9) + [0x02])
        #expect(throws: WireError.varintTooLong(maxBytes: 10)) { try overflow.readVarlong() }
    }

    @Test func truncatedVarintThrows() {
        var reader = makeReader([0x80, 0x80])
        #expect(throws: WireError.self) { try reader.readUnsignedVarint() }
    }
}

@Suite struct PrimitiveTests {
    @Test func fixedWidthValuesAreBigEndian() throws {
        let bytes = written {
            $0.writeInt8(-2)
            $0.writeInt16(0x0102)
            $0.writeInt32(-1)
            $0.writeInt64(0x0102_0304_0506_0708)
            $0.writeUInt16(0xFFFE)
            $0.writeUInt32(0xDEAD_BEEF)
            $0.writeBool(true)
            $0.writeFloat64(1.5)
        }
        #expect(bytes.count == 1 + 2 + 4 + 8 + 2 + 4 + 1 + 8)
        #expect(Array(bytes[1...2]) == [0x01, 0x02])
        var reader = makeReader(bytes)
        #expect(try reader.readInt8() == -2)
        #expect(try reader.readInt16() == 0x0102)
        #expect(try reader.readInt32() == -1)
        #expect(try reader.readInt64() == 0x0102_0304_0506_0708)
        #expect(try reader.readUInt16() == 0xFFFE)
        #expect(try reader.readUInt32() == 0xDEAD_BEEF)
        #expect(try reader.readBool())
        #expect(try reader.readFloat64() == 1.5)
        try reader.expectEnd()
    }

    @Test func truncatedIntegerReportsWhatWasMissing() {
        var reader = makeReader([0, 1, 2])
        #expect(throws: WireError.truncated(needed: 4, remaining: 3)) { try reader.readInt32() }
    }

    @Test func uuidRoundTripsAndPrintsLikeKafka() throws {
        let uuid = KafkaUUID(mostSignificantBits: 0x0123_4567_89AB_CDEF, leastSignificantBits: 0xFEDC_BA98_7654_3210)
        var reader = makeReader(written { $0.writeUUID(uuid) })
        #expect(try reader.readUUID() == uuid)
        // Kafka: Base64.getUrlEncoder().withoutPadding() over the 16 bytes.
        #expect(uuid.description == "ASNFZ4mrze_-3LqYdlQyEA")
        #expect(KafkaUUID.zero.description == "AAAAAAAAAAAAAAAAAAAAAA")
    }
}

@Suite struct StringAndBytesTests {
    @Test func classicAndCompactStrings() throws {
        #expect(written { $0.writeString("ab", compact: false) } == [0x00, 0x02, 0x61, 0x62])
        #expect(written { $0.writeString("ab", compact: true) } == [0x03, 0x61, 0x62])
        #expect(written { $0.writeNullableString(nil, compact: false) } == [0xFF, 0xFF])
        #expect(written { $0.writeNullableString(nil, compact: true) } == [0x00])
        #expect(written { $0.writeString("", compact: true) } == [0x01])

        var classic = makeReader([0x00, 0x02, 0x61, 0x62, 0xFF, 0xFF])
        #expect(try classic.readString(compact: false) == "ab")
        #expect(try classic.readNullableString(compact: false) == nil)
        var compact = makeReader([0x03, 0x61, 0x62, 0x00, 0x01])
        #expect(try compact.readString(compact: true) == "ab")
        #expect(try compact.readNullableString(compact: true) == nil)
        #expect(try compact.readString(compact: true) == "")
        try compact.expectEnd()
    }

    @Test func nullWhereNotNullableThrows() {
        var reader = makeReader([0x00])
        #expect(throws: WireError.unexpectedNull("string")) { try reader.readString(compact: true) }
    }

    @Test func invalidUTF8Throws() {
        var reader = makeReader([0x00, 0x02, 0xC3, 0x28])
        #expect(throws: WireError.invalidUTF8(length: 2)) { try reader.readString(compact: false) }
    }

    @Test func negativeStringLengthThrows() {
        var reader = makeReader([0xFF, 0xFE, 0x00])
        #expect(throws: WireError.negativeLength(-2)) { try reader.readNullableString(compact: false) }
    }

    @Test func stringLongerThanFrameThrows() {
        var reader = makeReader([0x00, 0x10, 0x61])
        #expect(throws: WireError.truncated(needed: 16, remaining: 1)) { try reader.readString(compact: false) }
    }

    @Test func stringLimitIsCheckedBeforeTheFrame() {
        var reader = makeReader([0x06] + Array("hello".utf8), limits: WireLimits(maxStringBytes: 4))
        #expect(throws: WireError.lengthExceedsLimit(length: 5, limit: 4)) { try reader.readString(compact: true) }
    }

    @Test func bytesAreZeroCopySlices() throws {
        let frame = ByteBuffer(bytes: [0x00, 0x00, 0x00, 0x03, 1, 2, 3, 0x04, 9, 9, 9])
        var reader = WireReader(buffer: frame)
        let bytes = try reader.readBytes(compact: false)
        #expect(Array(bytes.readableBytesView) == [1, 2, 3])
        let compact = try reader.readBytes(compact: true)
        #expect(Array(compact.readableBytesView) == [9, 9, 9])
        try reader.expectEnd()
        // A slice shares the frame's storage.
        frame.withUnsafeReadableBytes { frameBytes in
            bytes.withUnsafeReadableBytes { sliceBytes in
                #expect(sliceBytes.baseAddress == frameBytes.baseAddress! + 4)
            }
        }
    }

    @Test func nullableBytesAndRecords() throws {
        #expect(written { $0.writeNullableBytes(nil, compact: false) } == [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(written { $0.writeRecords(nil, compact: true) } == [0x00])
        var reader = makeReader([0xFF, 0xFF, 0xFF, 0xFF, 0x00])
        #expect(try reader.readNullableBytes(compact: false) == nil)
        #expect(try reader.readRecords(compact: true) == nil)
    }

    @Test func bytesLimitIsEnforced() {
        var reader = makeReader([0x00, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5], limits: WireLimits(maxBytesLength: 4))
        #expect(throws: WireError.lengthExceedsLimit(length: 5, limit: 4)) { try reader.readBytes(compact: false) }
    }
}

@Suite struct ArrayLimitTests {
    /// A 40-byte frame whose array claims 2^31 - 1 elements (and a compact one claiming 2^31 - 1 as well) must
    /// be refused from the count alone; reserving capacity for it would try to allocate gigabytes.
    @Test func hugeCountInSmallFrameThrowsWithoutAllocating() {
        var classic = makeReader([0x7F, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 36))
        #expect(throws: WireError.self) {
            _ = try classic.readArray(compact: false, minimumElementSize: 4) {
                (r: inout WireReader) throws(WireError) in
                try r.readInt32()
            }
        }
        var compact = makeReader([0xFF, 0xFF, 0xFF, 0xFF, 0x07] + [UInt8](repeating: 0, count: 35))
        #expect(throws: WireError.self) {
            _ = try compact.readArray(compact: true, minimumElementSize: 1) { (r: inout WireReader) throws(WireError) in
                try r.readInt8()
            }
        }
    }

    @Test func countIsCheckedAgainstRemainingBytesTimesElementSize() {
        // 10 int32s need 40 bytes; only 36 follow.
        var reader = makeReader([0x00, 0x00, 0x00, 0x0A] + [UInt8](repeating: 0, count: 36))
        #expect(throws: WireError.countExceedsFrame(count: 10, minimumBytes: 4, remaining: 36)) {
            try reader.readArrayCount(compact: false, minimumElementSize: 4)
        }
    }

    @Test func countLimitIsEnforced() {
        var reader = makeReader([0x00, 0x00, 0x00, 0x03, 1, 2, 3], limits: WireLimits(maxArrayCount: 2))
        #expect(throws: WireError.countExceedsLimit(count: 3, limit: 2)) {
            try reader.readArrayCount(compact: false, minimumElementSize: 1)
        }
    }

    @Test func negativeCountBelowNullThrows() {
        var reader = makeReader([0xFF, 0xFF, 0xFF, 0xFE])
        #expect(throws: WireError.negativeLength(-2)) {
            try reader.readArrayCount(compact: false, minimumElementSize: 1)
        }
    }

    @Test func nullAndEmptyArrays() throws {
        #expect(written { $0.writeNullableArray(nil as [Int32]?, compact: true) { $0.writeInt32($1) } } == [0x00])
        #expect(written { $0.writeArray([Int32](), compact: false) { $0.writeInt32($1) } } == [0, 0, 0, 0])
        let bytes = written { $0.writeArray([Int32(7), 8], compact: true) { $0.writeInt32($1) } }
        #expect(bytes == [0x03, 0, 0, 0, 7, 0, 0, 0, 8])
        var reader = makeReader(bytes + [0x00])
        let values = try reader.readArray(compact: true, minimumElementSize: 4) {
            (r: inout WireReader) throws(WireError) in try r.readInt32()
        }
        #expect(values == [7, 8])
        let null = try reader.readNullableArray(compact: true, minimumElementSize: 4) {
            (r: inout WireReader) throws(WireError) in try r.readInt32()
        }
        #expect(null == nil)
    }

    @Test func nullWhereArrayIsNotNullableThrows() {
        var reader = makeReader([0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: WireError.unexpectedNull("array")) {
            _ = try reader.readArray(compact: false, minimumElementSize: 4) { (r: inout WireReader) throws(WireError) in
                try r.readInt32()
            }
        }
    }
}

@Suite struct TaggedFieldTests {
    @Test func emptySectionIsOneZeroByte() {
        #expect(written { $0.writeEmptyTaggedFields() } == [0x00])
    }

    @Test func taggedFieldsRoundTripAndUnknownOnesAreSkipped() throws {
        let bytes = written {
            $0.writeUnsignedVarint(2)
            $0.writeTaggedField(tag: 1) { $0.writeInt64(-1) }
            $0.writeTaggedField(tag: 300) { $0.writeString("x", compact: true) }
            $0.writeInt8(42)
        }
        #expect(Array(bytes.prefix(4)) == [0x02, 0x01, 0x08, 0xFF])
        var reader = makeReader(bytes)
        #expect(try reader.readTaggedFieldCount() == 2)
        var first = try reader.readTaggedField()
        #expect(first.tag == 1)
        #expect(try first.value.readInt64() == -1)
        try first.value.expectEnd()
        let second = try reader.readTaggedField()
        #expect(second.tag == 300)
        #expect(try reader.readInt8() == 42)

        var skipping = WireReader(buffer: ByteBuffer(bytes: bytes))
        try skipping.skipTaggedFields()
        #expect(try skipping.readInt8() == 42)
    }

    @Test func taggedSizeBeyondFrameThrows() {
        var reader = makeReader([0x01, 0x00, 0x7F, 0x00])
        #expect(throws: WireError.self) { try reader.skipTaggedFields() }
    }

    @Test func tagCountBeyondFrameThrows() {
        var reader = makeReader([0xFF, 0xFF, 0xFF, 0xFF, 0x07, 0, 0])
        #expect(throws: WireError.self) { try reader.readTaggedFieldCount() }
    }
}

@Suite struct WireErrorTests {
    @Test func descriptionsNameTheProblem() {
        #expect(WireError.truncated(needed: 4, remaining: 1).description.hasPrefix("truncated"))
        #expect(WireError.countExceedsFrame(count: 5, minimumBytes: 4, remaining: 3).description.contains("5 elements"))
        #expect(WireError.invalidUTF8(length: 2).shortDescription == "invalid UTF-8")
        #expect(WireError.varintTooLong(maxBytes: 5).kafkaErrorCode == .invalidRequest)
    }

    @Test func apiKeysHaveKafkaNames() {
        #expect(APIKey.apiVersions.rawValue == 18)
        #expect(APIKey.alterPartition.name == "AlterPartition")
        #expect(APIKey(999).name == nil)
        #expect(APIKey.tableSize == 88)
    }
}
