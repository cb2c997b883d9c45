import Foundation
import KafkaMessages
import KafkaNIO
import LogBrokerServer
import Testing

/// Answers Metadata v0–12 with an empty cluster, so mutated Metadata frames reach a generated body decoder.
struct EmptyMetadataHandler: KafkaHandler {
    typealias Request = MetadataRequest
    var versions: ClosedRange<Int16> { 0...12 }
    func handle(_ request: MetadataRequest, context: RequestContext) async -> MetadataResponse {
        MetadataResponse()
    }
}

/// A seeded mutation loop over the golden request frames captured from kcat, confluent-kafka and kafka-python:
/// every mutated frame gets a response or a closed connection, never a crash or a hang, and a bystander connection
/// is served throughout. A bounded number of iterations, so it runs in the normal test build.
@Suite struct MutationTests {
    static let goldenDirectory = packageRoot.appendingPathComponent("Tests/KafkaMessagesTests/Fixtures/golden")

    static func goldenFrames() throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        for client in ["kcat", "confluent-kafka", "kafka-python"] {
            let directory = Self.goldenDirectory.appendingPathComponent(client)
            for name in try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
            where name.hasSuffix(".bin") {
                frames.append(Array(try Data(contentsOf: directory.appendingPathComponent(name))))
            }
        }
        return frames
    }

    /// One to four random edits: overwrite a byte, set a 16- or 32-bit field to an extreme, cut the tail, or
    /// insert bytes.
    static func mutate(_ frame: [UInt8], using random: inout SplitMix64) -> [UInt8] {
        var bytes = frame
        for _ in 0..<Int.random(in: 1...4, using: &random) where !bytes.isEmpty {
            let at = Int.random(in: 0..<bytes.count, using: &random)
            switch Int.random(in: 0..<5, using: &random) {
            case 0:
                bytes[at] = UInt8.random(in: 0...255, using: &random)
            case 1:
                let extreme: [UInt8] = [[0x7F, 0xFF], [0xFF, 0xFF], [0x80, 0x00], [0x00, 0x00]].randomElement(
                    using: &random
                )!
                for (offset, byte) in extreme.enumerated() where at + offset < bytes.count { bytes[at + offset] = byte }
            case 2:
                let extreme: [UInt8] = [[0x7F, 0xFF, 0xFF, 0xFF], [0xFF, 0xFF, 0xFF, 0xFF], [0x80, 0, 0, 0]]
                    .randomElement(using: &random)!
                for (offset, byte) in extreme.enumerated() where at + offset < bytes.count { bytes[at + offset] = byte }
            case 3:
                bytes.removeSubrange(at...)
            default:
                bytes.insert(
                    contentsOf: (0..<Int.random(in: 1...8, using: &random)).map { _ in
                        UInt8.random(in: 0...255, using: &random)
                    },
                    at: at
                )
            }
        }
        return bytes
    }

    /// Sends `iterations` mutated `frames` (seeded), each followed by an ApiVersions probe, over as many connections
    /// as the broker closes; `check` runs every `checkEvery` frames and at the end. A mutated Produce may have become
    /// acks=0, which gets no answer: the probe shows the broker moved on either way. Returns how many frames were
    /// answered and how many closed their connection.
    static func mutationLoop(
        port: Int,
        frames: [[UInt8]],
        iterations: Int,
        seed: UInt64,
        checkEvery: Int,
        check: (Int) async throws -> Void
    ) async throws -> (answered: Int, closed: Int) {
        let probe = requestFrame(apiKey: 18, version: 0, correlationID: 0x7EAD_BEEF, flexibleHeader: false)
        let probeID: [UInt8] = [0x7E, 0xAD, 0xBE, 0xEF]
        var random = SplitMix64(seed: seed)
        var answered = 0
        var closed = 0
        var index = 0
        var lastCheck = 0
        while index < iterations {
            // One connection per run of frames; it ends when the broker closes it.
            try await RawConnection.withConnection(port: port) { connection in
                while index < iterations {
                    let frame = Self.mutate(frames[index % frames.count], using: &random)
                    index += 1
                    try await connection.writeFrame(frame)
                    try await connection.writeFrame(probe)
                    while true {
                        guard let response = await connection.readFrame() else {
                            closed += 1
                            return
                        }
                        if Array(response[4..<8]) == probeID { break }
                    }
                    answered += 1
                }
            }
            if index - lastCheck >= checkEvery {
                lastCheck = index
                try await check(index)
            }
        }
        try await check(index)
        return (answered, closed)
    }

    @Test(.timeLimit(.minutes(2)))
    func mutatedGoldenFramesNeverHurtTheBroker() async throws {
        let golden = try Self.goldenFrames()
        try #require(golden.count >= 30, "golden frames missing under \(Self.goldenDirectory.path)")
        // Frames of the APIs served (ApiVersions 18, Metadata 3) three times over, so most mutations reach a body
        // decoder; the others exercise the header and the close path.
        let served = golden.filter { $0.count >= 2 && $0[0] == 0 && ($0[1] == 18 || $0[1] == 3) }
        let frames = golden + served + served + served
        let table = {
            var table = HandlerTable()
            table.register(EmptyMetadataHandler())
            return table
        }()
        let iterations = 600
        let outcomes = try await withServer(handlers: table) { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { bystander in
                try await Self.mutationLoop(
                    port: port, frames: frames, iterations: iterations, seed: 20_261_128, checkEvery: 100
                ) { _ in
                    let response = try await bystander.send(ApiVersionsRequest(), version: 2)
                    #expect(response.apiKeys == table.advertised)
                }
            }
        }
        #expect(outcomes.answered + outcomes.closed == iterations)
        #expect(outcomes.answered > 0 && outcomes.closed > 0, "\(outcomes)")
    }

    /// The same loop against the data path (Produce, Fetch, ListOffsets over a log on disk, the golden frames'
    /// topic led), so mutated produce frames reach the batch checks; a bystander produces and consumes every 50
    /// frames and at the end.
    @Test(.timeLimit(.minutes(2)))
    func mutatedGoldenFramesNeverHurtTheDataPath() async throws {
        let golden = try Self.goldenFrames()
        try #require(golden.count >= 30, "golden frames missing under \(Self.goldenDirectory.path)")
        // Produce (0), Fetch (1) and ListOffsets (2) frames twice more, so most mutations reach a served decoder.
        let served = golden.filter { $0.count >= 2 && $0[0] == 0 && $0[1] <= 2 }
        try #require(!served.isEmpty)
        let frames = golden + served + served
        let iterations = 400
        try await HostileDataPathTests.withDataPath { port in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { bystander in
                let outcomes = try await Self.mutationLoop(
                    port: port, frames: frames, iterations: iterations, seed: 0x00DA_7A9A, checkEvery: 50
                ) { index in
                    try await HostileDataPathTests.produceAndConsume(bystander, "bystander-\(index)")
                }
                #expect(outcomes.answered + outcomes.closed == iterations)
                #expect(outcomes.answered > 0 && outcomes.closed > 0, "\(outcomes)")
            }
        }
    }
}
