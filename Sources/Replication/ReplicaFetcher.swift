import KafkaMessages
import KafkaNIO
import KafkaWire
import LogStorage
import Logging
import NIOCore
import Synchronization

/// One fetcher (Kafka's `ReplicaFetcherThread`): a long-running task with one connection to a leader, copying the
/// partitions it is given. Each partition is first truncated by leader epoch (OffsetForLeaderEpoch for its latest
/// epoch at or below the leader's, `FollowerTruncation`), then fetched from its log end on an incremental fetch session; fetched batches are
/// appended as follower (offsets, epochs and producer state as the leader wrote them), and the high watermark and
/// log start offset follow the leader's.
///
/// A partition the leader refuses (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, ...) or whose
/// answer cannot be appended waits `replica.fetch.backoff.ms`, or until `add` gives it another leader epoch; one
/// whose log failed on disk stops until `add` gives it again (its log is offline). A failed or silent connection
/// (no answer within `replica.socket.timeout.ms` beyond the fetch's wait) is closed, and reopened after the back-off.
///
/// Disk work runs on the `DiskIOPool`. While it runs for a partition, the partition is marked busy; `remove` waits
/// until it is not, so once `remove` returns no append or truncation of that partition happens any more.
///
/// Thread-safe: the partitions are behind a `Mutex`; the loop runs in one task.
final class ReplicaFetcher: Sendable {
    let leader: LeaderEndpoint
    let fetcherID: Int
    private let configuration: ReplicaFetcherConfiguration
    private let ioPool: DiskIOPool
    private let brokerEpoch: @Sendable () -> Int64
    private let statistics: ReplicaFetcherStatistics
    private let logger: Logger
    private let state = Mutex(State())
    private let wakeup = WakeSignal()
    private let task = Mutex<Task<Void, Never>?>(nil)

    /// Where a partition is in its cycle.
    enum Phase: Hashable, Sendable {
        /// It must ask the leader where its latest epoch ends, and truncate there, before it fetches.
        case truncating
        /// It fetches from `offset` (its log end); `lastFetchedEpoch` is the epoch of its last batch, -1 for none.
        case fetching(offset: Int64, lastFetchedEpoch: Int32)
    }

    struct PartitionState {
        var followed: FollowedPartition
        var phase: Phase = .truncating
        /// Not fetched until then (after an error).
        var delayedUntil: ContinuousClock.Instant?
        /// Its log failed on disk: not fetched until `add` gives it again.
        var failed = false
        /// Changes whenever `add` resets the partition, so work begun under an older state is not applied.
        var generation: UInt64
    }

    private struct State {
        var partitions: [TopicPartition: PartitionState] = [:]
        /// Partitions whose disk work is running, and who waits for it to end.
        var busy: Set<TopicPartition> = []
        var idleWaiters: [TopicPartition: [CheckedContinuation<Void, Never>]] = [:]
        var nextGeneration: UInt64 = 1
        var stopped = false
        var connection: KafkaPipelinedConnection?
        var loopEnded = false
        /// Advances with every plan, to rotate the order of the partitions fetched.
        var rotation: UInt64 = 0
        /// Connections that failed in a row (the first is logged as a warning).
        var consecutiveFailures = 0
    }

    init(
        leader: LeaderEndpoint,
        fetcherID: Int,
        configuration: ReplicaFetcherConfiguration,
        ioPool: DiskIOPool,
        brokerEpoch: @escaping @Sendable () -> Int64,
        statistics: ReplicaFetcherStatistics,
        logger: Logger
    ) {
        self.leader = leader
        self.fetcherID = fetcherID
        self.configuration = configuration
        self.ioPool = ioPool
        self.brokerEpoch = brokerEpoch
        self.statistics = statistics
        var logger = logger
        logger[metadataKey: "leader"] = "\(leader)"
        logger[metadataKey: "fetcher"] = "\(fetcherID)"
        self.logger = logger
    }

    // MARK: Partitions

    /// Starts the loop (once).
    func start() {
        self.task.withLock { task in
            guard task == nil else { return }
            task = Task {
                await self.run()
                self.state.withLock { $0.loopEnded = true }
            }
        }
    }

    /// Adds `partitions`, or updates them: one at the same leader epoch and log keeps its state (a paused one stays
    /// paused), any other starts over with truncation. Returns false, adding nothing, if the fetcher has stopped.
    func add(_ partitions: [FollowedPartition]) -> Bool {
        let added = self.state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            for followed in partitions {
                let key = followed.topicPartition
                if var existing = state.partitions[key], existing.followed.leaderEpoch == followed.leaderEpoch,
                    existing.followed.log === followed.log, !existing.failed
                {
                    existing.followed = followed
                    state.partitions[key] = existing
                    continue
                }
                state.partitions[key] = PartitionState(followed: followed, generation: state.nextGeneration)
                state.nextGeneration += 1
            }
            return true
        }
        if added { self.wakeup.signal() }
        return added
    }

    /// Removes `partitions` and returns once no disk work runs for any of them.
    func remove(_ partitions: [TopicPartition]) async {
        let busy = self.state.withLock { state -> [TopicPartition] in
            for key in partitions { state.partitions[key] = nil }
            return partitions.filter { state.busy.contains($0) }
        }
        for key in busy {
            await withCheckedContinuation { continuation in
                let waiting = self.state.withLock { state -> Bool in
                    guard state.busy.contains(key) else { return false }
                    state.idleWaiters[key, default: []].append(continuation)
                    return true
                }
                if !waiting { continuation.resume() }
            }
        }
    }

    /// The partitions followed now.
    var partitions: Set<TopicPartition> { self.state.withLock { Set($0.partitions.keys) } }

    /// The state of one partition, for tests and metrics.
    func phase(of partition: TopicPartition) -> Phase? { self.state.withLock { $0.partitions[partition]?.phase } }

    /// Whether `partition` waits out a back-off now, or was stopped by a disk failure.
    func isPaused(_ partition: TopicPartition) -> Bool {
        self.state.withLock { state in
            guard let partition = state.partitions[partition] else { return false }
            return partition.failed || (partition.delayedUntil.map { $0 > .now } ?? false)
        }
    }

    /// Stops the loop: no partition is added any more and the connection closes. Returns at once (a connect in
    /// progress may take its timeout to end); `stopped()` waits for the end. Call after `remove` for partitions
    /// whose disk work must be over.
    func stop() {
        let (task, connection) = self.state.withLock { state in
            state.stopped = true
            return (self.task.withLock { $0 }, state.connection)
        }
        task?.cancel()
        connection?.close()
        self.wakeup.signal()
    }

    /// Whether the loop has ended.
    var isStopped: Bool { self.task.withLock { $0 }.map { _ in self.state.withLock { $0.loopEnded } } ?? true }

    /// Returns once the loop has ended (after `stop`).
    func stopped() async {
        await self.task.withLock { $0 }?.value
    }

    // MARK: The loop

    private func run() async {
        while !Task.isCancelled {
            if self.state.withLock({ $0.partitions.isEmpty }) {
                await self.wakeup.wait(for: .seconds(60))
                continue
            }
            self.statistics.recordConnectionAttempt()
            do {
                try await KafkaPipelinedConnection.withConnection(
                    host: self.leader.host,
                    port: self.leader.port,
                    configuration: KafkaPipelinedConnection.Configuration(
                        clientID: self.configuration.clientID,
                        connectTimeout: .milliseconds(self.configuration.socketTimeoutMs)
                    )
                ) { connection in
                    self.state.withLock { $0.connection = connection }
                    defer { self.state.withLock { $0.connection = nil } }
                    try await self.serve(on: connection)
                }
            } catch {
                guard !Task.isCancelled else { break }
                let failures = self.state.withLock { state in
                    state.consecutiveFailures += 1
                    return state.consecutiveFailures
                }
                // The first failure is news; repeats while the leader stays away are not.
                self.logger.log(
                    level: failures == 1 ? .warning : .debug,
                    "Fetching from the leader failed; reconnecting after the back-off",
                    metadata: ["error": "\(error)", "backoffMs": "\(self.configuration.fetchBackoffMs)"]
                )
            }
            guard !Task.isCancelled else { break }
            try? await Task.sleep(for: .milliseconds(self.configuration.fetchBackoffMs))
        }
    }

    /// Runs truncations and fetches on `connection` until it fails or the fetcher stops.
    private func serve(on connection: KafkaPipelinedConnection) async throws {
        let apiVersions = try await self.send(
            ApiVersionsRequest(clientSoftwareName: "logbroker-replica-fetcher", clientSoftwareVersion: "1"),
            version: 3,
            on: connection
        )
        guard apiVersions.errorCode == 0, let versions = LeaderAPIVersions.negotiate(apiVersions.apiKeys) else {
            throw ReplicaFetcherError.unsupportedLeader(errorCode: apiVersions.errorCode)
        }
        self.state.withLock { $0.consecutiveFailures = 0 }
        var session = ReplicaFetchSession(usesSessions: versions.fetch >= 7)
        while !Task.isCancelled {
            let now = ContinuousClock.now
            let (truncating, fetching, nextReady) = self.plan(now: now)
            if !truncating.isEmpty {
                try await self.truncate(truncating, on: connection, versions: versions)
                continue
            }
            if fetching.isEmpty {
                await self.wakeup.wait(for: nextReady.map { $0 - now } ?? .seconds(60))
                continue
            }
            try await self.fetch(fetching, session: &session, on: connection, versions: versions)
        }
    }

    /// The partitions ready to truncate and to fetch now (neither paused, failed nor busy), and when the next
    /// paused one is ready.
    private func plan(now: ContinuousClock.Instant) -> (
        truncating: [(TopicPartition, PartitionState)], fetching: [(TopicPartition, PartitionState)],
        nextReady: ContinuousClock.Instant?
    ) {
        self.state.withLock { state in
            var truncating: [(TopicPartition, PartitionState)] = []
            var fetching: [(TopicPartition, PartitionState)] = []
            var nextReady: ContinuousClock.Instant?
            for (key, partition) in state.partitions.sorted(by: { $0.key < $1.key }) where !partition.failed {
                if let until = partition.delayedUntil {
                    if until > now {
                        nextReady = min(nextReady ?? until, until)
                        continue
                    }
                    state.partitions[key]?.delayedUntil = nil
                }
                guard !state.busy.contains(key) else { continue }
                switch partition.phase {
                case .truncating: truncating.append((key, partition))
                case .fetching: fetching.append((key, partition))
                }
            }
            // Each fetch starts one partition further on: when the partitions' data exceeds the response limit, the
            // leader fills it in request order, and a fixed order would starve the last ones (Kafka moves fetched
            // partitions to the end).
            if fetching.count > 1 {
                state.rotation &+= 1
                let start = Int(state.rotation % UInt64(fetching.count))
                fetching = Array(fetching[start...] + fetching[..<start])
            }
            return (truncating, fetching, nextReady)
        }
    }

    // MARK: Disk work

    /// Marks `key` busy if it is still at `generation`; returns its state then.
    private func begin(_ key: TopicPartition, generation: UInt64) -> PartitionState? {
        self.state.withLock { state in
            guard let partition = state.partitions[key], partition.generation == generation,
                !state.busy.contains(key)
            else { return nil }
            state.busy.insert(key)
            return partition
        }
    }

    /// Ends `key`'s disk work: applies `update` if the partition is still at `generation`, and wakes `remove`.
    private func end(_ key: TopicPartition, generation: UInt64, _ update: (inout PartitionState) -> Void) {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.busy.remove(key)
            if var partition = state.partitions[key], partition.generation == generation {
                update(&partition)
                state.partitions[key] = partition
            }
            return state.idleWaiters.removeValue(forKey: key) ?? []
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Pauses `key` for the back-off (if still at `generation`).
    private func delay(_ key: TopicPartition, generation: UInt64, phase: Phase? = nil) {
        let until = ContinuousClock.now + .milliseconds(self.configuration.fetchBackoffMs)
        self.state.withLock { state in
            guard var partition = state.partitions[key], partition.generation == generation else { return }
            partition.delayedUntil = until
            if let phase { partition.phase = phase }
            state.partitions[key] = partition
        }
    }

    /// What a partition's disk work ended with.
    private enum Outcome {
        case fetching(offset: Int64, lastFetchedEpoch: Int32)
        case truncating
        /// Retry after the back-off, from `phase`.
        case backOff(Phase)
        /// The log failed on disk; it stays offline.
        case failed
    }

    /// Runs `work` on the disk pool with `key` busy, and applies its outcome; a storage error maps to Kafka's
    /// handling (a failed disk call: the log goes offline and the partition stops; a transient one or bad data:
    /// retry after the back-off, truncating first).
    private func withDiskWork(
        _ key: TopicPartition,
        generation: UInt64,
        _ work: @escaping @Sendable (FollowedPartition) throws -> Outcome
    ) async {
        guard let partition = self.begin(key, generation: generation) else { return }
        let followed = partition.followed
        let outcome: Outcome
        do {
            outcome = try await self.ioPool.run { try work(followed) }
        } catch let error as StorageError {
            outcome = self.outcome(of: error, log: followed.log)
        } catch {
            self.logger.warning("Disk work failed", metadata: ["partition": "\(key)", "error": "\(error)"])
            outcome = .backOff(.truncating)
        }
        let until = ContinuousClock.now + .milliseconds(self.configuration.fetchBackoffMs)
        self.end(key, generation: generation) { partition in
            switch outcome {
            case .fetching(let offset, let epoch): partition.phase = .fetching(offset: offset, lastFetchedEpoch: epoch)
            case .truncating: partition.phase = .truncating
            case .backOff(let phase):
                partition.phase = phase
                partition.delayedUntil = until
            case .failed: partition.failed = true
            }
        }
    }

    private func outcome(of error: StorageError, log: ManagedLog) -> Outcome {
        if error.kafkaErrorCode == .kafkaStorageError && !error.isTransient {
            log.takeOffline(error)
            self.statistics.recordFailedPartition(log.topicPartition)
            self.logger.error(
                "A follower's log failed on disk; it is offline and no longer fetched",
                metadata: ["partition": "\(log.topicPartition)", "error": "\(error)"]
            )
            return .failed
        }
        self.logger.warning(
            "Could not apply fetched data; retrying after the back-off",
            metadata: ["partition": "\(log.topicPartition)", "error": "\(error)"]
        )
        return .backOff(.truncating)
    }

    /// Truncates to `step` and returns the outcome: fetching from the new log end, or truncating again.
    private static func apply(
        _ step: TruncationStep,
        to log: ManagedLog,
        statistics: ReplicaFetcherStatistics
    ) throws(StorageError) -> Outcome {
        let (end, latest) = try log.withLog { (partitionLog) throws(StorageError) in
            let before = partitionLog.logEndOffset
            // Nothing below the log start can be cut (a high watermark not yet raised to it, after a restart).
            if max(step.offset, partitionLog.logStartOffset) < before {
                try partitionLog.truncate(to: step.offset)
                statistics.recordTruncation(log.topicPartition, from: before, to: partitionLog.logEndOffset)
            }
            return (partitionLog.logEndOffset, partitionLog.epochEntries.last?.epoch ?? -1)
        }
        if log.highWatermark > end { log.highWatermark = end }
        return step.isComplete ? .fetching(offset: end, lastFetchedEpoch: latest) : .truncating
    }

    // MARK: Truncation

    private func truncate(
        _ partitions: [(TopicPartition, PartitionState)],
        on connection: KafkaPipelinedConnection,
        versions: LeaderAPIVersions
    ) async throws {
        // Each log's latest epoch; a log without epochs truncates to its high watermark without asking.
        var asks: [(TopicPartition, PartitionState, Int32)] = []
        for (key, partition) in partitions {
            let log = partition.followed.log
            let currentLeaderEpoch = partition.followed.leaderEpoch
            let latest: Int32?
            do {
                latest = try await self.ioPool.run {
                    try log.withLog { (partitionLog) throws(StorageError) in
                        FollowerTruncation.epochToAsk(
                            entries: partitionLog.epochEntries,
                            currentLeaderEpoch: currentLeaderEpoch
                        )
                    }
                }
            } catch {
                await self.withDiskWork(key, generation: partition.generation) { _ in throw error }
                continue
            }
            if let latest {
                asks.append((key, partition, latest))
            } else {
                let statistics = self.statistics
                await self.withDiskWork(key, generation: partition.generation) { followed in
                    let step = FollowerTruncation.withoutEpochs(
                        logEndOffset: followed.log.logEndOffset,
                        highWatermark: followed.log.highWatermark
                    )
                    return try Self.apply(step, to: followed.log, statistics: statistics)
                }
            }
        }
        guard !asks.isEmpty else { return }

        var topics: [OffsetForLeaderEpochRequest.OffsetForLeaderTopic] = []
        for (key, partition, latest) in asks {
            let entry = OffsetForLeaderEpochRequest.OffsetForLeaderPartition(
                partition: key.partition,
                currentLeaderEpoch: partition.followed.leaderEpoch,
                leaderEpoch: latest
            )
            if topics.last?.topic == key.topic {
                topics[topics.count - 1].partitions.append(entry)
            } else {
                topics.append(.init(topic: key.topic, partitions: [entry]))
            }
        }
        let response = try await self.send(
            OffsetForLeaderEpochRequest(replicaID: self.configuration.brokerID, topics: topics),
            version: versions.offsetForLeaderEpoch,
            on: connection
        )
        var answers: [TopicPartition: OffsetForLeaderEpochResponse.EpochEndOffset] = [:]
        for topic in response.topics {
            for answer in topic.partitions { answers[TopicPartition(topic.topic, answer.partition)] = answer }
        }
        for (key, partition, _) in asks {
            guard let answer = answers[key] else {
                self.delay(key, generation: partition.generation)
                continue
            }
            let error = ErrorCode(answer.errorCode)
            guard error == .none else {
                self.logger.info(
                    "The leader refused OffsetForLeaderEpoch; retrying after the back-off",
                    metadata: ["partition": "\(key)", "error": "\(error)"]
                )
                self.delay(key, generation: partition.generation)
                continue
            }
            let leaderEnd = EpochEnd(epoch: answer.leaderEpoch, endOffset: answer.endOffset)
            let statistics = self.statistics
            await self.withDiskWork(key, generation: partition.generation) { followed in
                try Self.truncate(followed.log, toMatch: leaderEnd, statistics: statistics)
            }
        }
    }

    /// Truncates `log` as the leader's `leaderEnd` says (an OffsetForLeaderEpoch answer or a diverging epoch).
    private static func truncate(
        _ log: ManagedLog,
        toMatch leaderEnd: EpochEnd,
        statistics: ReplicaFetcherStatistics
    ) throws(StorageError) -> Outcome {
        let (own, end) = try log.withLog { (partitionLog) throws(StorageError) in
            (partitionLog.endOffset(forEpoch: leaderEnd.epoch), partitionLog.logEndOffset)
        }
        let follower = own.endOffset < 0 || own.epoch < 0 ? nil : EpochEnd(epoch: own.epoch, endOffset: own.endOffset)
        let step = FollowerTruncation.step(
            leader: leaderEnd,
            follower: follower,
            logEndOffset: end,
            highWatermark: log.highWatermark
        )
        return try Self.apply(step, to: log, statistics: statistics)
    }

    // MARK: Fetching

    private func fetch(
        _ partitions: [(TopicPartition, PartitionState)],
        session: inout ReplicaFetchSession,
        on connection: KafkaPipelinedConnection,
        versions: LeaderAPIVersions
    ) async throws {
        var generations: [TopicPartition: UInt64] = [:]
        var wanted: [PartitionFetchRequest] = []
        for (key, partition) in partitions {
            guard case .fetching(let offset, let lastFetchedEpoch) = partition.phase else { continue }
            generations[key] = partition.generation
            wanted.append(
                PartitionFetchRequest(
                    topicPartition: key,
                    topicID: partition.followed.topicID,
                    fetchOffset: offset,
                    currentLeaderEpoch: partition.followed.leaderEpoch,
                    lastFetchedEpoch: lastFetchedEpoch,
                    logStartOffset: partition.followed.log.logStartOffset,
                    maxBytes: self.configuration.fetchMaxBytes
                )
            )
        }
        // Topics by id need every id known; otherwise by name, as Kafka's fetch builder falls back to v12. A
        // session begun with one kind of topic reference starts over with the other.
        let version = wanted.contains { $0.topicID == .zero } ? min(versions.fetch, 12) : versions.fetch
        if (version >= 13) != (session.lastVersion.map { $0 >= 13 } ?? (version >= 13)) { session.failed() }
        session.lastVersion = version
        let parts = session.request(for: wanted)
        let request = parts.fetchRequest(
            version: version,
            configuration: self.configuration,
            brokerEpoch: self.brokerEpoch()
        )
        let response: FetchResponse
        do {
            response = try await self.send(
                request,
                version: version,
                on: connection,
                waitMs: Int64(self.configuration.fetchWaitMaxMs)
            )
        } catch {
            session.failed()
            throw error
        }
        self.statistics.recordFetch(incremental: !parts.isFull)
        let topError = ErrorCode(response.errorCode)
        session.received(parts, error: topError, sessionID: response.sessionID)
        guard topError == .none else {
            if topError == .fetchSessionIDNotFound || topError == .invalidFetchSessionEpoch {
                self.logger.info("The fetch session ended; the next fetch is full", metadata: ["error": "\(topError)"])
            } else {
                self.logger.warning("The leader refused a fetch", metadata: ["error": "\(topError)"])
                for (key, generation) in generations { self.delay(key, generation: generation) }
            }
            return
        }
        let names = Dictionary(wanted.map { ($0.topicID, $0.topicPartition.topic) }, uniquingKeysWith: { a, _ in a })
        for topic in response.responses {
            let name = version >= 13 ? names[topic.topicID] : topic.topic
            guard let name else { continue }
            for data in topic.partitions {
                let key = TopicPartition(name, data.partitionIndex)
                guard let sent = session.sessionPartitions[key], let generation = generations[key] else { continue }
                await self.process(
                    data,
                    for: sent,
                    generation: generation,
                    fetchVersion: version,
                    on: connection,
                    versions: versions
                )
            }
        }
    }

    /// Applies one partition of a fetch answer to its log.
    private func process(
        _ data: FetchResponse.PartitionData,
        for sent: PartitionFetchRequest,
        generation: UInt64,
        fetchVersion: Int16,
        on connection: KafkaPipelinedConnection,
        versions: LeaderAPIVersions
    ) async {
        let key = sent.topicPartition
        // The answer belongs to the state it was asked for: a partition reset or moved since is left alone.
        let current = self.state.withLock { $0.partitions[key] }
        guard let current, current.generation == generation,
            case .fetching(let offset, _) = current.phase, offset == sent.fetchOffset
        else { return }
        let error = ErrorCode(data.errorCode)
        switch error {
        case .none:
            break
        case .offsetOutOfRange:
            await self.handleOutOfRange(key, generation: generation, sent: sent, on: connection, versions: versions)
            return
        default:
            self.logger.info(
                "The leader refused a partition's fetch; retrying after the back-off",
                metadata: ["partition": "\(key)", "error": "\(error)"]
            )
            self.delay(key, generation: generation)
            return
        }
        let batches: FetchedBatches?
        if let records = data.records, records.readableBytes > 0 {
            do {
                batches = try FetchedBatches.check(records, fetchOffset: sent.fetchOffset)
            } catch {
                self.logger.error(
                    "The leader sent batches that cannot be appended; retrying after the back-off",
                    metadata: ["partition": "\(key)", "error": "\(error)"]
                )
                self.delay(key, generation: generation)
                return
            }
        } else {
            batches = nil
        }
        let diverging =
            fetchVersion >= 12 && (data.divergingEpoch.epoch >= 0 || data.divergingEpoch.endOffset >= 0)
            ? EpochEnd(epoch: data.divergingEpoch.epoch, endOffset: data.divergingEpoch.endOffset) : nil
        let leaderHighWatermark = data.highWatermark
        let leaderLogStartOffset = data.logStartOffset
        let fetchOffset = sent.fetchOffset
        let statistics = self.statistics
        await self.withDiskWork(key, generation: generation) { followed in
            let log = followed.log
            guard log.logEndOffset == fetchOffset else { return .truncating }
            if let batches, batches.batchCount > 0 {
                if batches.firstOffset < fetchOffset && log.logStartOffset == fetchOffset {
                    // An empty log started at the leader's log start, which lies inside this batch (DeleteRecords
                    // there): the log starts at the batch instead, as Kafka's follower does, and the log start
                    // moves up to the leader's below.
                    try log.withLog { (partitionLog) throws(StorageError) in
                        try partitionLog.truncateFullyAndStart(at: batches.firstOffset)
                    }
                }
                _ = try log.appendAsFollower(batches.bytes)
                statistics.recordAppend(key, batches: batches.batchCount, bytes: batches.bytes.readableBytes)
            }
            var outcome: Outcome? = nil
            if let diverging {
                outcome = try Self.truncate(log, toMatch: diverging, statistics: statistics)
            }
            let (end, start, latest) = try log.withLog { (partitionLog) throws(StorageError) in
                (partitionLog.logEndOffset, partitionLog.logStartOffset, partitionLog.epochEntries.last?.epoch ?? -1)
            }
            let highWatermark = FollowerOffsets.highWatermark(
                leader: leaderHighWatermark,
                logStartOffset: start,
                logEndOffset: end
            )
            log.highWatermark = highWatermark
            if let newStart = FollowerOffsets.newLogStartOffset(
                leader: leaderLogStartOffset,
                current: start,
                highWatermark: highWatermark
            ) {
                try log.withLog { (partitionLog) throws(StorageError) in
                    _ = try partitionLog.deleteRecords(before: newStart, highWatermark: highWatermark)
                }
            }
            return outcome ?? .fetching(offset: end, lastFetchedEpoch: latest)
        }
    }

    /// OFFSET_OUT_OF_RANGE: asks the leader for its log start and end (ListOffsets) and acts as `OutOfRangeStep`
    /// says.
    private func handleOutOfRange(
        _ key: TopicPartition,
        generation: UInt64,
        sent: PartitionFetchRequest,
        on connection: KafkaPipelinedConnection,
        versions: LeaderAPIVersions
    ) async {
        let start: Int64
        let end: Int64
        do {
            start = try await self.leaderOffset(key, timestamp: -2, sent: sent, on: connection, versions: versions)
            end = try await self.leaderOffset(key, timestamp: -1, sent: sent, on: connection, versions: versions)
        } catch {
            self.logger.info(
                "Could not learn the leader's offsets after OFFSET_OUT_OF_RANGE; retrying after the back-off",
                metadata: ["partition": "\(key)", "error": "\(error)"]
            )
            self.delay(key, generation: generation)
            return
        }
        let statistics = self.statistics
        await self.withDiskWork(key, generation: generation) { followed in
            let log = followed.log
            let ownEnd = log.logEndOffset
            switch OutOfRangeStep.after(leaderLogStartOffset: start, leaderLogEndOffset: end, logEndOffset: ownEnd) {
            case .truncateByEpochs:
                // After the back-off: should the epochs not bring the log below the leader's end, this repeats
                // at that pace rather than as fast as the leader answers.
                return .backOff(.truncating)
            case .restart(let offset):
                try log.withLog { (partitionLog) throws(StorageError) in
                    try partitionLog.truncateFullyAndStart(at: offset)
                }
                log.highWatermark = offset
                statistics.recordTruncation(key, from: ownEnd, to: offset)
                return .fetching(offset: offset, lastFetchedEpoch: -1)
            case .retry(let offset):
                return .backOff(.fetching(offset: offset, lastFetchedEpoch: sent.lastFetchedEpoch))
            }
        }
    }

    /// The leader's earliest (-2) or latest (-1) offset of `key`.
    private func leaderOffset(
        _ key: TopicPartition,
        timestamp: Int64,
        sent: PartitionFetchRequest,
        on connection: KafkaPipelinedConnection,
        versions: LeaderAPIVersions
    ) async throws -> Int64 {
        let response = try await self.send(
            ListOffsetsRequest(
                replicaID: self.configuration.brokerID,
                topics: [
                    .init(
                        name: key.topic,
                        partitions: [
                            .init(
                                partitionIndex: key.partition,
                                currentLeaderEpoch: sent.currentLeaderEpoch,
                                timestamp: timestamp
                            )
                        ]
                    )
                ]
            ),
            version: versions.listOffsets,
            on: connection
        )
        guard let answer = response.topics.first?.partitions.first else {
            throw ReplicaFetcherError.leaderRefused(.unknownServerError)
        }
        guard answer.errorCode == 0 else { throw ReplicaFetcherError.leaderRefused(ErrorCode(answer.errorCode)) }
        return answer.offset
    }

    // MARK: Requests

    /// Sends `request` and awaits its answer for `replica.socket.timeout.ms` plus `waitMs`; past that, or when the
    /// fetcher stops meanwhile, the connection is closed and the call throws.
    private func send<Request: KafkaRequest>(
        _ request: Request,
        version: Int16,
        on connection: KafkaPipelinedConnection,
        waitMs: Int64 = 0
    ) async throws -> Request.Response {
        let pending = try await connection.write(request, version: version)
        let timeout = Duration.milliseconds(self.configuration.socketTimeoutMs + waitMs)
        return try await withThrowingTaskGroup(of: Request.Response?.self) { group in
            group.addTask { try await pending.response() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            guard let first else {
                // The answer's wait ends only when the connection closes.
                connection.close()
                group.cancelAll()
                throw Task.isCancelled ? CancellationError() : ReplicaFetcherError.timedOut(timeout)
            }
            group.cancelAll()
            return first
        }
    }
}

/// Why a fetcher's connection was given up.
enum ReplicaFetcherError: Error, CustomStringConvertible {
    case unsupportedLeader(errorCode: Int16)
    case timedOut(Duration)
    case leaderRefused(ErrorCode)

    var description: String {
        switch self {
        case .unsupportedLeader(let code):
            return "the leader does not serve Fetch v9+, OffsetForLeaderEpoch v3+ and ListOffsets v4+ (ApiVersions "
                + "error \(code))"
        case .timedOut(let timeout): return "no answer from the leader within \(timeout)"
        case .leaderRefused(let error): return "the leader answered \(error)"
        }
    }
}

/// Wakes one waiting task: a signal given while nobody waits is kept for the next wait. Thread-safe: a `Mutex`.
final class WakeSignal: Sendable {
    private let state = Mutex<(signalled: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func signal() {
        let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.signalled = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns when signalled, after `timeout`, or when the task is cancelled.
    func wait(for timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForSignal() }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForSignal() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = self.state.withLock { state -> Bool in
                    if state.signalled || Task.isCancelled {
                        state.signalled = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
