import KafkaMessages
import KafkaNIO
import KafkaWire
import NIOCore
import Synchronization

/// One open connection to a broker, shared by every task of a client. Requests are pipelined: each goes out at
/// once, at the highest version both sides speak, without waiting for the answers to earlier ones (ApiVersions is
/// asked once, right after connecting; a broker that does not know v3 gets v0, KIP-511). Once the connection
/// fails, every waiting and later request fails with an error naming the broker, and `isAlive` turns false so the
/// client opens a new one.
///
/// Thread-safe: the connection lives in its own task until it fails or this object goes away.
final class BrokerConnection: Sendable {
    let host: String
    let port: Int
    private let state: ConnectionState
    private let task: Task<Void, Never>

    var isAlive: Bool { self.state.isAlive }
    /// Why the connection failed, once it has.
    var failure: ClientError? { self.state.failure }
    var address: String { "\(self.host):\(self.port)" }

    init(host: String, port: Int, clientID: String) {
        self.host = host
        self.port = port
        let state = ConnectionState()
        self.state = state
        let address = "\(host):\(port)"
        self.task = Task {
            let connected = Atomic(false)
            do {
                let configuration = KafkaPipelinedConnection.Configuration(clientID: clientID)
                try await KafkaPipelinedConnection.withConnection(host: host, port: port, configuration: configuration) {
                    connection in
                    connected.store(true, ordering: .relaxed)
                    let versions = try await Self.negotiate(on: connection)
                    state.open(Session(connection: connection, versions: versions))
                    await withTaskCancellationHandler {
                        await connection.closed()
                    } onCancel: {
                        connection.close()
                    }
                }
                state.fail(ClientError("broker \(address): the connection closed"))
            } catch where !connected.load(ordering: .relaxed) {
                state.fail(ClientError("cannot connect to \(address): \(ConnectFailure.reason(error))"))
            } catch {
                state.fail(ClientError("broker \(address): \(error)"))
            }
        }
    }

    deinit {
        self.task.cancel()
    }

    /// The versions the broker advertises, by API key.
    private static func negotiate(on connection: KafkaPipelinedConnection) async throws -> [Int16: ClosedRange<Int16>] {
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

    /// A request written whose answer has not been read yet (see `write`).
    struct PendingResponse<Request: KafkaRequest>: Sendable {
        let pending: KafkaPipelinedConnection.PendingResponse<Request>
        let address: String
        var version: Int16 { self.pending.version }

        /// - Throws: `ClientError` naming the broker when the connection failed before the answer.
        func response() async throws -> Request.Response {
            do {
                return try await self.pending.response()
            } catch {
                throw ClientError("broker \(self.address): \(error)")
            }
        }
    }

    /// Sends the request `build` makes for the version chosen: the highest both the broker and `supported` allow.
    /// - Throws: `ClientError` when the broker speaks no version in `supported`, or the connection failed.
    func send<Request: KafkaRequest>(
        supported: ClosedRange<Int16> = Request.validVersions,
        _ build: @escaping @Sendable (Int16) -> Request
    ) async throws -> (response: Request.Response, version: Int16) {
        let pending = try await self.write(supported: supported, build)
        return (try await pending.response(), pending.version)
    }

    /// Writes the request `build` makes, as `send` does, and returns once it is written: requests written one
    /// after another go out in that order, and their answers can be awaited side by side.
    func write<Request: KafkaRequest>(
        supported: ClosedRange<Int16> = Request.validVersions,
        _ build: @escaping @Sendable (Int16) -> Request
    ) async throws -> PendingResponse<Request> {
        let address = self.address
        return try await self.run(Request.self, supported: supported) { connection, version in
            PendingResponse(pending: try await connection.write(build(version), version: version), address: address)
        }
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    func sendWithoutResponse<Request: KafkaRequest>(
        supported: ClosedRange<Int16> = Request.validVersions,
        _ build: @escaping @Sendable (Int16) -> Request
    ) async throws {
        try await self.run(Request.self, supported: supported) { connection, version in
            try await connection.sendWithoutResponse(build(version), version: version)
        }
    }

    /// Runs `work` on the connection, once it is open, at the version chosen for `Request`.
    private func run<Request: KafkaRequest, Result: Sendable>(
        _ type: Request.Type,
        supported: ClosedRange<Int16>,
        _ work: (KafkaPipelinedConnection, Int16) async throws -> Result
    ) async throws -> Result {
        let session = try await self.state.session()
        guard let advertised = session.versions[Request.apiKey.rawValue], advertised.overlaps(supported) else {
            throw ClientError("broker \(self.address) does not support \(Request.apiKey) \(supported)")
        }
        do {
            return try await work(session.connection, min(advertised.upperBound, supported.upperBound))
        } catch {
            throw ClientError("broker \(self.address): \(error)")
        }
    }
}

/// The open connection and the versions its broker speaks.
private struct Session: Sendable {
    let connection: KafkaPipelinedConnection
    let versions: [Int16: ClosedRange<Int16>]
}

/// Where the connection's task is: connecting (with the requests waiting for it), open, or failed; shared by the
/// connection and its task.
private final class ConnectionState: Sendable {
    private enum Phase {
        case connecting([CheckedContinuation<Session, any Error>])
        case open(Session)
        case failed(ClientError)
    }

    private let phase = Mutex(Phase.connecting([]))

    var isAlive: Bool {
        self.phase.withLock { phase in
            switch phase {
            case .connecting: true
            case .open(let session): session.connection.isOpen
            case .failed: false
            }
        }
    }

    var failure: ClientError? {
        self.phase.withLock { phase in
            if case .failed(let error) = phase { return error }
            return nil
        }
    }

    /// The open session, once connected and negotiated.
    func session() async throws -> Session {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<Session, ClientError>? = self.phase.withLock { phase in
                switch phase {
                case .connecting(var waiters):
                    waiters.append(continuation)
                    phase = .connecting(waiters)
                    return nil
                case .open(let session): return .success(session)
                case .failed(let error): return .failure(error)
                }
            }
            if let ready { continuation.resume(with: ready.mapError { $0 as any Error }) }
        }
    }

    func open(_ session: Session) {
        self.settle(.open(session)).forEach { $0.resume(returning: session) }
    }

    func fail(_ error: ClientError) {
        self.settle(.failed(error)).forEach { $0.resume(throwing: error) }
    }

    /// Moves to `next` and returns the requests that waited for the connection.
    private func settle(_ next: Phase) -> [CheckedContinuation<Session, any Error>] {
        self.phase.withLock { phase in
            defer { phase = next }
            if case .connecting(let waiters) = phase { return waiters }
            return []
        }
    }
}
