import Foundation
import KafkaMessages
import KafkaRecords
import KafkaWire
import NIOCore
import Testing

/// Request frames captured from real clients (Debian's kcat on librdkafka 2.0.2, confluent-kafka 2.16.1,
/// kafka-python 3.0.12) by `Tests/GoldenCapture/capture.py`. Each must decode with LogBroker's own codecs to what
/// the client was asked to send, and re-encode to the very bytes the client wrote.
@Suite struct GoldenFrameTests {
    static let directory = packageRoot.appendingPathComponent("Tests/KafkaMessagesTests/Fixtures/golden")
    static let frames: [GoldenFrame] = {
        do {
            let data = try Data(contentsOf: directory.appendingPathComponent("manifest.json"))
            return try JSONDecoder().decode(GoldenManifest.self, from: data).frames
        } catch {
            fatalError("cannot read the golden manifest: \(error)")
        }
    }()

    @Test func everyClientAndCodecIsCaptured() {
        let clients = Set(Self.frames.map(\.client))
        #expect(clients == ["kcat", "confluent-kafka", "kafka-python"])
        for client in clients {
            let codecs = Set(Self.frames.filter { $0.client == client }.compactMap(\.codec))
            #expect(codecs == ["none", "gzip", "snappy", "lz4", "zstd"], "\(client) sent \(codecs)")
        }
    }

    @Test(arguments: frames)
    func decodesAndReencodesIdentically(frame: GoldenFrame) throws {
        let bytes = try frame.bytes()
        var reader = WireReader(buffer: bytes)
        let api = try #require(KafkaMessageRegistry.api(APIKey(rawValue: frame.apiKey)))
        let headerVersion = api.requestHeaderVersion(for: frame.apiVersion)
        let header = try RequestHeader(from: &reader, version: headerVersion)
        #expect(header.requestApiKey == frame.apiKey)
        #expect(header.requestApiVersion == frame.apiVersion)
        #expect(header.correlationID == frame.correlationID)
        #expect(header.clientID == frame.clientID)

        let body = try api.requestType.init(decoding: &reader, version: frame.apiVersion)
        var writer = WireWriter()
        header.encode(into: &writer, version: headerVersion)
        body.encode(into: &writer, version: frame.apiVersion)
        #expect(writer.buffer == bytes, "\(frame.file) does not re-encode to the client's bytes")
    }

    @Test(arguments: frames.filter { $0.apiName == "Produce" })
    func produceCarriesOneValidMagic2BatchWithTheAskedCodec(frame: GoldenFrame) throws {
        let request: ProduceRequest = try frame.decodeBody()
        #expect(Int(request.acks) == frame.acks)
        #expect(request.transactionalID == nil)
        let topic = try #require(request.topicData.first)
        #expect(request.topicData.count == 1)
        #expect(topic.name == frame.topic)
        let partition = try #require(topic.partitionData.first)
        #expect(topic.partitionData.count == 1)
        #expect(partition.index == frame.partition)

        var splitter = RecordBatchSplitter(try #require(partition.records))
        let batch = try #require(try splitter.next())
        #expect(try splitter.next() == nil, "Produce v3+ carries exactly one batch per partition")
        #expect(splitter.remainingBytes == 0)
        #expect(batch.magic == 2)
        let codec = try #require(batch.attributes.compressionCodec)
        #expect(codec.description == frame.codec)

        var validator = RecordBatchValidator(options: .init(refuseControlBatches: true))
        let summary = try validator.validate(batch)
        let expected = try #require(frame.records)
        #expect(summary.recordCount == expected.count)

        var iterator = try batch.makeRecordIterator(compression: CompressionContext(), maxDecompressedBytes: 1 << 20)
        let records = try iterator.collect()
        #expect(records.count == expected.count)
        for (record, sent) in zip(records, expected) {
            #expect(record.key.map { String(buffer: $0) } == sent.key)
            #expect(record.value.map { String(buffer: $0) } == sent.value)
            #expect(record.headers.map { $0.key } == sent.headers.map(\.key))
            #expect(record.headers.map { $0.value.map { String(buffer: $0) } } == sent.headers.map(\.value))
        }
    }

    @Test(arguments: frames.filter { $0.apiName == "ListOffsets" })
    func listOffsetsAsksForTheTimestamp(frame: GoldenFrame) throws {
        let request: ListOffsetsRequest = try frame.decodeBody()
        let partition = try #require(request.topics.first?.partitions.first)
        #expect(request.topics.first?.name == "golden")
        #expect(partition.timestamp == frame.timestamp)
    }
}

struct GoldenManifest: Decodable {
    var frames: [GoldenFrame]
}

struct GoldenFrame: Decodable, Sendable, CustomTestStringConvertible {
    struct SentRecord: Decodable, Sendable {
        struct Header: Decodable, Sendable {
            var key: String
            var value: String?
        }
        var key: String?
        var value: String?
        var headers: [Header]
    }

    var file: String
    var client: String
    var apiKey: Int16
    var apiName: String
    var apiVersion: Int16
    var correlationID: Int32
    var clientID: String?
    var codec: String?
    var topic: String?
    var partition: Int32?
    var acks: Int?
    var timestamp: Int64?
    var records: [SentRecord]?

    enum CodingKeys: String, CodingKey {
        case file, client, codec, topic, partition, acks, timestamp, records
        case apiKey = "api_key"
        case apiName = "api_name"
        case apiVersion = "api_version"
        case correlationID = "correlation_id"
        case clientID = "client_id"
    }

    var testDescription: String { self.file }

    func bytes() throws -> ByteBuffer {
        ByteBuffer(bytes: try Data(contentsOf: GoldenFrameTests.directory.appendingPathComponent(self.file)))
    }

    /// The body after the request header, decoded as `T` at the captured version.
    func decodeBody<T: KafkaRequest>(as type: T.Type = T.self) throws -> T {
        var reader = WireReader(buffer: try self.bytes())
        _ = try RequestHeader(from: &reader, version: T.requestHeaderVersion(for: self.apiVersion))
        return try T(decoding: &reader, version: self.apiVersion)
    }
}
