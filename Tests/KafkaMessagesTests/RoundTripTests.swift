import KafkaMessageGen
import KafkaMessages
import KafkaWire
import NIOCore
import Testing

/// Decodes `bytes` as `type` at `version`, requiring every byte to be used, and encodes the value again.
func reencode<Message: KafkaMessage>(_ type: Message.Type, _ bytes: [UInt8], version: Int16) throws -> [UInt8] {
    var reader = WireReader(buffer: ByteBuffer(bytes: bytes))
    let message = try Message(decoding: &reader, version: version)
    var writer = WireWriter()
    message.encode(into: &writer, version: version)
    let encoded = Array(writer.buffer.readableBytesView)
    // Decoding what we wrote gives the same value.
    var again = WireReader(buffer: writer.buffer)
    let second = try Message(decoding: &again, version: version)
    guard second == message else { throw RoundTripFailure(description: "value changed after re-decoding") }
    return encoded
}

func decodes<Message: KafkaMessage>(_ type: Message.Type, _ bytes: [UInt8], version: Int16) throws {
    var reader = WireReader(buffer: ByteBuffer(bytes: bytes))
    _ = try Message(decoding: &reader, version: version)
}

struct RoundTripFailure: Error, CustomStringConvertible {
    var description: String
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

@Suite struct RoundTripTests {
    static let seeds: [UInt64] = Array(0..<12)

    @Test func everyAllowlistedMessageIsGeneratedAndRegistered() {
        #expect(allSchemas.count == KafkaMessageRegistry.messageTypes.count)
        for schema in allSchemas {
            #expect(KafkaMessageRegistry.messageTypes[schema.name] != nil, "\(schema.name) is not registered")
        }
    }

    /// For every message, version and seed: schema-driven random bytes decode with the generated type, using
    /// every byte, and re-encode to exactly the same bytes.
    @Test(arguments: allSchemas.map(\.name))
    func randomEncodingsRoundTrip(name: String) throws {
        let schema = try #require(allSchemas.first { $0.name == name })
        let type = try #require(KafkaMessageRegistry.messageTypes[name])
        for version in schema.validVersions.versions {
            for seed in Self.seeds {
                var encoder = RandomMessageEncoder(schema: schema, seed: seed)
                let bytes = encoder.encode(version: version)
                do {
                    let again = try reencode(type, bytes, version: version)
                    #expect(
                        again == bytes,
                        "\(name) v\(version) seed \(seed): \(hex(bytes)) re-encoded as \(hex(again))"
                    )
                } catch {
                    Issue.record("\(name) v\(version) seed \(seed): \(error) decoding \(hex(bytes))")
                }
            }
        }
    }

    /// Tags no schema knows are skipped and not kept: the result equals the encoding without them.
    @Test(arguments: allSchemas.filter { !$0.flexibleVersions.isEmpty }.map(\.name))
    func unknownTaggedFieldsAreSkipped(name: String) throws {
        let schema = try #require(allSchemas.first { $0.name == name })
        let type = try #require(KafkaMessageRegistry.messageTypes[name])
        var options = RandomMessageEncoder.Options()
        options.unknownTags = true
        for version in schema.validVersions.versions where schema.flexibleVersions.contains(version) {
            for seed in Self.seeds.prefix(4) {
                var plain = RandomMessageEncoder(schema: schema, seed: seed)
                var withUnknown = RandomMessageEncoder(schema: schema, seed: seed, options: options)
                let expected = plain.encode(version: version)
                let bytes = withUnknown.encode(version: version)
                #expect(bytes != expected)
                let again = try reencode(type, bytes, version: version)
                #expect(again == expected, "\(name) v\(version) seed \(seed)")
            }
        }
    }

    /// Every strict prefix of a message is refused with a WireError; nothing traps.
    @Test(arguments: [
        ("MetadataResponse", Int16(12)), ("MetadataResponse", 1), ("FetchResponse", 12), ("FetchRequest", 4),
        ("ProduceRequest", 9), ("ProduceRequest", 3), ("ApiVersionsResponse", 3), ("ApiVersionsResponse", 0),
        ("JoinGroupRequest", 9), ("OffsetCommitRequest", 8), ("RequestHeader", 2), ("DescribeConfigsResponse", 4),
    ])
    func everyTruncationThrows(name: String, version: Int16) throws {
        let schema = try #require(allSchemas.first { $0.name == name })
        let type = try #require(KafkaMessageRegistry.messageTypes[name])
        for seed in Self.seeds.prefix(6) {
            var encoder = RandomMessageEncoder(schema: schema, seed: seed)
            let bytes = encoder.encode(version: version)
            for length in 0..<bytes.count {
                #expect(throws: WireError.self, "\(name) v\(version) prefix \(length) of \(bytes.count)") {
                    try decodes(type, Array(bytes.prefix(length)), version: version)
                }
            }
        }
    }

    /// A 40-byte request whose topic array claims 2^31 - 1 entries is refused from the count alone.
    @Test func hugeArrayCountInSmallFrameThrowsWithoutAllocating() {
        let classic: [UInt8] = [0x7F, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 36)
        var reader = WireReader(buffer: ByteBuffer(bytes: classic))
        #expect(throws: WireError.self) { try MetadataRequest(decoding: &reader, version: 1) }

        let compact: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0x07] + [UInt8](repeating: 0, count: 35)
        var compactReader = WireReader(buffer: ByteBuffer(bytes: compact))
        #expect(throws: WireError.self) { try MetadataRequest(decoding: &compactReader, version: 12) }

        // The same inside a nested array: one topic whose partition array claims 2^31 - 1 entries.
        var produce = WireWriter()
        produce.writeNullableString(nil, compact: false)  // transactional ID
        produce.writeInt16(-1)  // acks
        produce.writeInt32(1000)  // timeout
        produce.writeInt32(1)  // one topic
        produce.writeString("t", compact: false)
        produce.writeInt32(Int32.max)  // partitions
        var produceReader = WireReader(buffer: produce.buffer)
        #expect(throws: WireError.self) { try ProduceRequest(decoding: &produceReader, version: 3) }
    }

    @Test func versionsOutsideTheValidRangeAreRefused() {
        var reader = WireReader(buffer: ByteBuffer(bytes: [0, 0, 0, 0]))
        #expect(throws: WireError.unsupportedVersion("ListOffsetsRequest", version: 11)) {
            try ListOffsetsRequest(from: &reader, version: 11)
        }
    }
}
