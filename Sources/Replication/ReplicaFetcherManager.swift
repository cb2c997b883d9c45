import KafkaWire
import LogStorage
import Logging
import Synchronization

/// The followers' fetchers (Kafka's `ReplicaFetcherManager`): partitions followed from one leader are spread over
/// `num.replica.fetchers` fetchers by a hash of the partition (`replicaFetcherID`), each fetcher one task with one
/// connection to that leader (`ReplicaFetcher`). A fetcher starts with its first partition and stops when its last
/// one leaves. `follow` and `unfollow` run one at a time, in the order called.
///
/// Thread-safe: the fetcher map is behind a `Mutex`, and changes to it are serialised by an async lock.
public final class ReplicaFetcherManager: ReplicaFetching {
    public let configuration: ReplicaFetcherConfiguration
    /// Counters of every fetcher this manager ran.
    public let statistics = ReplicaFetcherStatistics()
    private let ioPool: DiskIOPool
    private let brokerEpoch: @Sendable () -> Int64
    private let logger: Logger
    private let changes = AsyncSerialLock()
    private let state = Mutex(State())

    struct FetcherKey: Hashable {
        var leader: LeaderEndpoint
        var fetcherID: Int
    }

    private struct State {
        var fetchers: [FetcherKey: ReplicaFetcher] = [:]
        var assignments: [TopicPartition: FetcherKey] = [:]
        /// Fetchers stopped when their last partition left, whose tasks `shutdown` still waits for.
        var retired: [ReplicaFetcher] = []
    }

    /// - Parameters:
    ///   - ioPool: where appends and truncations run.
    ///   - brokerEpoch: this broker's epoch from its registration, sent in Fetch v15+'s replica state (-1 before
    ///     the broker registered).
    public init(
        configuration: ReplicaFetcherConfiguration,
        ioPool: DiskIOPool,
        brokerEpoch: @escaping @Sendable () -> Int64 = { -1 },
        logger: Logger = Logger(label: "Replication.ReplicaFetcherManager")
    ) {
        self.configuration = configuration
        self.ioPool = ioPool
        self.brokerEpoch = brokerEpoch
        self.logger = logger
    }

    public func follow(_ partitions: [FollowedPartition], from leader: LeaderEndpoint) async {
        await self.changes.run {
            var groups: [FetcherKey: [FollowedPartition]] = [:]
            var moving: [FetcherKey: [TopicPartition]] = [:]
            self.state.withLock { state in
                for partition in partitions {
                    let key = FetcherKey(
                        leader: leader,
                        fetcherID: replicaFetcherID(
                            for: partition.topicPartition,
                            fetchersPerLeader: self.configuration.fetchersPerLeader
                        )
                    )
                    groups[key, default: []].append(partition)
                    if let previous = state.assignments[partition.topicPartition], previous != key {
                        moving[previous, default: []].append(partition.topicPartition)
                    }
                }
            }
            // A partition moving to another leader leaves its old fetcher first, with no disk work left running.
            for (previous, keys) in moving { await self.remove(keys, from: previous) }
            for (key, group) in groups {
                let fetcher = self.state.withLock { state -> ReplicaFetcher in
                    for partition in group { state.assignments[partition.topicPartition] = key }
                    if let existing = state.fetchers[key] { return existing }
                    let created = self.makeFetcher(key)
                    state.fetchers[key] = created
                    return created
                }
                fetcher.start()
                let added = fetcher.add(group)
                precondition(added, "a fetcher in the map has stopped")
            }
            // One line per change, however many partitions (thousands move at once when a broker fails).
            self.logger.info(
                "Following partitions",
                metadata: [
                    "leader": "\(leader)", "count": "\(partitions.count)",
                    "first": "\(partitions.first.map { "\($0.topicPartition)" } ?? "")",
                ]
            )
        }
    }

    public func unfollow(_ partitions: [TopicPartition]) async {
        await self.changes.run {
            var groups: [FetcherKey: [TopicPartition]] = [:]
            self.state.withLock { state in
                for partition in partitions {
                    if let key = state.assignments[partition] { groups[key, default: []].append(partition) }
                }
            }
            for (key, keys) in groups { await self.remove(keys, from: key) }
        }
    }

    /// Stops every fetcher; returns once their tasks have ended.
    public func shutdown() async {
        await self.changes.run {
            let (fetchers, retired) = self.state.withLock { state in
                defer {
                    state.fetchers = [:]
                    state.assignments = [:]
                    state.retired = []
                }
                return (Array(state.fetchers.values), state.retired)
            }
            for fetcher in fetchers {
                await fetcher.remove(Array(fetcher.partitions))
                fetcher.stop()
            }
            for fetcher in fetchers + retired { await fetcher.stopped() }
        }
    }

    /// The partitions followed now, each with its leader.
    public var followedPartitions: [TopicPartition: LeaderEndpoint] {
        self.state.withLock { $0.assignments.mapValues(\.leader) }
    }

    /// The number of running fetchers.
    public var fetcherCount: Int { self.state.withLock { $0.fetchers.count } }

    /// The offset a followed partition fetches from next, nil while it truncates or when it is not followed.
    public func fetchOffset(of partition: TopicPartition) -> Int64? {
        let fetcher = self.state.withLock { state in state.assignments[partition].flatMap { state.fetchers[$0] } }
        guard case .fetching(let offset, _)? = fetcher?.phase(of: partition) else { return nil }
        return offset
    }

    /// Whether a followed partition is paused now: after an error, until the back-off passes or `follow` gives it
    /// another leader epoch; or for good after a disk failure.
    public func isPaused(_ partition: TopicPartition) -> Bool {
        let fetcher = self.state.withLock { state in state.assignments[partition].flatMap { state.fetchers[$0] } }
        return fetcher?.isPaused(partition) ?? false
    }

    /// Removes `partitions` from the fetcher at `key` (waiting out their disk work), and stops it if it has none
    /// left. Called inside `changes`.
    private func remove(_ partitions: [TopicPartition], from key: FetcherKey) async {
        let fetcher = self.state.withLock { state in
            for partition in partitions where state.assignments[partition] == key {
                state.assignments[partition] = nil
            }
            return state.fetchers[key]
        }
        guard let fetcher else { return }
        await fetcher.remove(partitions)
        if fetcher.partitions.isEmpty {
            self.state.withLock { state in
                if state.fetchers[key] === fetcher { state.fetchers[key] = nil }
                state.retired.removeAll { $0.isStopped }
                state.retired.append(fetcher)
            }
            // Not awaited: a connect to a vanished leader may take its timeout, and the partitions are already
            // free.
            fetcher.stop()
        }
    }

    private func makeFetcher(_ key: FetcherKey) -> ReplicaFetcher {
        ReplicaFetcher(
            leader: key.leader,
            fetcherID: key.fetcherID,
            configuration: self.configuration,
            ioPool: self.ioPool,
            brokerEpoch: self.brokerEpoch,
            statistics: self.statistics,
            logger: self.logger
        )
    }
}

/// Counters of the fetchers: connection attempts (a bounded reconnect rate shows here), fetches, appended batches
/// and truncations per partition, and partitions stopped by a disk failure. Thread-safe: a `Mutex`.
public final class ReplicaFetcherStatistics: Sendable {
    /// One truncation of a follower's log.
    public struct Truncation: Hashable, Sendable {
        public var from: Int64
        public var to: Int64

        public init(from: Int64, to: Int64) {
            self.from = from
            self.to = to
        }
    }

    private struct Counts {
        var connectionAttempts = 0
        var fetches = 0
        var incrementalFetches = 0
        var appendedBatches: [TopicPartition: Int] = [:]
        var appendedBytes: Int64 = 0
        var truncations: [TopicPartition: [Truncation]] = [:]
        var failedPartitions: Set<TopicPartition> = []
    }

    private let counts = Mutex(Counts())

    public init() {}

    /// Connections the fetchers tried to open.
    public var connectionAttempts: Int { self.counts.withLock { $0.connectionAttempts } }
    /// Fetch requests answered.
    public var fetches: Int { self.counts.withLock { $0.fetches } }
    /// Those of them that were incremental (KIP-227): they named only the partitions that changed.
    public var incrementalFetches: Int { self.counts.withLock { $0.incrementalFetches } }
    /// Bytes appended to followers' logs.
    public var appendedBytes: Int64 { self.counts.withLock { $0.appendedBytes } }
    public func appendedBatches(_ partition: TopicPartition) -> Int {
        self.counts.withLock { $0.appendedBatches[partition] ?? 0 }
    }
    /// The truncations of `partition`'s log, oldest first.
    public func truncations(_ partition: TopicPartition) -> [Truncation] {
        self.counts.withLock { $0.truncations[partition] ?? [] }
    }
    /// Partitions whose log failed on disk while followed.
    public var failedPartitions: Set<TopicPartition> { self.counts.withLock { $0.failedPartitions } }

    func recordConnectionAttempt() { self.counts.withLock { $0.connectionAttempts += 1 } }
    func recordFetch(incremental: Bool) {
        self.counts.withLock { counts in
            counts.fetches += 1
            if incremental { counts.incrementalFetches += 1 }
        }
    }
    func recordAppend(_ partition: TopicPartition, batches: Int, bytes: Int) {
        self.counts.withLock { counts in
            counts.appendedBatches[partition, default: 0] += batches
            counts.appendedBytes += Int64(bytes)
        }
    }
    func recordTruncation(_ partition: TopicPartition, from: Int64, to: Int64) {
        self.counts.withLock { $0.truncations[partition, default: []].append(Truncation(from: from, to: to)) }
    }
    func recordFailedPartition(_ partition: TopicPartition) {
        self.counts.withLock { _ = $0.failedPartitions.insert(partition) }
    }
}

/// Runs async sections one at a time, in the order they arrive (a FIFO lock that does not block a thread).
/// Thread-safe: a `Mutex`.
final class AsyncSerialLock: Sendable {
    private let state = Mutex<(held: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func run<T: Sendable>(_ body: () async throws -> T) async rethrows -> T {
        await self.acquire()
        defer { self.release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { continuation in
            let granted = self.state.withLock { state -> Bool in
                guard state.held else {
                    state.held = true
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    private func release() {
        let next = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.waiters.isEmpty else {
                state.held = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
