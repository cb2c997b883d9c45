import KafkaMessages
import KafkaWire
import NIOCore
import Testing

private func encoded(_ message: some KafkaMessage, version: Int16) -> [UInt8] {
    var writer = WireWriter()
    message.encode(into: &writer, version: version)
    return Array(writer.buffer.readableBytesView)
}

/// Hand-checked encodings of the rules the random round trip cannot see by itself.
@Suite struct WireFormatTests {
    /// CLIENTS.md §4: default-valued tagged fields are not written, so an ApiVersions v3 response with default
    /// features ends with a single 0 byte (librdkafka 2.0.2 mis-skips tagged fields).
    @Test func apiVersionsResponseWritesNoDefaultTags() {
        let response = ApiVersionsResponse(
            errorCode: 0,
            apiKeys: [.init(apiKey: 18, minVersion: 0, maxVersion: 4)],
            throttleTimeMs: 0
        )
        #expect(
            encoded(response, version: 3) == [
                0x00, 0x00,  // error code
                0x02,  // one api key (compact)
                0x00, 0x12, 0x00, 0x00, 0x00, 0x04, 0x00,  // key 18, 0...4, no tags
                0x00, 0x00, 0x00, 0x00,  // throttle
                0x00,  // no tagged fields
            ]
        )
        var withEpoch = response
        withEpoch.finalizedFeaturesEpoch = 7
        let bytes = encoded(withEpoch, version: 3)
        #expect(Array(bytes.suffix(11)) == [0x01, 0x01, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x07])
    }

    /// RequestHeader v2 keeps ClientId as a classic int16-length string (field-level flexibleVersions "none").
    @Test func requestHeaderV2KeepsClassicClientID() throws {
        let header = RequestHeader(requestApiKey: 3, requestApiVersion: 12, correlationID: 7, clientID: "kcat")
        let bytes = encoded(header, version: 2)
        #expect(bytes == [0x00, 0x03, 0x00, 0x0C, 0x00, 0x00, 0x00, 0x07, 0x00, 0x04] + Array("kcat".utf8) + [0x00])
        var reader = WireReader(buffer: ByteBuffer(bytes: bytes))
        #expect(try RequestHeader(decoding: &reader, version: 2) == header)
        #expect(encoded(RequestHeader(clientID: nil), version: 1).suffix(2) == [0xFF, 0xFF])
    }

    @Test func defaultsComeFromTheJSON() {
        let partition = ListOffsetsRequest.ListOffsetsPartition()
        #expect(partition.currentLeaderEpoch == -1)
        #expect(partition.maxNumOffsets == 1)
        #expect(FetchRequest().replicaID == -1)
        #expect(JoinGroupRequest().groupInstanceID == nil)
        #expect(ProduceRequest.PartitionProduceData().records == nil)
    }

    @Test func headerVersionsFollowFlexibility() throws {
        let metadata = try #require(KafkaMessageRegistry.api(.metadata))
        #expect(metadata.requestHeaderVersion(for: 8) == 1)
        #expect(metadata.requestHeaderVersion(for: 9) == 2)
        #expect(metadata.responseHeaderVersion(for: 8) == 0)
        #expect(metadata.responseHeaderVersion(for: 9) == 1)
        let apiVersions = try #require(KafkaMessageRegistry.api(.apiVersions))
        #expect(apiVersions.requestHeaderVersion(for: 3) == 2)
        #expect(apiVersions.responseHeaderVersion(for: 3) == 0)
        #expect(ApiVersionsResponse.responseHeaderVersion(for: 4) == 0)
        #expect(MetadataResponse.responseHeaderVersion(for: 12) == 1)
        #expect(SaslHandshakeRequest.requestHeaderVersion(for: 1) == 1)
        #expect(KafkaMessageRegistry.api(.saslHandshake)?.firstFlexibleVersion == nil)
    }

    @Test func registryLooksUpByKeyAndDirection() throws {
        #expect(KafkaMessageRegistry.apis.count == 36)
        #expect(KafkaMessageRegistry.apis.map(\.apiKey) == KafkaMessageRegistry.apis.map(\.apiKey).sorted())
        let request = try #require(KafkaMessageRegistry.messageType(apiKey: .fetch, direction: .request))
        #expect(ObjectIdentifier(request) == ObjectIdentifier(FetchRequest.self))
        let response = try #require(KafkaMessageRegistry.messageType(apiKey: .listOffsets, direction: .response))
        #expect(ObjectIdentifier(response) == ObjectIdentifier(ListOffsetsResponse.self))
        #expect(KafkaMessageRegistry.messageType(apiKey: .vote, direction: .request) == nil)
        #expect(KafkaMessageRegistry.api(.produce)?.validVersions == ProduceRequest.validVersions)
    }
}
