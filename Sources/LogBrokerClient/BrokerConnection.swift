import KafkaMessages
import KafkaNIO
import KafkaWire
import NIOCore
import Synchronization

/// One open connection to a broker, shared by every task of a client: requests queue and go one at a time, each
/// at the highest version both sides speak (ApiVersions is asked once, right after connecting; a broker that does
/// not know v3 gets v0, KIP-511). Once the connection fails, every queued and later request fails with an error
/// naming the broker, and `isAlive` turns false so the client opens a new one.
///
/// Thread-safe: the connection lives in its own task; callers hand it jobs.
final class BrokerConnection: Sendable {
    /// A job runs in the connection's task with the connection and the negotiated versions; returns false when
    /// the connection broke.
    private typealias Job = @Sendable (KafkaClientConnection?, [Int16: ClosedRange<Int16>]) async -> Bool

    let host: String
    let port: Int
    private let jobs: AsyncStream<Job>.Continuation
    private let state: ConnectionState

    var isAlive: Bool { self.state.alive.load(ordering: .relaxed) }
    var address: String { "\(self.host):\(self.port)" }

    init(host: String, port: Int, clientID: String) {
        self.host = host
        self.port = port
        let (stream, jobs) = AsyncStream.makeStream(of: Job.self)
        self.jobs = jobs
        let state = ConnectionState()
        self.state = state
        Task {
            do {
                let configuration = KafkaClientConnection.Configuration(clientID: clientID)
                try await KafkaClientConnection.withConnection(host: host, port: port, configuration: configuration) {
                    connection in
                    let versions = try await Self.negotiate(on: connection)
                    for await job in stream {
                        guard await job(connection, versions) else { break }
                    }
                }
            } catch {}
            state.alive.store(false, ordering: .relaxed)
            jobs.finish()
            for await job in stream { _ = await job(nil, [:]) }
        }
    }

    deinit {
        self.jobs.finish()
    }

    /// The versions the broker advertises, by API key.
    private static func negotiate(on connection: KafkaClientConnection) async throws -> [Int16: ClosedRange<Int16>] {
        var response = try await connection.send(
            ApiVersionsRequest(clientSoftwareName: "logbroker-client", clientSoftwareVersion: "1.0"),
            version: 3
        )
        if response.errorCode == ErrorCode.unsupportedVersion.rawValue {
            response = try await connection.send(ApiVersionsRequest(), version: 0)
        }
        guard response.errorCode == 0 else { throw ClientError.kafka(response.errorCode, "ApiVersions") }
        var versions: [Int16: ClosedRange<Int16>] = [:]
        for api in response.apiKeys where api.minVersion <= api.maxVersion {
            versions[api.apiKey] = api.minVersion...api.maxVersion
        }
        return versions
    }

    /// Sends the request `build` makes for the version chosen: the highest both the broker and `supported` allow.
    /// - Throws: `ClientError` when the broker speaks no version in `supported`, or the connection failed.
    func send<Request: KafkaRequest>(
        supported: ClosedRange<Int16> = Request.validVersions,
        _ build: @escaping @Sendable (Int16) -> Request
    ) async throws -> (response: Request.Response, version: Int16) {
        try await self.run(Request.self, supported: supported) { connection, version in
            (try await connection.send(build(version), version: version), version)
        }
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    func sendWithoutResponse<Request: KafkaRequest>(
        supported: ClosedRange<Int16> = Request.validVersions,
        _ build: @escaping @Sendable (Int16) -> Request
    ) async throws {
        try await self.run(Request.self, supported: supported) { connection, version in
            let frame = KafkaFrame.request(
                build(version),
                version: version,
                correlationID: connection.takeCorrelationID(),
                clientID: connection.configuration.clientID
            )
            try await connection.sendFrame(frame)
        }
    }

    /// Runs `work` in the connection's task at the version chosen for `Request`, after the requests queued before.
    private func run<Request: KafkaRequest, Result: Sendable>(
        _ type: Request.Type,
        supported: ClosedRange<Int16>,
        _ work: @escaping @Sendable (KafkaClientConnection, Int16) async throws -> Result
    ) async throws -> Result {
        let address = self.address
        return try await withCheckedThrowingContinuation { continuation in
            let job: Job = { connection, versions in
                guard let connection else {
                    continuation.resume(throwing: ClientError("broker \(address) is not reachable"))
                    return false
                }
                guard let advertised = versions[Request.apiKey.rawValue], advertised.overlaps(supported) else {
                    continuation.resume(
                        throwing: ClientError("broker \(address) does not support \(Request.apiKey) \(supported)")
                    )
                    return true
                }
                do {
                    continuation.resume(returning: try await work(connection, min(advertised.upperBound, supported.upperBound)))
                    return true
                } catch {
                    continuation.resume(throwing: ClientError("broker \(address): \(error)"))
                    return false
                }
            }
            if case .terminated = self.jobs.yield(job) {
                continuation.resume(throwing: ClientError("broker \(address) is not reachable"))
            }
        }
    }
}

/// Whether the connection's task still serves requests; shared by the connection and its task.
private final class ConnectionState: Sendable {
    let alive = Atomic<Bool>(true)
}
