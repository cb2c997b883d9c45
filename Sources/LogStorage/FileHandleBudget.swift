import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A cap on the file descriptors that open partition logs may hold, so that thousands of partitions with several
/// segments each never exhaust `ulimit -n` (DESIGN.md, "Thousands of partitions per broker").
///
/// Each open `ManagedLog` is charged three descriptors per segment (the `.log` and the two mapped index files).
/// When an open pushes the total over `limit`, the least recently used idle logs are closed until the total is
/// back under `lowWater`; a closed log is reopened by its next use, from its files, without a recovery scan.
/// Logs in use (pinned by `ManagedLog.withLog`) and offline logs are never closed.
///
/// Thread-safe: the charges are behind one `Mutex`. Lock order: a `ManagedLog`'s lock may be held while taking the
/// budget's, never the reverse; eviction takes each victim's lock only after releasing the budget's.
public final class FileHandleBudget: Sendable {
    /// The descriptors that open logs may hold in all.
    public let limit: Int
    /// Eviction closes logs until the total is at or below this (80% of `limit`), so that it runs in batches.
    public let lowWater: Int
    private let state = Mutex(State())
    /// A logical clock for least-recently-used order; logs stamp themselves without taking the budget's lock.
    private let clock = Atomic<UInt64>(0)

    private struct State {
        var charges: [ObjectIdentifier: (log: ManagedLog, descriptors: Int)] = [:]
        var total = 0
        var evictions = 0
    }

    /// Descriptors charged per segment of an open log.
    public static let descriptorsPerSegment = 3

    /// A budget of `limit` descriptors.
    public init(limit: Int) {
        precondition(limit > 0)
        self.limit = limit
        self.lowWater = max(1, limit * 4 / 5)
    }

    /// The process's soft `RLIMIT_NOFILE` (`ulimit -n`), or nil if it cannot be read or is unlimited.
    public static func processDescriptorLimit() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max,
            limit.rlim_cur <= rlim_t(Int.max)
        else {
            return nil
        }
        return Int(limit.rlim_cur)
    }

    /// Half of `ulimit -n` (the other half is for sockets, checkpoints and readers' duplicated descriptors), at
    /// least 64; 50,000 when the limit is unknown.
    public static func defaultLimit() -> Int {
        guard let processLimit = Self.processDescriptorLimit() else { return 50_000 }
        return max(64, processLimit / 2)
    }

    /// Descriptors charged to open logs now.
    public var charged: Int { self.state.withLock { $0.total } }
    /// Logs open now.
    public var openLogs: Int { self.state.withLock { $0.charges.count } }
    /// How many times a log was closed to make room, since the budget was made.
    public var evictions: Int { self.state.withLock { $0.evictions } }

    /// A new least-recently-used stamp.
    func tick() -> UInt64 {
        self.clock.add(1, ordering: .relaxed).newValue
    }

    /// Records that `log` is open with `segments` segments (or changed its segment count).
    func charge(_ log: ManagedLog, segments: Int) {
        self.state.withLock { state in
            let descriptors = segments * Self.descriptorsPerSegment
            let previous = state.charges.updateValue((log, descriptors), forKey: ObjectIdentifier(log))
            state.total += descriptors - (previous?.descriptors ?? 0)
        }
    }

    /// Records that `log` closed its files.
    func release(_ log: ManagedLog, evicted: Bool) {
        self.state.withLock { state in
            if let previous = state.charges.removeValue(forKey: ObjectIdentifier(log)) {
                state.total -= previous.descriptors
                if evicted { state.evictions += 1 }
            }
        }
    }

    /// Closes idle logs, least recently used first, until the total is at or below `lowWater`, if it is above
    /// `limit`. `sparing` (the log that just opened) is not closed. Call with no `ManagedLog` lock held.
    func enforce(sparing: ManagedLog? = nil) {
        let victims: [ManagedLog] = self.state.withLock { state in
            guard state.total > self.limit else { return [] }
            var excess = state.total - self.lowWater
            var chosen: [ManagedLog] = []
            let byAge = state.charges.values.sorted { $0.log.lastUse < $1.log.lastUse }
            for (log, descriptors) in byAge where excess > 0 && log !== sparing {
                chosen.append(log)
                excess -= descriptors
            }
            return chosen
        }
        for log in victims where self.state.withLock({ $0.total }) > self.lowWater {
            log.closeIfIdle()
        }
    }
}
