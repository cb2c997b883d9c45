import KafkaMessages
import KafkaNIO
import KafkaWire
import Logging
import NIOCore
import Synchronization

/// What a handler knows about the request it serves beyond its body. A plain value, made per request.
public struct RequestContext: Sendable {
    public var apiVersion: Int16
    public var correlationID: Int32
    public var clientID: String
    /// The peer, for logs.
    public var remoteAddress: SocketAddress?
    /// The listener the request came in on (Metadata answers with the brokers' endpoints for that listener).
    public var listenerName: String
    /// The APIs this broker advertises, exactly the handler table's (ApiVersions answers with it).
    public var advertisedAPIs: [ApiVersionsResponse.ApiVersion]
    /// A logger with the connection's metadata.
    public var logger: Logger
    /// The connection the request came in on, for a handler whose state outlives the request (the controller
    /// fences a broker whose heartbeat connection closes).
    public var connection = ConnectionLifetime()
}

/// What outlives one request on a connection: actions to run when the connection closes. The controller uses it
/// to fence a broker at once when the connection it heartbeats on closes (a crashed process closes its sockets).
///
/// The actions run when the peer closes the connection or it fails, not when this process closes it for its own
/// graceful shutdown (a stopping controller must not fence every broker on its way out).
///
/// Thread-safe: a `Mutex`; the channel's close runs the actions from an event loop.
public final class ConnectionLifetime: Sendable {
    private struct State {
        var closed = false
        var actions: [String: @Sendable () async -> Void] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Runs `action` (in a task of its own) once the connection closes, in place of an earlier action registered
    /// under `key`; runs nothing if the connection is already closed (its close has been handled).
    public func whenClosed(key: String, _ action: @escaping @Sendable () async -> Void) {
        self.state.withLock { state in
            guard !state.closed else { return }
            state.actions[key] = action
        }
    }

    /// Forgets the action registered under `key`.
    public func removeAction(key: String) {
        _ = self.state.withLock { $0.actions.removeValue(forKey: key) }
    }

    /// The connection closed: runs the actions when `runActions` (the peer's doing), else drops them.
    func closed(runActions: Bool) {
        let actions = self.state.withLock { state in
            state.closed = true
            defer { state.actions = [:] }
            return Array(state.actions.values)
        }
        guard runActions else { return }
        for action in actions { Task { await action() } }
    }
}

/// Serves one API key. Runs inside the connection's task and never blocks a thread.
///
/// Implementations are `Sendable` values built once at start-up and shared by every connection.
public protocol KafkaHandler: Sendable {
    associatedtype Request: KafkaRequest
    /// The versions advertised in ApiVersions; a subset of `Request.validVersions`.
    var versions: ClosedRange<Int16> { get }
    func handle(_ request: Request, context: RequestContext) async -> Request.Response
    /// What to do with the request. The default answers with `handle`; a handler that may answer nothing (Produce
    /// with acks=0) or must close the connection overrides it.
    func respond(to request: Request, context: RequestContext) async -> HandlerResult<Request.Response>
}

extension KafkaHandler {
    public func respond(to request: Request, context: RequestContext) async -> HandlerResult<Request.Response> {
        .response(await self.handle(request, context: context))
    }
}

/// A handler's decision for one request: a response, no response at all (acks=0 Produce: the client expects
/// none, and the connection reads the next request), or closing the connection (the reason is for the log).
public enum HandlerResult<Response: Sendable>: Sendable {
    case response(Response)
    /// The response frame's contents (header and body, no size) as parts written in order, some of them file
    /// regions the kernel sends with sendfile (Fetch).
    case responseParts([IOData])
    case noResponse
    case close(reason: String)
}

/// A handler with its request and response types erased, so one table can hold every API.
protocol ErasedHandler: Sendable {
    var apiKey: APIKey { get }
    var versions: ClosedRange<Int16> { get }
    /// Decodes the body, runs the handler and returns what to do: the response frame (header and body), nothing,
    /// or close.
    func respond(
        to envelope: KafkaRequestEnvelope,
        context: RequestContext
    ) async throws(WireError) -> HandlerTable.Outcome
}

struct TypedHandler<Handler: KafkaHandler>: ErasedHandler {
    let handler: Handler

    var apiKey: APIKey { Handler.Request.apiKey }
    var versions: ClosedRange<Int16> { self.handler.versions }

    func respond(
        to envelope: KafkaRequestEnvelope,
        context: RequestContext
    ) async throws(WireError) -> HandlerTable.Outcome {
        let request = try envelope.decodeBody(as: Handler.Request.self)
        switch await self.handler.respond(to: request, context: context) {
        case .response(let response):
            return .respond(
                KafkaFrame.response(response, version: envelope.apiVersion, correlationID: envelope.correlationID)
            )
        case .responseParts(let parts):
            return .respondParts(parts)
        case .noResponse:
            return .noResponse
        case .close(let reason):
            return .close(reason: reason)
        }
    }
}

/// The broker's handlers, indexed by API key like Redpanda's lookup table, and the ApiVersions answer computed
/// from them, so nothing unimplemented is ever advertised (DESIGN.md principle 1).
///
/// It also decides, as Kafka's `SocketServer` and `KafkaApis` do, what happens to a request that no handler takes:
/// an unknown key, or a version outside the advertised range, closes the connection, except ApiVersions, which
/// gets UNSUPPORTED_VERSION (35) in the v0 layout with its own supported range (KIP-511), so the client can retry
/// at a version this broker speaks.
///
/// Built once at start-up, then only read: a value, freely shareable across threads.
public struct HandlerTable: Sendable {
    private var slots = [(any ErasedHandler)?](repeating: nil, count: APIKey.tableSize)
    /// The ApiVersions body's `api_keys`: exactly the registered handlers, in key order.
    public private(set) var advertised: [ApiVersionsResponse.ApiVersion] = []

    /// A table with ApiVersions, which every broker serves, and nothing else.
    public init() {
        self.register(ApiVersionsHandler())
    }

    /// Adds `handler` for its API key; a second handler for one key is a bug and stops the process.
    public mutating func register<Handler: KafkaHandler>(_ handler: Handler) {
        let key = Handler.Request.apiKey
        precondition(key.rawValue >= 0 && Int(key.rawValue) < self.slots.count, "\(key) is outside the table")
        precondition(self.slots[Int(key.rawValue)] == nil, "two handlers for \(key)")
        precondition(
            Handler.Request.validVersions.contains(handler.versions.lowerBound)
                && Handler.Request.validVersions.contains(handler.versions.upperBound),
            "\(key) advertises \(handler.versions), outside the generated \(Handler.Request.validVersions)"
        )
        self.slots[Int(key.rawValue)] = TypedHandler(handler: handler)
        self.advertised = self.slots.compactMap { slot in
            slot.map {
                .init(
                    apiKey: $0.apiKey.rawValue,
                    minVersion: $0.versions.lowerBound,
                    maxVersion: $0.versions.upperBound
                )
            }
        }
    }

    /// The advertised versions of `apiKey`, nil if it has no handler.
    public func versions(of apiKey: APIKey) -> ClosedRange<Int16>? {
        guard apiKey.rawValue >= 0, Int(apiKey.rawValue) < self.slots.count else { return nil }
        return self.slots[Int(apiKey.rawValue)]?.versions
    }

    /// What to do with one request.
    public enum Outcome: Sendable {
        /// Write this frame (header and body), then read the next request.
        case respond(ByteBuffer)
        /// Write this frame's contents (header and body) from these parts in order, then read the next request.
        case respondParts([IOData])
        /// Write nothing (acks=0 Produce), then read the next request.
        case noResponse
        /// Close the connection; the reason is for the log.
        case close(reason: String)
    }

    /// Serves one request: version check against the advertised range, then the handler.
    public func handle(_ envelope: KafkaRequestEnvelope, context: RequestContext) async -> Outcome {
        let key = envelope.apiKey
        guard let versions = self.versions(of: key), let handler = self.slots[Int(key.rawValue)] else {
            return .close(reason: "\(key) is not supported by this broker")
        }
        guard versions.contains(envelope.apiVersion) else {
            if key == .apiVersions {
                return .respond(Self.unsupportedApiVersions(envelope, supported: versions))
            }
            return .close(reason: "\(key) v\(envelope.apiVersion) is outside the supported versions \(versions)")
        }
        do {
            return try await handler.respond(to: envelope, context: context)
        } catch {
            return .close(reason: "malformed \(key) v\(envelope.apiVersion) request body: \(error)")
        }
    }

    /// Kafka's answer to an ApiVersions request at a version it does not support: error 35, the v0 body (with
    /// response header v0), listing only ApiVersions' own range (`ApiVersionsRequest.getErrorResponse`).
    static func unsupportedApiVersions(_ envelope: KafkaRequestEnvelope, supported: ClosedRange<Int16>) -> ByteBuffer {
        let response = ApiVersionsResponse(
            errorCode: ErrorCode.unsupportedVersion.rawValue,
            apiKeys: [
                .init(
                    apiKey: APIKey.apiVersions.rawValue,
                    minVersion: supported.lowerBound,
                    maxVersion: supported.upperBound
                )
            ]
        )
        return KafkaFrame.response(response, version: 0, correlationID: envelope.correlationID)
    }
}
