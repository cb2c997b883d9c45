import KafkaMessages
import KafkaNIO
import KafkaWire
import LogBrokerServer
import NIOCore
import Testing

@Suite struct ApiVersionsTests {
    @Test(arguments: Int16(0)...4)
    func everyVersionListsExactlyTheTable(version: Int16) async throws {
        let table = HandlerTable()
        #expect(table.advertised == [.init(apiKey: 18, minVersion: 0, maxVersion: 4)])
        try await withServer(handlers: table) { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let request = ApiVersionsRequest(clientSoftwareName: "logbroker-tests", clientSoftwareVersion: "1.0")
                let response = try await connection.send(request, version: version)
                #expect(response.errorCode == 0)
                #expect(response.apiKeys == table.advertised)
                #expect(response.throttleTimeMs == 0)
                #expect(response.supportedFeatures.isEmpty && response.finalizedFeatures.isEmpty)
            }
        }
    }

    @Test func flexibleVersionsUseHeaderV0AndWriteNoTaggedFields() async throws {
        try await withServer { port in
            try await RawConnection.withConnection(port: port) { connection in
                let body: [UInt8] = [2, 0x61, 2, 0x31, 0]  // compact "a", compact "1", no tags
                try await connection.writeFrame(
                    requestFrame(apiKey: 18, version: 3, correlationID: 77, flexibleHeader: true, body: body)
                )
                let frame = try #require(await connection.readFrame())
                // size, correlation id (header v0: no tag section), error 0, compact array of one (18, 0, 4, no
                // tags), throttle 0, and an empty tag section: the four default-valued tagged fields are omitted.
                #expect(frame == [0, 0, 0, 19, 0, 0, 0, 77, 0, 0, 2, 0, 18, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0])
            }
        }
    }

    /// Kafka's answer to an ApiVersions version it does not support: header v0 and the v0 body with error 35 and
    /// ApiVersions' own range only.
    static let unsupportedVersionAnswer: [UInt8] = [0, 35, 0, 0, 0, 1, 0, 18, 0, 0, 0, 4]

    @Test(arguments: [Int16(5), 9, 127, Int16.max])
    func aNewerVersionGetsUnsupportedVersionInTheV0Layout(version: Int16) async throws {
        try await withServer { port in
            try await RawConnection.withConnection(port: port) { connection in
                // A version this broker cannot know: the body is unreadable and is not read.
                let frame = requestFrame(
                    apiKey: 18,
                    version: version,
                    correlationID: 5,
                    flexibleHeader: true,
                    body: [0xEE, 0xEE]
                )
                try await connection.writeFrame(frame)
                let response = try #require(await connection.readFrame())
                #expect(response == [0, 0, 0, 16, 0, 0, 0, 5] + Self.unsupportedVersionAnswer)
                // The connection stays open: the client retries at a version the broker speaks.
                try await connection.writeFrame(
                    requestFrame(apiKey: 18, version: 0, correlationID: 6, flexibleHeader: false)
                )
                let retry = try #require(await connection.readFrame())
                #expect(retry == [0, 0, 0, 16, 0, 0, 0, 6, 0, 0, 0, 0, 0, 1, 0, 18, 0, 0, 0, 4])
            }
        }
    }

    @Test(arguments: [Int16(-1), Int16.min])
    func aGarbageVersionGetsUnsupportedVersionToo(version: Int16) async throws {
        try await withServer { port in
            try await RawConnection.withConnection(port: port) { connection in
                try await connection.writeFrame(
                    requestFrame(apiKey: 18, version: version, correlationID: 8, flexibleHeader: false)
                )
                let response = try #require(await connection.readFrame())
                #expect(response == [0, 0, 0, 16, 0, 0, 0, 8] + Self.unsupportedVersionAnswer)
            }
        }
    }

    @Test func theGeneratedClientDecodesTheUnsupportedVersionAnswer() async throws {
        // The client reads the v0 layout after failing at v4, as Kafka's Java client does.
        let answer = ApiVersionsResponse(
            errorCode: ErrorCode.unsupportedVersion.rawValue,
            apiKeys: [.init(apiKey: 18, minVersion: 0, maxVersion: 4)]
        )
        var frame = ByteBuffer(bytes: [0, 0, 0, 1])
        frame.writeBytes(Self.unsupportedVersionAnswer)
        #expect(try KafkaFrame.decodeResponse(frame, to: ApiVersionsRequest.self, version: 4).response == answer)
    }

    @Test func anInvalidSoftwareNameGetsInvalidRequest() async throws {
        try await withServer { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let request = ApiVersionsRequest(clientSoftwareName: "-bad name", clientSoftwareVersion: "1")
                let response = try await connection.send(request, version: 3)
                #expect(response.errorCode == ErrorCode.invalidRequest.rawValue)
                #expect(response.apiKeys.isEmpty)
                // kafka-python's name and version pass.
                let good = ApiVersionsRequest(clientSoftwareName: "kafka-python", clientSoftwareVersion: "3.0.12")
                #expect(try await connection.send(good, version: 4).errorCode == 0)
            }
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await withServer { port in
            try await RawConnection.withConnection(port: port) { connection in
                var bytes: [UInt8] = []
                for (id, version) in [(1, Int16(0)), (2, 9), (3, 2), (4, 1)] as [(Int32, Int16)] {
                    let frame = requestFrame(
                        apiKey: 18,
                        version: version,
                        correlationID: id,
                        flexibleHeader: version >= 3
                    )
                    bytes += withUnsafeBytes(of: Int32(frame.count).bigEndian, Array.init) + frame
                }
                try await connection.write(bytes)
                for id in [1, 2, 3, 4] as [Int32] {
                    let frame = try #require(await connection.readFrame())
                    #expect(Array(frame[4..<8]) == withUnsafeBytes(of: id.bigEndian, Array.init))
                }
            }
        }
    }
}
