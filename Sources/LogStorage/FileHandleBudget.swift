import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A cap on the file descriptors that partition logs may hold, so that thousands of partitions with several
/// segments each never exhaust `ulimit -n` (DESIGN.md, "Thousands of partitions per broker").
///
/// Every open segment is charged `Segment.descriptorsPerSegment` (its `.log`; the index files are mapped without a
/// held descriptor). When the total passes `limit`, descriptors are given back in two steps until it is at or below
/// `lowWater`:
///
/// 1. cold segments (any segment but a log's active one), least recently used first: their files close and reopen
///    on the next read or look-up that needs them;
/// 2. only if that is not enough (the active segments alone exceed the budget, e.g. 10,000 partitions under
///    `ulimit -n` 10,000), whole idle `ManagedLog`s, least recently used first; such a log is reopened by its next
///    use, from its files, without a recovery scan.
///
/// Logs in use (pinned by `ManagedLog.withLog`), busy logs (their lock held) and offline logs are never closed.
///
/// Thread-safe: the charges are behind one `Mutex`. Lock order: a `PartitionLog`'s or `ManagedLog`'s lock may be
/// held while taking the budget's, never the reverse. Step 1 only try-locks other logs, so it may run under a
/// log's lock; step 2 takes logs' locks and runs only where the caller holds none (`enforce`).
public final class FileHandleBudget: Sendable {
    /// The descriptors open segments may hold in all.
    public let limit: Int
    /// Closing stops once the total is at or below this (80% of `limit`), so that it runs in batches.
    public let lowWater: Int
    private let state = Mutex(State())
    /// A logical clock for least-recently-used order.
    private let clock = Atomic<UInt64>(0)

    struct SegmentKey: Hashable {
        var log: ObjectIdentifier
        var baseOffset: Int64
    }

    /// Entries hold their logs weakly: a log dropped without `close` (a test standing in for a kill) gives its
    /// charges back in its `deinit` instead of being kept alive by the budget.
    private struct Charge {
        weak var log: PartitionLog?
        var lastUse: UInt64
        var active: Bool
    }

    private struct WeakLog {
        weak var log: ManagedLog?
    }

    private struct State {
        var segments: [SegmentKey: Charge] = [:]
        /// How many of `segments` each log has, so `releaseAll` does not scan every partition's segments.
        var segmentCounts: [ObjectIdentifier: Int] = [:]
        var logs: [ObjectIdentifier: WeakLog] = [:]
        var total = 0
        var logEvictions = 0
        var segmentEvictions = 0

        mutating func uncount(_ log: ObjectIdentifier) {
            guard let count = self.segmentCounts[log] else { return }
            self.segmentCounts[log] = count > 1 ? count - 1 : nil
        }
    }

    /// Descriptors charged per open segment.
    public static let descriptorsPerSegment = Segment.descriptorsPerSegment

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

    /// The logs' share of `ulimit -n` when nothing else is known (`split(processLimit:maxConnections:)` with no
    /// connection limit); 50,000 when the limit is unknown.
    public static func defaultLimit() -> Int {
        Self.split(processLimit: Self.processDescriptorLimit(), maxConnections: nil).logs
    }

    /// How the process's descriptors are shared, so that connections can never take the ones the logs need.
    public struct DescriptorSplit: Hashable, Sendable, CustomStringConvertible {
        /// `ulimit -n`, or nil when unknown or unlimited.
        public var processLimit: Int?
        /// The budget of open segments (`FileHandleBudget.limit`).
        public var logs: Int
        /// The most client connections the broker keeps open at once.
        public var connections: Int
        /// Left for everything else: listening sockets, the event loops' own descriptors, checkpoints, the metadata
        /// store, and the duplicated segment descriptors of fetch responses being sent.
        public var reserved: Int

        public var description: String {
            guard let processLimit = self.processLimit else {
                return "descriptors: limit unknown, logs \(self.logs), connections \(self.connections)"
            }
            return "descriptors: limit \(processLimit), logs \(self.logs), connections \(self.connections), "
                + "other \(self.reserved)"
        }
    }

    /// Splits `processLimit` descriptors between the logs and connections. First a reserve is set aside for the
    /// rest (64 plus 1/16 of the limit); then the connections get `maxConnections` if that is set and at most half
    /// of what remains, else half; the logs get the rest. With an unknown limit, the logs get 50,000 and the
    /// connections `maxConnections` (or Int.max).
    public static func split(processLimit: Int?, maxConnections: Int?) -> DescriptorSplit {
        guard let processLimit else {
            return DescriptorSplit(processLimit: nil, logs: 50_000, connections: maxConnections ?? Int.max, reserved: 0)
        }
        let reserved = min(processLimit / 2, 64 + processLimit / 16)
        let shared = processLimit - reserved
        let connections = min(maxConnections ?? Int.max, shared / 2)
        let logs = max(Segment.descriptorsPerSegment, shared - connections)
        return DescriptorSplit(processLimit: processLimit, logs: logs, connections: connections, reserved: reserved)
    }

    /// Descriptors charged to open segments now.
    public var charged: Int { self.state.withLock { $0.total } }
    /// Segments open now.
    public var openSegments: Int { self.state.withLock { $0.segments.count } }
    /// Managed logs open now.
    public var openLogs: Int { self.state.withLock { $0.logs.count } }
    /// How many times a whole log was closed to make room (step 2), since the budget was made.
    public var evictions: Int { self.state.withLock { $0.logEvictions } }
    /// How many times a cold segment was closed to make room (step 1), since the budget was made.
    public var segmentEvictions: Int { self.state.withLock { $0.segmentEvictions } }

    /// A new least-recently-used stamp.
    func tick() -> UInt64 {
        self.clock.add(1, ordering: .relaxed).newValue
    }

    // MARK: Segments

    /// Records that `log`'s segment at `baseOffset` has its files open (or, if already charged, whether it is now
    /// the active one); a use stamps it as most recently used.
    func chargeSegment(_ log: PartitionLog, baseOffset: Int64, active: Bool) {
        let stamp = self.tick()
        self.state.withLock { state in
            let key = SegmentKey(log: ObjectIdentifier(log), baseOffset: baseOffset)
            if state.segments.updateValue(Charge(log: log, lastUse: stamp, active: active), forKey: key) == nil {
                state.total += Self.descriptorsPerSegment
                state.segmentCounts[key.log, default: 0] += 1
            }
        }
    }

    /// Marks a cold segment as just used (least-recently-used order).
    func touchSegment(_ log: PartitionLog, baseOffset: Int64) {
        let stamp = self.tick()
        self.state.withLock { state in
            state.segments[SegmentKey(log: ObjectIdentifier(log), baseOffset: baseOffset)]?.lastUse = stamp
        }
    }

    /// Records that the segment's files closed.
    func releaseSegment(_ log: PartitionLog, baseOffset: Int64, evicted: Bool = false) {
        self.state.withLock { state in
            let key = SegmentKey(log: ObjectIdentifier(log), baseOffset: baseOffset)
            if state.segments.removeValue(forKey: key) != nil {
                state.total -= Self.descriptorsPerSegment
                state.uncount(key.log)
                if evicted { state.segmentEvictions += 1 }
            }
        }
    }

    /// Gives back every charge of a log that is going away.
    func releaseAll(_ log: ObjectIdentifier) {
        self.state.withLock { state in
            guard state.segmentCounts.removeValue(forKey: log) != nil else { return }
            let keys = state.segments.keys.filter { $0.log == log }
            for key in keys { state.segments.removeValue(forKey: key) }
            state.total -= keys.count * Self.descriptorsPerSegment
        }
    }

    var isOverLimit: Bool { self.state.withLock { $0.total > self.limit } }

    /// Step 1, if the total is above `limit`: the least recently used cold segments to close to reach `lowWater`,
    /// never `sparing` (a segment the caller is about to use). The caller closes its own log's victims itself
    /// (under its lock) and the others with `PartitionLog.closeColdSegmentIfIdle`.
    func coldSegmentVictims(sparing: SegmentKey? = nil) -> [(log: PartitionLog, baseOffset: Int64)] {
        self.state.withLock { state in
            guard state.total > self.limit else { return [] }
            var excess = state.total - self.lowWater
            var chosen: [(log: PartitionLog, baseOffset: Int64)] = []
            let cold = state.segments.filter { !$0.value.active && $0.key != sparing }
            for (key, entry) in cold.sorted(by: { $0.value.lastUse < $1.value.lastUse }) where excess > 0 {
                guard let log = entry.log else { continue }
                chosen.append((log, key.baseOffset))
                excess -= Self.descriptorsPerSegment
            }
            return chosen
        }
    }

    // MARK: Logs

    /// Records that `log` is open (a candidate for step 2).
    func registerLog(_ log: ManagedLog) {
        self.state.withLock { $0.logs[ObjectIdentifier(log)] = WeakLog(log: log) }
    }

    /// Records that `log` closed its files (its segments release their own charges).
    func unregisterLog(_ log: ObjectIdentifier, evicted: Bool) {
        self.state.withLock { state in
            if state.logs.removeValue(forKey: log) != nil, evicted { state.logEvictions += 1 }
        }
    }

    /// Both steps, if the total is above `limit`: cold segments first, then whole idle logs, least recently used
    /// first, until the total is at or below `lowWater`. `sparing` (the log just opened or used) is not closed.
    /// Call with no `PartitionLog` or `ManagedLog` lock held.
    func enforce(sparing: ManagedLog? = nil) {
        for (log, baseOffset) in self.coldSegmentVictims() {
            log.closeColdSegmentIfIdle(baseOffset: baseOffset)
        }
        let victims: [ManagedLog] = self.state.withLock { state in
            guard state.total > self.limit else { return [] }
            return state.logs.values.compactMap(\.log).filter { $0 !== sparing }.sorted { $0.lastUse < $1.lastUse }
        }
        for log in victims {
            guard self.state.withLock({ $0.total }) > self.lowWater else { break }
            log.closeIfIdle()
        }
    }
}
