import Logging
import NIOCore
import Synchronization

/// Counts the open client connections, broker-wide, per listener and per IP address, and refuses one that would
/// pass a limit (`max.connections` lowered to the descriptor split's share, `listener.name.NAME.max.connections`,
/// `max.connections.per.ip` and its overrides), as Kafka's `ConnectionQuotas` does. A refused connection is closed
/// at accept, before any of it is read. Kafka's acceptor instead waits for a slot when the broker-wide or listener
/// limit is reached; closing at once keeps the backlog, and the descriptors it would hold, empty.
///
/// Refusals are logged at most once per `logInterval` (the first at once, then a count), so a flood of connections
/// cannot flood the log.
///
/// Thread-safe: the counts are behind a `Mutex`; accepts on every event loop call it.
final class ConnectionQuotas: Sendable {
    /// Why a connection was refused, for the log.
    enum Refusal: Sendable, CustomStringConvertible {
        case broker(limit: Int)
        case listener(String, limit: Int)
        case address(String, limit: Int)

        var description: String {
            switch self {
            case .broker(let limit): "the broker has its maximum of \(limit) connections"
            case .listener(let name, let limit): "listener \(name) has its maximum of \(limit) connections"
            case .address(let address, let limit): "\(address) has its maximum of \(limit) connections"
            }
        }
    }

    private struct State {
        var total = 0
        var perListener: [String: Int] = [:]
        var perAddress: [String: Int] = [:]
        var refusedSinceLog = 0
        var lastRefusal: Refusal?
        var lastLog: NIODeadline?
        var flushScheduled = false
    }

    /// The broker-wide limit in effect.
    let maxConnections: Int
    private let limits: BrokerConfiguration.ConnectionLimits
    private let state = Mutex(State())
    private let logger: Logger
    /// At most one refusal line per this interval.
    static let logInterval = TimeAmount.seconds(10)

    /// - Parameter maxConnections: the broker-wide limit (`max.connections`, lowered to the descriptor split's).
    init(limits: BrokerConfiguration.ConnectionLimits, maxConnections: Int, logger: Logger) {
        self.limits = limits
        self.maxConnections = maxConnections
        self.logger = logger
    }

    /// Connections open now.
    var openConnections: Int { self.state.withLock { $0.total } }

    /// Counts a new connection on `listener` from `address`, or refuses it (and logs the refusal, rate-limited,
    /// with timers on `eventLoop`). A counted connection must be given back with `release` when it closes.
    func admit(listener: String, address: String, eventLoop: any EventLoop) -> Bool {
        let refusal: Refusal? = self.state.withLock { state in
            if state.total >= self.maxConnections { return .broker(limit: self.maxConnections) }
            if let limit = self.limits.perListener[listener], state.perListener[listener, default: 0] >= limit {
                return .listener(listener, limit: limit)
            }
            let addressLimit = self.limits.limit(forIP: address)
            if state.perAddress[address, default: 0] >= addressLimit { return .address(address, limit: addressLimit) }
            state.total += 1
            state.perListener[listener, default: 0] += 1
            state.perAddress[address, default: 0] += 1
            return nil
        }
        guard let refusal else { return true }
        self.noteRefusal(refusal, eventLoop: eventLoop)
        return false
    }

    /// Gives back a connection counted by `admit`.
    func release(listener: String, address: String) {
        self.state.withLock { state in
            state.total -= 1
            state.perListener[listener, default: 1] -= 1
            if state.perListener[listener] == 0 { state.perListener[listener] = nil }
            state.perAddress[address, default: 1] -= 1
            if state.perAddress[address] == 0 { state.perAddress[address] = nil }
        }
    }

    /// Logs the first refusal after a quiet interval at once; later ones are counted and logged together when the
    /// interval has passed.
    private func noteRefusal(_ refusal: Refusal, eventLoop: any EventLoop) {
        let now = NIODeadline.now()
        let (logNow, scheduleFlush): (Bool, Bool) = self.state.withLock { state in
            state.lastRefusal = refusal
            if let lastLog = state.lastLog, now - lastLog < Self.logInterval {
                state.refusedSinceLog += 1
                defer { state.flushScheduled = true }
                return (false, !state.flushScheduled)
            }
            state.lastLog = now
            return (true, false)
        }
        if logNow {
            self.logger.warning("refused a connection: \(refusal) (further refusals are counted for 10 s)")
        }
        if scheduleFlush {
            eventLoop.scheduleTask(in: Self.logInterval) { self.flushRefusals() }
        }
    }

    /// Logs the refusals counted since the last line.
    private func flushRefusals() {
        let (count, last): (Int, Refusal?) = self.state.withLock { state in
            state.flushScheduled = false
            defer { state.refusedSinceLog = 0 }
            if state.refusedSinceLog > 0 { state.lastLog = .now() }
            return (state.refusedSinceLog, state.lastRefusal)
        }
        guard count > 0, let last else { return }
        self.logger.warning(
            "refused \(count) connection\(count == 1 ? "" : "s") in the last 10 s; the last because \(last)"
        )
    }
}
