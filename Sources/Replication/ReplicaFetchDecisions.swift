import KafkaMessages
import KafkaRecords
import KafkaWire
import LogStorage
import NIOCore

// The followers' decisions as pure functions over values, so they are tested without a leader or a disk: where to
// truncate after the leader says where an epoch ends, what to do after OFFSET_OUT_OF_RANGE, which offsets a
// follower takes from a fetch answer, which fetched bytes it may append, and the client side of a fetch session.

/// An epoch and the offset where it ends (the first offset after it), as OffsetForLeaderEpoch and a Fetch answer's
/// diverging epoch carry them; -1 for either is Kafka's UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET.
public struct EpochEnd: Hashable, Sendable, CustomStringConvertible {
    public var epoch: Int32
    public var endOffset: Int64

    public init(epoch: Int32, endOffset: Int64) {
        self.epoch = epoch
        self.endOffset = endOffset
    }

    public static let undefined = EpochEnd(epoch: -1, endOffset: -1)

    public var description: String { "epoch \(self.epoch) ends at \(self.endOffset)" }
}

/// Where a follower truncates its log, and whether its logs and the leader's then agree (`isComplete`) or it must
/// ask the leader again about the epoch it now ends with.
public struct TruncationStep: Hashable, Sendable, CustomStringConvertible {
    public var offset: Int64
    public var isComplete: Bool

    public init(offset: Int64, isComplete: Bool) {
        self.offset = offset
        self.isComplete = isComplete
    }

    public var description: String { "truncate to \(self.offset)\(self.isComplete ? "" : ", then ask again")" }
}

/// Truncation by leader epoch (KIP-101, KIP-279), as Kafka's fetcher decides it (`getOffsetTruncationState`).
/// Stateless.
public enum FollowerTruncation {
    /// The step after the leader answered `leader` for the follower's latest epoch (or sent it as a Fetch answer's
    /// diverging epoch):
    /// - the leader knows no end for it (UNDEFINED_EPOCH_OFFSET): truncate to the high watermark, the follower's
    ///   only other knowledge of what is committed;
    /// - an offset without an epoch (a leader on the old protocol): truncate to that offset;
    /// - an epoch the follower has no entry at or below (`follower` nil): truncate to the leader's offset;
    /// - an epoch the follower does not have but an earlier one it has (`follower.epoch` smaller): truncate to the
    ///   end of that earlier epoch and ask again for it (not complete);
    /// - otherwise the smaller of where the epoch ends on either side.
    ///
    /// The result never exceeds the follower's log end offset.
    /// - Parameter follower: the follower's own end of `leader.epoch` (`PartitionLog.endOffset(forEpoch:)`, its
    ///   largest epoch at or below it), nil when it has none.
    public static func step(
        leader: EpochEnd,
        follower: EpochEnd?,
        logEndOffset: Int64,
        highWatermark: Int64
    ) -> TruncationStep {
        if leader.endOffset < 0 {
            return TruncationStep(offset: min(highWatermark, logEndOffset), isComplete: true)
        }
        if leader.epoch < 0 {
            return TruncationStep(offset: min(leader.endOffset, logEndOffset), isComplete: true)
        }
        guard let follower, follower.epoch >= 0, follower.endOffset >= 0 else {
            return TruncationStep(offset: min(leader.endOffset, logEndOffset), isComplete: true)
        }
        if follower.epoch != leader.epoch {
            return TruncationStep(offset: min(follower.endOffset, logEndOffset), isComplete: false)
        }
        return TruncationStep(offset: min(follower.endOffset, leader.endOffset, logEndOffset), isComplete: true)
    }

    /// The epoch a follower asks the leader about: its latest, as Kafka asks. An epoch above the leader's current
    /// one cannot be on the leader (each election raises the epoch), so the follower asks for its largest epoch at
    /// or below that instead, and the tail written above it is cut as divergent; in a cluster whose epochs come
    /// from one controller the two are the same. Nil when the log has no such epoch (truncate without asking).
    public static func epochToAsk(entries: [EpochEntry], currentLeaderEpoch: Int32) -> Int32? {
        entries.last(where: { currentLeaderEpoch < 0 || $0.epoch <= currentLeaderEpoch })?.epoch
    }

    /// The step for a log whose batches carry no epochs (Kafka's `truncateToHighWatermark`): nothing to ask the
    /// leader; cut back to the high watermark. An empty log has nothing to cut.
    public static func withoutEpochs(logEndOffset: Int64, highWatermark: Int64) -> TruncationStep {
        TruncationStep(offset: min(highWatermark, logEndOffset), isComplete: true)
    }
}

/// What a follower does after the leader answered OFFSET_OUT_OF_RANGE, given the leader's log start and end
/// (ListOffsets earliest and latest). Kafka's `fetchOffsetAndTruncate`, except that a leader ending below the
/// follower is resolved by leader epochs rather than by cutting to the leader's end (which could drop a tail the
/// epochs would keep).
public enum OutOfRangeStep: Hashable, Sendable {
    /// The leader ends below the follower: truncate by leader epoch again.
    case truncateByEpochs
    /// The follower ends below the leader's log start (the leader deleted what it lacks): empty the log and start
    /// it at the leader's log start.
    case restart(at: Int64)
    /// The follower's end lies within the leader's log: fetch from it again (after the back-off).
    case retry(at: Int64)

    public static func after(leaderLogStartOffset: Int64, leaderLogEndOffset: Int64, logEndOffset: Int64)
        -> OutOfRangeStep
    {
        if leaderLogEndOffset < logEndOffset { return .truncateByEpochs }
        if leaderLogStartOffset > logEndOffset { return .restart(at: leaderLogStartOffset) }
        return .retry(at: logEndOffset)
    }
}

/// The offsets a follower takes from a fetch answer. Stateless.
public enum FollowerOffsets {
    /// The follower's high watermark: the leader's, but never past its own log end (nor below its log start).
    public static func highWatermark(leader: Int64, logStartOffset: Int64, logEndOffset: Int64) -> Int64 {
        max(min(leader, logEndOffset), logStartOffset)
    }

    /// The log start offset to move to when the leader's moved past the follower's (retention or DeleteRecords on
    /// the leader), or nil. As Kafka's `maybeIncrementLogStartOffset`, it moves only up, and never past the
    /// follower's high watermark.
    public static func newLogStartOffset(leader: Int64, current: Int64, highWatermark: Int64) -> Int64? {
        leader > current && leader <= highWatermark ? leader : nil
    }
}

/// The whole, intact batches at the front of a fetched partition's records: what a follower may append.
public struct FetchedBatches: Sendable {
    /// The bytes of the whole batches (a trailing partial batch, which a size limit may cut, is left out).
    public var bytes: ByteBuffer
    public var batchCount: Int
    /// The first batch's base offset and the last batch's last offset; -1 without batches.
    public var firstOffset: Int64
    public var lastOffset: Int64

    /// Why fetched bytes cannot be appended.
    public enum Refusal: Error, Hashable, Sendable, CustomStringConvertible {
        case corrupt(offset: Int64, reason: String)
        /// The first batch lies wholly below the fetch offset: the answer is not for this fetch.
        case belowFetchOffset(batchLastOffset: Int64, fetchOffset: Int64)

        public var description: String {
            switch self {
            case .corrupt(let offset, let reason): return "corrupt batch at offset \(offset): \(reason)"
            case .belowFetchOffset(let last, let fetchOffset):
                return "a batch ending at \(last) answers a fetch from \(fetchOffset)"
            }
        }
    }

    /// Splits `records` into batches and checks each as Kafka's follower append does (`analyzeAndValidateRecords`):
    /// magic 2, a sane size, and the CRC-32C; offsets must ascend. Nothing is copied.
    public static func check(_ records: ByteBuffer, fetchOffset: Int64) throws(Refusal) -> FetchedBatches {
        var splitter = RecordBatchSplitter(records)
        var result = FetchedBatches(bytes: ByteBuffer(), batchCount: 0, firstOffset: -1, lastOffset: -1)
        var next = fetchOffset
        while true {
            let batch: RecordBatch?
            do {
                batch = try splitter.next()
            } catch {
                throw .corrupt(offset: next, reason: "\(error)")
            }
            guard let batch else { break }
            guard batch.magic == 2 else { throw .corrupt(offset: batch.baseOffset, reason: "magic \(batch.magic)") }
            guard batch.lastOffsetDelta >= 0 else {
                throw .corrupt(offset: batch.baseOffset, reason: "last offset delta \(batch.lastOffsetDelta)")
            }
            guard batch.isCRCValid else { throw .corrupt(offset: batch.baseOffset, reason: "CRC-32C does not match") }
            if result.batchCount == 0 {
                guard batch.lastOffset >= fetchOffset else {
                    throw .belowFetchOffset(batchLastOffset: batch.lastOffset, fetchOffset: fetchOffset)
                }
                result.firstOffset = batch.baseOffset
            } else if batch.baseOffset < next {
                throw .corrupt(offset: batch.baseOffset, reason: "offsets go backwards (expected \(next) or more)")
            }
            result.batchCount += 1
            result.lastOffset = batch.lastOffset
            next = batch.lastOffset + 1
        }
        result.bytes = records.getSlice(at: records.readerIndex, length: splitter.wholeBytes) ?? ByteBuffer()
        return result
    }
}

/// Which of a leader's fetchers follows a partition: Kafka's `AbstractFetcherManager.getFetcherId`,
/// `abs(31 * topic.hashCode + partition) % count` with Java's `String.hashCode`, so the spread matches Kafka's.
public func replicaFetcherID(for partition: TopicPartition, fetchersPerLeader count: Int) -> Int {
    var hash: Int32 = 0
    for unit in partition.topic.utf16 { hash = hash &* 31 &+ Int32(unit) }
    let combined = 31 &* hash &+ partition.partition
    return Int(combined & 0x7fff_ffff) % max(1, count)
}

/// The versions a fetcher sends, the newest both it and the leader serve (from the leader's ApiVersions).
public struct LeaderAPIVersions: Hashable, Sendable {
    public var fetch: Int16
    public var offsetForLeaderEpoch: Int16
    public var listOffsets: Int16

    /// What the fetcher can send: Fetch from v9 (the current leader epoch, KIP-320), OffsetForLeaderEpoch from v3
    /// (the replica id), ListOffsets from v4 (the current leader epoch).
    static let fetchRange: ClosedRange<Int16> = 9...FetchRequest.validVersions.upperBound
    static let offsetForLeaderEpochRange: ClosedRange<Int16> = 3...OffsetForLeaderEpochRequest.validVersions.upperBound
    static let listOffsetsRange: ClosedRange<Int16> = 4...ListOffsetsRequest.validVersions.upperBound

    public init(fetch: Int16, offsetForLeaderEpoch: Int16, listOffsets: Int16) {
        self.fetch = fetch
        self.offsetForLeaderEpoch = offsetForLeaderEpoch
        self.listOffsets = listOffsets
    }

    /// The versions to use with a leader advertising `apiKeys`, or nil if it lacks one of the three APIs at a
    /// version the fetcher can send.
    public static func negotiate(_ apiKeys: [ApiVersionsResponse.ApiVersion]) -> LeaderAPIVersions? {
        func newest(_ key: APIKey, _ range: ClosedRange<Int16>) -> Int16? {
            guard let advertised = apiKeys.first(where: { $0.apiKey == key.rawValue }) else { return nil }
            let top = min(advertised.maxVersion, range.upperBound)
            guard top >= max(advertised.minVersion, range.lowerBound) else { return nil }
            return top
        }
        guard let fetch = newest(.fetch, Self.fetchRange),
            let epochs = newest(.offsetForLeaderEpoch, Self.offsetForLeaderEpochRange),
            let offsets = newest(.listOffsets, Self.listOffsetsRange)
        else { return nil }
        return LeaderAPIVersions(fetch: fetch, offsetForLeaderEpoch: epochs, listOffsets: offsets)
    }
}

/// One partition of a follower's fetch, as the fetch session compares it with what the leader's session holds.
public struct PartitionFetchRequest: Hashable, Sendable {
    public var topicPartition: TopicPartition
    public var topicID: KafkaUUID
    public var fetchOffset: Int64
    public var currentLeaderEpoch: Int32
    /// The epoch of the last batch the follower has (v12+, so the leader can answer a diverging epoch), -1 none.
    public var lastFetchedEpoch: Int32
    public var logStartOffset: Int64
    public var maxBytes: Int32

    public init(
        topicPartition: TopicPartition,
        topicID: KafkaUUID,
        fetchOffset: Int64,
        currentLeaderEpoch: Int32,
        lastFetchedEpoch: Int32,
        logStartOffset: Int64,
        maxBytes: Int32
    ) {
        self.topicPartition = topicPartition
        self.topicID = topicID
        self.fetchOffset = fetchOffset
        self.currentLeaderEpoch = currentLeaderEpoch
        self.lastFetchedEpoch = lastFetchedEpoch
        self.logStartOffset = logStartOffset
        self.maxBytes = maxBytes
    }
}

/// The client side of an incremental fetch session (KIP-227; Kafka's `FetchSessionHandler`). The first fetch is
/// full (session id 0, epoch 0) and the leader answers with a session id; later fetches carry that id and the next
/// epoch, and name only the partitions that are new or changed since the last request, plus the ones dropped
/// (`forgotten`). A session error, or a failed request, makes the next fetch full again (closing the old session
/// when it still exists); a leader that keeps no session (id 0) gets full fetches.
///
/// A value, used by one fetcher.
public struct ReplicaFetchSession: Sendable {
    /// What to send: the session fields and the partitions.
    public struct Request: Sendable {
        public var sessionID: Int32
        public var sessionEpoch: Int32
        public var isFull: Bool
        public var partitions: [PartitionFetchRequest]
        public var forgotten: [PartitionFetchRequest]
    }

    /// False below Fetch v7: every fetch is full and sessionless.
    public let usesSessions: Bool
    public private(set) var sessionID: Int32 = 0
    /// The epoch of the next request; 0 means the next is full.
    public private(set) var nextEpoch: Int32 = 0
    /// The partitions the leader's session holds after the last request, as that request left them: the offsets an
    /// answer's partitions belong to.
    public private(set) var sessionPartitions: [TopicPartition: PartitionFetchRequest] = [:]
    /// The Fetch version of the last request (the fetcher's note: topics by name up to v12, by id from v13).
    public var lastVersion: Int16?

    public init(usesSessions: Bool) {
        self.usesSessions = usesSessions
    }

    /// The next request for `wanted` (every partition to fetch now, in order); the session then holds `wanted`.
    public mutating func request(for wanted: [PartitionFetchRequest]) -> Request {
        let previous = self.sessionPartitions
        self.sessionPartitions = Dictionary(wanted.map { ($0.topicPartition, $0) }, uniquingKeysWith: { $1 })
        guard self.usesSessions else {
            return Request(sessionID: 0, sessionEpoch: -1, isFull: true, partitions: wanted, forgotten: [])
        }
        guard self.nextEpoch != 0 else {
            return Request(sessionID: self.sessionID, sessionEpoch: 0, isFull: true, partitions: wanted, forgotten: [])
        }
        let changed = wanted.filter { previous[$0.topicPartition] != $0 }
        let forgotten = previous.values.filter { self.sessionPartitions[$0.topicPartition] == nil }
            .sorted { $0.topicPartition < $1.topicPartition }
        return Request(
            sessionID: self.sessionID,
            sessionEpoch: self.nextEpoch,
            isFull: false,
            partitions: changed,
            forgotten: forgotten
        )
    }

    /// The answer to `request` came with top-level `error` and `sessionID`.
    public mutating func received(_ request: Request, error: ErrorCode, sessionID: Int32) {
        guard self.usesSessions else { return }
        switch error {
        case .none:
            if request.isFull {
                self.sessionID = sessionID
                self.nextEpoch = sessionID == 0 ? 0 : 1
            } else {
                self.nextEpoch = self.nextEpoch == Int32.max ? 1 : self.nextEpoch + 1
            }
        case .fetchSessionIDNotFound:
            self.sessionID = 0
            self.nextEpoch = 0
        default:
            self.nextEpoch = 0
        }
    }

    /// The request failed without an answer (the connection broke): the next fetch is full and closes the session.
    public mutating func failed() {
        self.nextEpoch = 0
    }
}

extension ReplicaFetchSession.Request {
    /// The Fetch request at `version`: the replica id (below v15) or the replica state with `brokerEpoch` (v15+),
    /// the `replica.fetch.*` limits, read-uncommitted (a follower copies everything), topics by name (up to v12) or
    /// id (v13+), and the partitions dropped from the session as forgotten.
    public func fetchRequest(
        version: Int16,
        configuration: ReplicaFetcherConfiguration,
        brokerEpoch: Int64
    ) -> FetchRequest {
        var topics: [FetchRequest.FetchTopic] = []
        for partition in self.partitions {
            let entry = FetchRequest.FetchPartition(
                partition: partition.topicPartition.partition,
                currentLeaderEpoch: partition.currentLeaderEpoch,
                fetchOffset: partition.fetchOffset,
                lastFetchedEpoch: partition.lastFetchedEpoch,
                logStartOffset: partition.logStartOffset,
                partitionMaxBytes: partition.maxBytes
            )
            if let last = topics.last, last.topic == partition.topicPartition.topic {
                topics[topics.count - 1].partitions.append(entry)
            } else {
                topics.append(
                    .init(topic: partition.topicPartition.topic, topicID: partition.topicID, partitions: [entry])
                )
            }
        }
        var forgotten: [FetchRequest.ForgottenTopic] = []
        for partition in self.forgotten {
            if let last = forgotten.last, last.topic == partition.topicPartition.topic {
                forgotten[forgotten.count - 1].partitions.append(partition.topicPartition.partition)
            } else {
                forgotten.append(
                    .init(
                        topic: partition.topicPartition.topic,
                        topicID: partition.topicID,
                        partitions: [partition.topicPartition.partition]
                    )
                )
            }
        }
        let brokerID = configuration.brokerID
        return FetchRequest(
            replicaID: version >= 15 ? -1 : brokerID,
            replicaState: version >= 15
                ? FetchRequest.ReplicaState(replicaID: brokerID, replicaEpoch: brokerEpoch)
                : FetchRequest.ReplicaState(),
            maxWaitMs: configuration.fetchWaitMaxMs,
            minBytes: configuration.fetchMinBytes,
            maxBytes: configuration.fetchResponseMaxBytes,
            isolationLevel: 0,
            sessionID: self.sessionID,
            sessionEpoch: self.sessionEpoch,
            topics: topics,
            forgottenTopicsData: forgotten
        )
    }
}
