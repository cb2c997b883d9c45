import KafkaMessages
import KafkaNIO
import KafkaWire
import NIOCore
import NIOEmbedded
import Testing

@Suite struct KafkaFrameTests {
    @Test func requestHeaderVersionFollowsTheAPI() throws {
        // ApiVersions v2: header v1 (no tagged fields); v3: header v2 (a tag section after the client id).
        let v2 = KafkaFrame.request(ApiVersionsRequest(), version: 2, correlationID: 7, clientID: "c")
        #expect(Array(v2.readableBytesView) == [0, 18, 0, 2, 0, 0, 0, 7, 0, 1, 0x63])
        let v3 = KafkaFrame.request(
            ApiVersionsRequest(clientSoftwareName: "a", clientSoftwareVersion: "1"),
            version: 3,
            correlationID: 7,
            clientID: nil
        )
        #expect(Array(v3.readableBytesView) == [0, 18, 0, 3, 0, 0, 0, 7, 0xFF, 0xFF, 0, 2, 0x61, 2, 0x31, 0])
    }

    @Test func envelopeReadsTheHeaderAndLeavesTheBody() throws {
        let frame = KafkaFrame.request(
            ApiVersionsRequest(clientSoftwareName: "kcat", clientSoftwareVersion: "1.7"),
            version: 3,
            correlationID: 42,
            clientID: "rdkafka"
        )
        let envelope = try KafkaRequestEnvelope(parsing: frame)
        #expect(envelope.apiKey == .apiVersions)
        #expect(envelope.apiVersion == 3)
        #expect(envelope.correlationID == 42)
        #expect(envelope.clientID == "rdkafka")
        #expect(envelope.headerVersion == 2)
        let body = try envelope.decodeBody(as: ApiVersionsRequest.self)
        #expect(body == ApiVersionsRequest(clientSoftwareName: "kcat", clientSoftwareVersion: "1.7"))
    }

    @Test func aNullClientIDReadsAsEmpty() throws {
        let frame = KafkaFrame.request(ApiVersionsRequest(), version: 0, correlationID: 1, clientID: nil)
        #expect(try KafkaRequestEnvelope(parsing: frame).clientID == "")
    }

    @Test func anApiVersionsVersionBeyondTheKnownOnesStillYieldsItsCorrelationID() throws {
        // v9 is flexible by the "3+" rule, so the header is v2: client id, then an empty tag section.
        var frame = ByteBuffer(bytes: [0, 18, 0, 9, 0, 0, 0, 5, 0, 0, 0])
        frame.writeBytes([0xAB, 0xCD])  // a body nobody can read
        let envelope = try KafkaRequestEnvelope(parsing: frame)
        #expect(envelope.apiVersion == 9)
        #expect(envelope.correlationID == 5)
        #expect(envelope.body.readableBytes == 2)
    }

    @Test func anUnknownAPIKeyIsRefused() {
        let frame = ByteBuffer(bytes: [0x7F, 0x00, 0, 0, 0, 0, 0, 9, 0, 0])
        #expect(throws: KafkaNIOError.unknownAPIKey(APIKey(0x7F00), correlationID: 9)) {
            try KafkaRequestEnvelope(parsing: frame)
        }
    }

    @Test func aHeaderLongerThanItsFrameIsMalformed() {
        let frame = ByteBuffer(bytes: [0, 18, 0, 0, 0, 0, 0, 1, 0, 5, 0x61])  // client id of 5 bytes, 1 present
        #expect(throws: KafkaNIOError.self) { try KafkaRequestEnvelope(parsing: frame) }
        #expect(throws: KafkaNIOError.self) { try KafkaRequestEnvelope(parsing: ByteBuffer(bytes: [0, 18])) }
    }

    @Test func apiVersionsResponsesUseHeaderV0EvenWhenFlexible() throws {
        let response = ApiVersionsResponse(apiKeys: [.init(apiKey: 18, minVersion: 0, maxVersion: 4)])
        let frame = KafkaFrame.response(response, version: 3, correlationID: 3)
        // correlation id, then directly the error code: no header tag section.
        #expect(Array(frame.readableBytesView.prefix(6)) == [0, 0, 0, 3, 0, 0])
        let decoded = try KafkaFrame.decodeResponse(frame, to: ApiVersionsRequest.self, version: 3)
        #expect(decoded.correlationID == 3)
        #expect(decoded.response == response)
    }

    @Test func flexibleResponsesUseHeaderV1() throws {
        let frame = KafkaFrame.response(MetadataResponse(), version: 9, correlationID: 3)
        #expect(Array(frame.readableBytesView.prefix(5)) == [0, 0, 0, 3, 0])
        #expect(try KafkaFrame.decodeResponse(frame, to: MetadataRequest.self, version: 9).correlationID == 3)
        let old = KafkaFrame.response(MetadataResponse(), version: 8, correlationID: 3)
        #expect(try KafkaFrame.decodeResponse(old, to: MetadataRequest.self, version: 8).correlationID == 3)
    }

    @Test func anApiVersionsErrorInTheV0LayoutDecodesForAnyRequestedVersion() throws {
        let error = ApiVersionsResponse(
            errorCode: ErrorCode.unsupportedVersion.rawValue,
            apiKeys: [.init(apiKey: 18, minVersion: 0, maxVersion: 4)]
        )
        let frame = KafkaFrame.response(error, version: 0, correlationID: 11)
        let decoded = try KafkaFrame.decodeResponse(frame, to: ApiVersionsRequest.self, version: 4)
        #expect(decoded.response == error)
    }

    @Test func theEncoderPrefixesEachFrameWithItsSize() throws {
        let channel = EmbeddedChannel(handler: KafkaFrameEncoder())
        try channel.writeAndFlush(ByteBuffer(bytes: [1, 2, 3])).wait()
        var written = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&part) }
        #expect(Array(written.readableBytesView) == [0, 0, 0, 3, 1, 2, 3])
        _ = try channel.finish()
    }
}
