import KafkaMessages
import KafkaWire
import LogStorage
import Replication
import Synchronization

/// Incremental fetch sessions (KIP-227), as Kafka's `FetchManager` and `FetchSessionCache` keep them.
///
/// A consumer fetching the same partitions over and over names them once: its full fetch (session id 0, epoch 0)
/// creates a session, and its next fetches (that id, epochs 1, 2, ...) list only partitions whose fetch offset or
/// limits changed, plus `forgotten_topics_data` for the ones it drops. The answer to an incremental fetch holds
/// only partitions with something new: records, an error, or a changed high watermark, last stable offset or log
/// start offset. The broker checks the epoch (INVALID_FETCH_SESSION_EPOCH) and the id (FETCH_SESSION_ID_NOT_FOUND,
/// also for a session evicted meanwhile); a full fetch with an id closes that session, and epoch -1 (FINAL_EPOCH)
/// asks for a fetch without one.
///
/// The cache holds at most `max.incremental.fetch.session.cache.slots` sessions. When it is full, a new session
/// takes the slot of the least recently used one if that was idle for `evictionAfter` (Kafka: 120 s), else that
/// of the session with the fewest partitions if the new one has more (Kafka's rule, which protects big sessions,
/// those that save the most); otherwise no session is created and the answer carries session id 0, which tells the
/// client to go on with full fetches. Kafka's extra protection of follower sessions does not apply: this broker
/// has no followers yet.
///
/// Thread-safe: one `Mutex`; shared by every connection.
public final class FetchSessionCache: Sendable {
    /// One partition of a session: what the client last asked for, and what the broker last answered.
    struct CachedPartition {
        var read: PartitionRead
        var highWatermark: Int64 = -1
        var lastStableOffset: Int64 = -1
        var logStartOffset: Int64 = -1
    }

    struct Session {
        let id: Int32
        /// The epoch the next incremental fetch must carry.
        var epoch: Int32
        /// The partitions in the order they were added (the order of incremental answers).
        var partitions: [CachedPartition]
        var lastUsed: ContinuousClock.Instant
    }

    private struct State {
        var sessions: [Int32: Session] = [:]
        var generator = SystemRandomNumberGenerator()
    }

    /// What one Fetch request asks for, once checked against the cache.
    public enum Context: Sendable {
        /// A top-level error, answered with no partitions (FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH).
        case error(ErrorCode)
        /// Read the request's partitions and answer with all of them; `createSession` says whether to try to keep a
        /// session for them afterwards (epoch 0) or not (epoch -1, or a version without sessions).
        case full(createSession: Bool)
        /// Read the session's partitions and answer with those that changed (`complete`).
        case incremental(sessionID: Int32, reads: [PartitionRead])
    }

    public let capacity: Int
    let evictionAfter: Duration
    private let state = Mutex(State())

    public init(capacity: Int, evictionAfter: Duration = .seconds(120)) {
        self.capacity = max(0, capacity)
        self.evictionAfter = evictionAfter
    }

    /// The number of sessions held.
    public var count: Int { self.state.withLock { $0.sessions.count } }

    /// Checks a Fetch v7+ request's session id and epoch, applies an incremental request's changes to its session
    /// and advances the session's epoch.
    public func context(for request: FetchRequest, version: Int16) -> Context {
        guard version >= 7 else { return .full(createSession: false) }
        let epoch = request.sessionEpoch
        if epoch == 0 || epoch == -1 {
            // A full fetch closes the session it names.
            if request.sessionID != 0 { _ = self.state.withLock { $0.sessions.removeValue(forKey: request.sessionID) } }
            return .full(createSession: epoch == 0)
        }
        return self.state.withLock { state in
            guard var session = state.sessions[request.sessionID] else { return .error(.fetchSessionIDNotFound) }
            guard session.epoch == epoch else { return .error(.invalidFetchSessionEpoch) }
            for topic in request.forgottenTopicsData {
                session.partitions.removeAll {
                    $0.read.topicPartition.topic == topic.topic
                        && topic.partitions.contains($0.read.topicPartition.partition)
                }
            }
            for read in Self.reads(of: request, version: version) {
                if let index = session.partitions.firstIndex(where: { $0.read.topicPartition == read.topicPartition }) {
                    session.partitions[index].read = read
                } else {
                    session.partitions.append(CachedPartition(read: read))
                }
            }
            session.epoch = Self.nextEpoch(epoch)
            session.lastUsed = .now
            state.sessions[session.id] = session
            return .incremental(sessionID: session.id, reads: session.partitions.map(\.read))
        }
    }

    /// After a full fetch was answered with `results` (one per read, in order): keeps a session for those
    /// partitions if there is room, and returns its id, or 0 when none was created.
    public func createSession(_ reads: [PartitionRead], results: [PartitionReadResult]) -> Int32 {
        guard self.capacity > 0 else { return 0 }
        return self.state.withLock { state in
            if state.sessions.count >= self.capacity, !self.evict(for: reads.count, in: &state) { return 0 }
            var id: Int32 = 0
            while id <= 0 || state.sessions[id] != nil { id = Int32.random(in: 1...Int32.max, using: &state.generator) }
            var partitions = reads.map { CachedPartition(read: $0) }
            for index in partitions.indices { Self.remember(results[index], in: &partitions[index]) }
            state.sessions[id] = Session(id: id, epoch: 1, partitions: partitions, lastUsed: .now)
            return id
        }
    }

    /// After an incremental fetch read `results` (one per read of its context, in order): which of them the
    /// answer carries. The session remembers what it sent, so an unchanged partition is left out next time too.
    public func complete(sessionID: Int32, reads: [PartitionRead], results: [PartitionReadResult]) -> [Bool] {
        self.state.withLock { state in
            guard var session = state.sessions[sessionID] else { return results.map { _ in true } }
            let include = zip(reads.indices, zip(reads, results)).map { position, pair in
                let (read, result) = pair
                // The reads came from this session in its order; search only if it changed meanwhile.
                let index =
                    position < session.partitions.count
                        && session.partitions[position].read.topicPartition == read.topicPartition
                    ? position
                    : session.partitions.firstIndex { $0.read.topicPartition == read.topicPartition }
                guard let index else { return true }
                let cached = session.partitions[index]
                Self.remember(result, in: &session.partitions[index])
                return result.error != .none || result.range != nil || result.divergingEpoch != nil
                    || result.highWatermark != cached.highWatermark
                    || result.lastStableOffset != cached.lastStableOffset
                    || result.logStartOffset != cached.logStartOffset
            }
            state.sessions[sessionID] = session
            return include
        }
    }

    /// Makes room for a session of `size` partitions; false if no session may be evicted for it.
    private func evict(for size: Int, in state: inout State) -> Bool {
        let now = ContinuousClock.now
        if let stale = state.sessions.values.min(by: { $0.lastUsed < $1.lastUsed }),
            now - stale.lastUsed > self.evictionAfter
        {
            state.sessions[stale.id] = nil
            return true
        }
        let smallest = state.sessions.values.min {
            ($0.partitions.count, $0.lastUsed) < ($1.partitions.count, $1.lastUsed)
        }
        guard let smallest, smallest.partitions.count < size else { return false }
        state.sessions[smallest.id] = nil
        return true
    }

    private static func remember(_ result: PartitionReadResult, in cached: inout CachedPartition) {
        cached.highWatermark = result.highWatermark
        cached.lastStableOffset = result.lastStableOffset
        cached.logStartOffset = result.logStartOffset
    }

    /// Kafka's `nextEpoch`: epochs wrap from Int32.max to 1, never to 0 (initial) or -1 (final).
    static func nextEpoch(_ epoch: Int32) -> Int32 {
        epoch == Int32.max ? 1 : epoch + 1
    }

    /// The partitions a Fetch request names, in order.
    static func reads(of request: FetchRequest, version: Int16) -> [PartitionRead] {
        var reads: [PartitionRead] = []
        for topic in request.topics {
            for partition in topic.partitions {
                reads.append(
                    PartitionRead(
                        topicPartition: TopicPartition(topic.topic, partition.partition),
                        fetchOffset: partition.fetchOffset,
                        maxBytes: Int(max(0, partition.partitionMaxBytes)),
                        currentLeaderEpoch: version >= 9 ? partition.currentLeaderEpoch : -1,
                        lastFetchedEpoch: version >= 12 ? partition.lastFetchedEpoch : -1
                    )
                )
            }
        }
        return reads
    }
}
