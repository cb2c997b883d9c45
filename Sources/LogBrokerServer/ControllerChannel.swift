import ClusterControl
import KafkaMessages
import KafkaNIO
import Logging
import NIOCore
import Synchronization

/// A broker's connection to the active controller's CONTROLLER listener (Kafka's `NodeToControllerChannelManager`):
/// the controller is the one the image follower's election key names, the connection is opened on first use and
/// shared by every request sent through the channel (`KafkaPipelinedConnection`), and it is replaced when the
/// election key names another controller or the connection fails. Each user (the broker's lifecycle, forwarding)
/// has a channel of its own, as Kafka's brokers do, so the heartbeat connection closes only when the broker goes.
///
/// Requests go at the version the caller gives, without an ApiVersions exchange first: both ends are this
/// program, and the controller serves the versions its brokers send.
///
/// Thread safety: an actor; requests sent side by side are pipelined on the one connection.
actor ControllerChannel {
    /// Why a request got no answer.
    enum Failure: Error, CustomStringConvertible {
        /// No controller with an endpoint was elected before the deadline.
        case noController
        /// The controller could not be reached, or the connection failed before the answer.
        case unreachable(controller: Int32, reason: String)

        var description: String {
            switch self {
            case .noController: return "no active controller is known"
            case .unreachable(let node, let reason): return "controller \(node) could not be reached: \(reason)"
            }
        }
    }

    private struct Open {
        var leader: ControllerLeader
        var connection: KafkaPipelinedConnection
    }

    private let follower: ImageFollower
    private let configuration: KafkaPipelinedConnection.Configuration
    private let logger: Logger
    private var open: Open?
    /// A connection being opened, so callers arriving meanwhile share it.
    private var opening: (leader: ControllerLeader, task: Task<KafkaPipelinedConnection, any Error>)?

    /// - Parameter clientID: the request header's client id (the controller's logs name it).
    init(follower: ImageFollower, clientID: String, logger: Logger) {
        self.follower = follower
        self.configuration = KafkaPipelinedConnection.Configuration(clientID: clientID, connectTimeout: .seconds(5))
        self.logger = logger
    }

    /// The controller the election key names now, if it has an endpoint.
    var currentController: ControllerLeader? {
        get async { await self.follower.followed.controller.flatMap { $0.endpoint == nil ? nil : $0 } }
    }

    /// Sends `request` at `version` to the active controller, waiting until `deadline` for one to be elected, and
    /// returns its answer.
    /// - Throws: `Failure.noController` when none is known by the deadline, `unreachable` when the connection
    ///   cannot be opened or fails before the answer (the next request opens a new one).
    func send<Request: KafkaRequest>(
        _ request: Request,
        version: Int16,
        deadline: ContinuousClock.Instant
    ) async throws(Failure) -> Request.Response {
        let (leader, connection) = try await self.connection(deadline: deadline)
        do {
            return try await connection.send(request, version: version)
        } catch {
            self.drop(connection)
            throw .unreachable(controller: leader.nodeID, reason: "\(error)")
        }
    }

    /// Closes the connection (after a NOT_CONTROLLER answer: the next request finds the controller again).
    func reset() {
        if let open = self.open { self.drop(open.connection) }
    }

    /// Closes the connection for good; later requests open a new one.
    func close() {
        self.reset()
        self.opening?.task.cancel()
        self.opening = nil
    }

    private func drop(_ connection: KafkaPipelinedConnection) {
        connection.close()
        if self.open?.connection === connection { self.open = nil }
    }

    /// The open connection to the controller the election key names, opened (or reopened, if the key moved) here.
    private func connection(
        deadline: ContinuousClock.Instant
    ) async throws(Failure) -> (ControllerLeader, KafkaPipelinedConnection) {
        var leader = await self.currentController
        if leader == nil {
            let timeout = deadline - .now
            _ = await self.follower.waitUntil(timeout: max(timeout, .zero)) {
                $0.controller?.endpoint != nil
            }
            leader = await self.currentController
        }
        guard let leader, let endpoint = leader.endpoint else { throw .noController }
        if let open = self.open {
            if open.leader == leader && open.connection.isOpen { return (leader, open.connection) }
            self.drop(open.connection)
        }
        let task: Task<KafkaPipelinedConnection, any Error>
        if let opening = self.opening, opening.leader == leader {
            task = opening.task
        } else {
            let configuration = self.configuration
            task = Task {
                try await Self.connect(host: endpoint.host, port: Int(endpoint.port), configuration: configuration)
            }
            self.opening = (leader, task)
        }
        let connection: KafkaPipelinedConnection
        do {
            connection = try await task.value
        } catch {
            if self.opening?.task == task { self.opening = nil }
            throw .unreachable(controller: leader.nodeID, reason: "\(error)")
        }
        if self.opening?.task == task {
            self.opening = nil
            if let open = self.open, open.connection !== connection { self.drop(open.connection) }
            self.open = Open(leader: leader, connection: connection)
            self.logger.debug(
                "Connected to the active controller",
                metadata: ["controller": "\(leader.nodeID)", "endpoint": "\(endpoint.host):\(endpoint.port)"]
            )
        }
        return (leader, connection)
    }

    /// A pipelined connection to `host:port` that stays open until `close()` or a failure: a task of its own holds
    /// `withConnection`'s scope open meanwhile.
    private static func connect(
        host: String,
        port: Int,
        configuration: KafkaPipelinedConnection.Configuration
    ) async throws -> KafkaPipelinedConnection {
        let handOver = HandOver()
        return try await withCheckedThrowingContinuation { continuation in
            handOver.set(continuation)
            Task {
                do {
                    try await KafkaPipelinedConnection.withConnection(
                        host: host,
                        port: port,
                        configuration: configuration
                    ) { connection in
                        handOver.resume(with: .success(connection))
                        await connection.closed()
                    }
                } catch {
                    handOver.resume(with: .failure(error))
                }
            }
        }
    }

    /// Resumes a continuation at most once (the connection, or the error that came before it). Thread-safe: a
    /// `Mutex`.
    private final class HandOver: Sendable {
        private let continuation = Mutex<CheckedContinuation<KafkaPipelinedConnection, any Error>?>(nil)

        func set(_ continuation: CheckedContinuation<KafkaPipelinedConnection, any Error>) {
            self.continuation.withLock { $0 = continuation }
        }

        func resume(with result: Result<KafkaPipelinedConnection, any Error>) {
            let continuation = self.continuation.withLock { value in
                defer { value = nil }
                return value
            }
            continuation?.resume(with: result)
        }
    }
}
