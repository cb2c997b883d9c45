import Foundation
import KafkaMessages
import KafkaNIO
import KafkaRecords
import KafkaWire
import LogBrokerServer
import LogStorage
import NIOCore
import Replication
import Testing

/// A Metadata handler that advertises only v1–4 and answers with no brokers, to test version checks on an API
/// other than ApiVersions.
struct StubMetadataHandler: KafkaHandler {
    typealias Request = MetadataRequest
    var versions: ClosedRange<Int16> { 1...4 }
    func handle(_ request: MetadataRequest, context: RequestContext) async -> MetadataResponse {
        MetadataResponse(clusterID: "stub")
    }
}

/// A Metadata handler (v1–4) that answers with the first topic asked for as the cluster id, so a test can tell
/// which request an answer belongs to.
struct EchoMetadataHandler: KafkaHandler {
    typealias Request = MetadataRequest
    var versions: ClosedRange<Int16> { 1...4 }
    func handle(_ request: MetadataRequest, context: RequestContext) async -> MetadataResponse {
        MetadataResponse(clusterID: request.topics?.first?.name ?? nil)
    }
}

@Suite struct ConnectionTests {
    /// Sends ApiVersions v3 on `connection` and expects a normal answer.
    static func expectWorking(_ connection: KafkaClientConnection) async throws {
        let response = try await connection.send(
            ApiVersionsRequest(clientSoftwareName: "t", clientSoftwareVersion: "1"),
            version: 3
        )
        #expect(response.errorCode == 0)
    }

    @Test func registeredHandlersAreAdvertisedAndVersionChecked() async throws {
        var table = HandlerTable()
        table.register(StubMetadataHandler())
        #expect(table.advertised.map(\.apiKey) == [3, 18])
        let log = CapturedLog()
        try await withServer(handlers: table, log: log) { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { bystander in
                let versions = try await bystander.send(ApiVersionsRequest(), version: 0)
                #expect(
                    versions.apiKeys == [
                        .init(apiKey: 3, minVersion: 1, maxVersion: 4), .init(apiKey: 18, minVersion: 0, maxVersion: 4),
                    ]
                )
                #expect(try await bystander.send(MetadataRequest(), version: 4).clusterID == "stub")

                // Metadata v9 is generated but not advertised: Kafka closes the connection.
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                    await #expect(throws: KafkaNIOError.connectionClosed) {
                        try await connection.send(MetadataRequest(), version: 9)
                    }
                }
                // v0 is below the advertised range: closed too.
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                    await #expect(throws: KafkaNIOError.connectionClosed) {
                        try await connection.send(MetadataRequest(), version: 0)
                    }
                }
                try await Self.expectWorking(bystander)
            }
        }
        #expect(
            log.all.contains {
                $0.contains("closing connection: Metadata(3) v9 is outside the supported versions 1...4")
            }
        )
    }

    @Test func anUnadvertisedAPIClosesOnlyItsConnection() async throws {
        let log = CapturedLog()
        try await withServer(log: log) { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { bystander in
                try await Self.expectWorking(bystander)
                // Metadata has generated codecs but no handler yet.
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                    await #expect(throws: KafkaNIOError.connectionClosed) {
                        try await connection.send(MetadataRequest(), version: 4)
                    }
                }
                try await Self.expectWorking(bystander)
            }
        }
        #expect(log.all.contains { $0.contains("Metadata(3) is not supported by this broker") })
    }

    @Test(arguments: [Int16(27), 75, 1000, -1, Int16.max])
    func anUnknownAPIKeyClosesOnlyItsConnection(key: Int16) async throws {
        let log = CapturedLog()
        try await withServer(log: log) { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { bystander in
                try await RawConnection.withConnection(port: port) { connection in
                    try await connection.writeFrame(
                        requestFrame(apiKey: key, version: 0, correlationID: 1, flexibleHeader: false)
                    )
                    #expect(await connection.isClosedByServer())
                }
                try await Self.expectWorking(bystander)
            }
        }
        #expect(log.all.contains { $0.contains("unknown API key \(key)") || $0.contains("is not supported") })
    }

    /// Hostile byte streams, each of which must close its own connection and nothing else.
    static let hostileInputs: [(name: String, bytes: [UInt8], finish: Bool)] = {
        var generator = SplitMix64(seed: 0x5EED)
        let noise = (0..<4096).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        return [
            ("2 GB length prefix", [0x7F, 0xFF, 0xFF, 0xFF, 0, 18, 0, 0], false),
            ("length just above socket.request.max.bytes", [0x06, 0x40, 0x00, 0x01], false),
            ("negative length", [0xFF, 0xFF, 0xFF, 0xFF], false),
            ("minimum Int32 length", [0x80, 0, 0, 0], false),
            ("random bytes", noise, false),
            ("a 64-byte frame of random bytes", [0, 0, 0, 64] + noise, false),
            ("truncated frame then EOF", [0, 0, 0, 50, 0, 18, 0, 0, 0, 0], true),
            ("empty frame", [0, 0, 0, 0], false),
            ("header longer than its frame", [0, 0, 0, 6, 0, 18, 0, 0, 0, 0], false),
            (
                "malformed ApiVersions v3 body", [0, 0, 0, 14, 0, 18, 0, 3, 0, 0, 0, 1, 0xFF, 0xFF, 0, 0x7F, 0x61, 0],
                false
            ),
        ]
    }()

    @Test(arguments: 0..<Self.hostileInputs.count)
    func hostileInputClosesOnlyItsConnection(index: Int) async throws {
        let input = Self.hostileInputs[index]
        let log = CapturedLog()
        try await withServer(log: log) { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { bystander in
                try await Self.expectWorking(bystander)
                try await RawConnection.withConnection(port: port) { connection in
                    try await connection.write(input.bytes)
                    if input.finish { connection.finishWriting() }
                    #expect(await connection.isClosedByServer(), "\(input.name)")
                }
                try await Self.expectWorking(bystander)
            }
            // And new connections are still served.
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) {
                try await Self.expectWorking($0)
            }
        }
        #expect(log.all.contains { $0.hasPrefix("warning closing connection") }, "\(input.name): \(log.all)")
    }

    @Test func aFrameSizeAboveTheLimitIsRefusedBeforeItIsSent() async throws {
        let configuration = try testConfiguration([("socket.request.max.bytes", "100")])
        let log = CapturedLog()
        try await withServer(configuration: configuration, log: log) { port in
            try await RawConnection.withConnection(port: port) { connection in
                try await connection.write([0, 0, 0, 101])  // only the size: refused without waiting for the body
                #expect(await connection.isClosedByServer())
            }
        }
        #expect(log.all.contains { $0.contains("frame too large: 101 bytes declared, at most 100 allowed") })
    }

    /// If shutdown waited for idle connections it would never end (the client here never closes): the time limit
    /// catches that.
    @Test(.timeLimit(.minutes(1)))
    func gracefulShutdownClosesIdleConnections() async throws {
        let idle = try await withServer { port in
            // An idle connection outlives the body; the shutdown that follows must close it, not wait for it.
            let (served, servedContinuation) = AsyncStream.makeStream(of: Void.self)
            let task = Task {
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                    try await Self.expectWorking(connection)
                    servedContinuation.yield()
                    return try await connection.receiveFrame() == nil
                }
            }
            for await _ in served { break }
            return task
        }
        #expect(try await idle.value)
    }

    @Test func pipelinedRequestsEachGetTheirOwnAnswer() async throws {
        var table = HandlerTable()
        table.register(EchoMetadataHandler())
        try await withServer(handlers: table) { port in
            try await KafkaPipelinedConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                // Sent from 200 tasks at once: the answers come back in the broker's order, and each must reach
                // the request that named its topic.
                let answers = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                    for index in 0..<200 {
                        group.addTask {
                            let request = MetadataRequest(topics: [.init(name: "topic-\(index)")])
                            return (index, try await connection.send(request, version: 4).clusterID)
                        }
                    }
                    return try await group.reduce(into: [Int: String?]()) { $0[$1.0] = $1.1 }
                }
                #expect(answers.count == 200)
                #expect(answers.allSatisfy { $0.value == "topic-\($0.key)" })
                #expect(connection.isOpen)
            }
        }
    }

    @Test func aPipelinedConnectionThatTheBrokerClosesFailsEveryLaterRequest() async throws {
        var table = HandlerTable()
        table.register(EchoMetadataHandler())
        try await withServer(handlers: table) { port in
            try await KafkaPipelinedConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let first = try await connection.send(MetadataRequest(topics: [.init(name: "a")]), version: 4)
                #expect(first.clusterID == "a")
                // v9 is not advertised: the broker closes the connection instead of answering.
                await #expect(throws: KafkaNIOError.connectionClosed) {
                    try await connection.send(MetadataRequest(), version: 9)
                }
                #expect(!connection.isOpen)
                await #expect(throws: KafkaNIOError.connectionClosed) {
                    try await connection.send(MetadataRequest(), version: 4)
                }
                await connection.closed()
            }
        }
    }
}

/// A small seeded generator, so "random bytes" are the same on every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A Heartbeat handler that says when it starts and then takes its time, to show that graceful shutdown lets a
/// request in flight finish.
struct SlowHeartbeatHandler: KafkaHandler {
    typealias Request = HeartbeatRequest
    let started: AsyncStream<Void>.Continuation
    var versions: ClosedRange<Int16> { 0...4 }
    func handle(_ request: HeartbeatRequest, context: RequestContext) async -> HeartbeatResponse {
        self.started.yield()
        try? await Task.sleep(for: .milliseconds(300))
        return HeartbeatResponse(errorCode: 0)
    }
}

@Suite struct GracefulShutdownTests {
    @Test func aRequestInFlightIsAnsweredBeforeItsConnectionCloses() async throws {
        let (started, startedContinuation) = AsyncStream.makeStream(of: Void.self)
        var table = HandlerTable()
        table.register(SlowHeartbeatHandler(started: startedContinuation))
        let inFlight = try await withServer(handlers: table) { port in
            let task = Task {
                try await RawConnection.withConnection(port: port) { connection in
                    // Group "g", generation 1, member "m".
                    let body: [UInt8] = [0, 1, 0x67] + [0, 0, 0, 1] + [0, 1, 0x6D]
                    try await connection.writeFrame(
                        requestFrame(apiKey: 12, version: 0, correlationID: 9, flexibleHeader: false, body: body)
                    )
                    let response = await connection.readFrame()
                    return (response, await connection.isClosedByServer())
                }
            }
            for await _ in started { break }  // shutdown starts while the handler sleeps
            return task
        }
        let (response, closed) = try await inFlight.value
        #expect(response == [0, 0, 0, 6, 0, 0, 0, 9, 0, 0])
        #expect(closed)
    }
}

@Suite struct ListenerTests {
    @Test func aPortInUseIsABindErrorNamingTheListener() async throws {
        try await withServer { port in
            let configuration = try testConfiguration([("listeners", "PLAINTEXT://127.0.0.1:\(port)")])
            do {
                let server = try await KafkaServer.bind(
                    configuration: configuration,
                    listeners: configuration.listeners,
                    handlers: HandlerTable(),
                    logger: CapturedLog().logger()
                )
                Issue.record("bound \(server.localAddresses) twice")
            } catch let error as LogBrokerServerError {
                #expect("\(error)".hasPrefix("Cannot listen on PLAINTEXT://127.0.0.1:\(port): "))
            }
        }
    }

    @Test func everyListenerIsServed() async throws {
        let configuration = try testConfiguration([
            ("listeners", "PLAINTEXT://127.0.0.1:0,SECOND://127.0.0.1:0"),
            ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SECOND:PLAINTEXT"),
        ])
        let server = try await KafkaServer.bind(
            configuration: configuration,
            listeners: configuration.listeners,
            handlers: HandlerTable(),
            logger: CapturedLog().logger()
        )
        let ports = server.localAddresses.compactMap(\.port)
        #expect(ports.count == 2)
        let task = Task { try await server.run() }
        for port in ports {
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let response = try await connection.send(ApiVersionsRequest(), version: 2)
                #expect(response.errorCode == 0)
            }
        }
        task.cancel()
        _ = await task.result
    }
}

/// The hostile-input checklist of the broker issue against the real data path (Produce, Fetch over a log on disk):
/// each hostile request gets Kafka's error or a closed connection, and a bystander client keeps producing and
/// consuming on its own connection before and after each one.
@Suite struct HostileDataPathTests {
    static let topic = "hostile"

    /// Runs `body` with a server over a `BrokerStorage` in a temporary directory, `hostile-0` and `golden-0` (the
    /// golden frames' topic) led at epoch 1.
    static func withDataPath(
        log: CapturedLog = CapturedLog(),
        _ body: @Sendable (Int) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = try testConfiguration([("log.dirs", directory)])
        let storage = try BrokerStorage(configuration: configuration, logger: log.logger())
        defer {
            try? storage.logManager.shutdown()
            storage.ioPool.shutdown()
        }
        for topic in [Self.topic, "golden"] {
            try await storage.replicas.becomeLeader(topic: topic, partition: 0, topicID: .zero, leaderEpoch: 1)
        }
        var handlers = HandlerTable()
        storage.register(in: &handlers)
        try await withServer(handlers: handlers, configuration: configuration, log: log, body)
    }

    static func batch(_ values: [String]) throws -> ByteBuffer {
        var builder = RecordBatchBuilder(codec: .none)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for value in values { builder.append(timestamp: now, key: nil, value: ByteBuffer(string: value)) }
        return try builder.build().buffer
    }

    static func produce(_ records: ByteBuffer) -> ProduceRequest {
        ProduceRequest(
            acks: 1,
            timeoutMs: 10_000,
            topicData: [.init(name: Self.topic, partitionData: [.init(index: 0, records: records)])]
        )
    }

    /// Recomputes a v2 batch's CRC-32C (over attributes to the end), so a lie elsewhere is not caught as corruption.
    static func fixCRC(_ batch: inout ByteBuffer) {
        let start = batch.readerIndex
        let covered = batch.getSlice(at: start + 21, length: batch.readableBytes - 21)!
        batch.setInteger(CRC32C.checksum(covered), at: start + 17)
    }

    /// The bystander's round: produce one record, then fetch from its offset and find it.
    static func produceAndConsume(_ connection: KafkaClientConnection, _ value: String) async throws {
        let produced = try await connection.send(Self.produce(try Self.batch([value])), version: 9)
        let partition = try #require(produced.responses.first?.partitionResponses.first)
        #expect(partition.errorCode == 0)
        let fetch = FetchRequest(
            maxWaitMs: 0,
            minBytes: 1,
            maxBytes: 1 << 20,
            topics: [
                .init(
                    topic: Self.topic,
                    partitions: [.init(partition: 0, fetchOffset: partition.baseOffset, partitionMaxBytes: 1 << 20)]
                )
            ]
        )
        let fetched = try await connection.send(fetch, version: 12)
        var records = try #require(fetched.responses.first?.partitions.first?.records)
        var splitter = RecordBatchSplitter(records)
        let batch = try #require(try splitter.next())
        #expect(batch.baseOffset == partition.baseOffset)
        let bytes = records.readBytes(length: records.readableBytes) ?? []
        #expect(String(decoding: bytes, as: UTF8.self).contains(value))
    }

    /// A Produce v3 frame of exactly 40 bytes whose topic array claims `count` entries.
    static func produceWithArrayCount(_ count: UInt32) -> [UInt8] {
        var body = ByteBuffer()
        body.writeInteger(Int16(-1))  // transactional_id: null
        body.writeInteger(Int16(1))  // acks
        body.writeInteger(Int32(1000))  // timeout_ms
        body.writeInteger(count)  // topic_data count
        var frame = requestFrame(
            apiKey: 0,
            version: 3,
            correlationID: 9,
            flexibleHeader: false,
            body: Array(body.readableBytesView)
        )
        frame += [UInt8](repeating: 0, count: 40 - frame.count)
        return frame
    }

    @Test(arguments: [UInt32(1) << 31, UInt32(Int32.max), UInt32(0xFFFF_FFFE)])
    func anArrayCountFarAboveTheBytesClosesOnlyItsConnection(count: UInt32) async throws {
        let log = CapturedLog()
        try await Self.withDataPath(log: log) { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { bystander in
                try await Self.produceAndConsume(bystander, "before-\(count)")
                try await RawConnection.withConnection(port: port) { connection in
                    let frame = Self.produceWithArrayCount(count)
                    #expect(frame.count == 40)
                    try await connection.writeFrame(frame)
                    #expect(await connection.isClosedByServer())
                }
                try await Self.produceAndConsume(bystander, "after-\(count)")
            }
        }
        #expect(log.all.contains { $0.contains("malformed Produce(0) v3 request body") }, "\(log.all)")
    }

    /// Unknown keys and versions outside the advertised ranges (Produce 0-11, Fetch 4-12, ListOffsets 0-7,
    /// OffsetForLeaderEpoch 2-4) close their connection, as Kafka's failed parse does; the bystander is unaffected.
    @Test(arguments: [
        (Int16(0), Int16(12)), (1, 3), (1, 13), (2, 8), (2, 9), (23, 1), (23, 5), (27, 0), (1000, 0), (-1, 0),
    ])
    func anUnknownKeyOrUnsupportedVersionClosesOnlyItsConnection(key: Int16, version: Int16) async throws {
        try await Self.withDataPath { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { bystander in
                try await Self.produceAndConsume(bystander, "before")
                try await RawConnection.withConnection(port: port) { connection in
                    let firstFlexible: [Int16: Int16] = [0: 9, 1: 12, 2: 6, 23: 4]
                    let flexible = firstFlexible[key].map { version >= $0 } ?? false
                    try await connection.writeFrame(
                        requestFrame(apiKey: key, version: version, correlationID: 5, flexibleHeader: flexible)
                    )
                    #expect(await connection.isClosedByServer(), "key \(key) v\(version)")
                }
                try await Self.produceAndConsume(bystander, "after")
            }
        }
    }

    @Test func anApiVersionsAtAnUnknownVersionGetsTheV0ErrorBody() async throws {
        try await Self.withDataPath { port in
            try await RawConnection.withConnection(port: port) { connection in
                let frame = requestFrame(apiKey: 18, version: 9, correlationID: 77, flexibleHeader: true)
                try await connection.writeFrame(frame)
                let response = try #require(await connection.readFrame())
                var buffer = ByteBuffer(bytes: response)
                buffer.moveReaderIndex(forwardBy: 4)
                #expect(buffer.readInteger(as: Int32.self) == 77)
                #expect(buffer.readInteger(as: Int16.self) == 35)  // UNSUPPORTED_VERSION, then the v0 api_keys
            }
        }
    }

    /// Byte streams that must close their own connection, sent while the bystander produces and consumes.
    @Test(arguments: 0..<ConnectionTests.hostileInputs.count)
    func hostileBytesCloseOnlyTheirConnectionWhileDataFlows(index: Int) async throws {
        let input = ConnectionTests.hostileInputs[index]
        try await Self.withDataPath { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { bystander in
                try await Self.produceAndConsume(bystander, "before-\(index)")
                try await RawConnection.withConnection(port: port) { connection in
                    try await connection.write(input.bytes)
                    if input.finish { connection.finishWriting() }
                    #expect(await connection.isClosedByServer(), "\(input.name)")
                }
                try await Self.produceAndConsume(bystander, "after-\(index)")
            }
        }
    }

    @Test func lyingBatchesGetKafkasErrorsAndTheConnectionStays() async throws {
        try await Self.withDataPath { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { bystander in
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                    let good = try Self.batch(["a", "b", "c"])
                    var cases: [(name: String, records: ByteBuffer, error: Int16)] = []
                    var crc = good
                    crc.setInteger(UInt8(0x42), at: crc.writerIndex - 1)
                    cases.append(("a wrong CRC", crc, 2))  // CORRUPT_MESSAGE
                    var count = good
                    count.setInteger(Int32(4), at: count.readerIndex + 57)
                    Self.fixCRC(&count)
                    cases.append(("a record count that disagrees with lastOffsetDelta", count, 87))
                    var both = good
                    both.setInteger(Int32(4), at: both.readerIndex + 57)
                    both.setInteger(Int32(3), at: both.readerIndex + 23)
                    Self.fixCRC(&both)
                    cases.append(("a record count and lastOffsetDelta above the records present", both, 87))
                    var fewer = good
                    fewer.setInteger(Int32(2), at: fewer.readerIndex + 57)
                    fewer.setInteger(Int32(1), at: fewer.readerIndex + 23)
                    Self.fixCRC(&fewer)
                    cases.append(("a record count below the records present", fewer, 87))
                    var zero = good
                    zero.setInteger(Int32(0), at: zero.readerIndex + 57)
                    Self.fixCRC(&zero)
                    cases.append(("a record count of zero", zero, 87))
                    for (number, hostile) in cases.enumerated() {
                        try await Self.produceAndConsume(bystander, "bystander-\(number)")
                        let response = try await connection.send(Self.produce(hostile.records), version: 9)
                        let partition = try #require(response.responses.first?.partitionResponses.first)
                        #expect(partition.errorCode == hostile.error, "\(hostile.name)")
                        #expect(partition.baseOffset == -1, "\(hostile.name)")
                    }
                    // Nothing of the refused batches was written: the log holds only the bystander's records.
                    try await Self.produceAndConsume(bystander, "last")
                    let latest = try await connection.send(
                        ListOffsetsRequest(
                            replicaID: -1,
                            topics: [.init(name: Self.topic, partitions: [.init(partitionIndex: 0, timestamp: -1)])]
                        ),
                        version: 7
                    )
                    #expect(latest.topics.first?.partitions.first?.offset == Int64(cases.count + 1))
                }
            }
        }
    }
}
