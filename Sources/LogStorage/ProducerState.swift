import KafkaWire

/// One batch remembered for a producer: its sequence range, its offset range and its max timestamp.
///
/// A value type; thread-safe.
public struct ProducerBatchMetadata: Hashable, Sendable, CustomStringConvertible {
    public var firstSequence: Int32
    public var lastSequence: Int32
    public var firstOffset: Int64
    public var lastOffset: Int64
    /// The batch's max timestamp (the broker's clock on LogAppendTime topics).
    public var timestamp: Int64

    public init(firstSequence: Int32, lastSequence: Int32, firstOffset: Int64, lastOffset: Int64, timestamp: Int64) {
        self.firstSequence = firstSequence
        self.lastSequence = lastSequence
        self.firstOffset = firstOffset
        self.lastOffset = lastOffset
        self.timestamp = timestamp
    }

    public var description: String {
        "sequences \(self.firstSequence)...\(self.lastSequence) at offsets \(self.firstOffset)...\(self.lastOffset)"
    }
}

/// What a partition knows about one producer id (Kafka's `ProducerStateEntry`): its epoch, the last five batches it
/// appended (a retry of any of them is a duplicate, which is why idempotent producers keep at most five requests in
/// flight) and the timestamp of its last batch, which `producer.id.expiration.ms` is measured from.
///
/// A value type; thread-safe.
public struct ProducerStateEntry: Hashable, Sendable {
    /// Kafka's `NUM_BATCHES_TO_RETAIN`.
    public static let batchesToRetain = 5

    public var producerId: Int64
    public var producerEpoch: Int16
    /// Oldest first, at most `batchesToRetain`.
    public internal(set) var batches: [ProducerBatchMetadata]
    public var lastTimestamp: Int64

    public init(producerId: Int64, producerEpoch: Int16, batches: [ProducerBatchMetadata] = [], lastTimestamp: Int64) {
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.batches = batches
        self.lastTimestamp = lastTimestamp
    }

    /// The last sequence appended under the current epoch, -1 (Kafka's NO_SEQUENCE) when none.
    public var lastSequence: Int32 { self.batches.last?.lastSequence ?? -1 }
    public var firstSequence: Int32 { self.batches.first?.firstSequence ?? -1 }

    /// The retained batch with exactly this sequence range (a retry of it), if any.
    public func batch(firstSequence: Int32, lastSequence: Int32) -> ProducerBatchMetadata? {
        self.batches.first { $0.firstSequence == firstSequence && $0.lastSequence == lastSequence }
    }

    /// Applies a batch without checking it (followers, recovery, and leaders after `check`). A new epoch forgets
    /// the batches of the old one, as Kafka's `maybeUpdateProducerEpoch` does; a control batch (a transaction
    /// marker) only moves the epoch and the timestamp.
    mutating func apply(_ batch: ProducerBatch) {
        if batch.producerEpoch != self.producerEpoch {
            self.batches.removeAll(keepingCapacity: true)
            self.producerEpoch = batch.producerEpoch
        }
        self.lastTimestamp = batch.maxTimestamp
        guard !batch.isControl else { return }
        if self.batches.count == Self.batchesToRetain { self.batches.removeFirst() }
        self.batches.append(
            ProducerBatchMetadata(
                firstSequence: batch.firstSequence,
                lastSequence: batch.lastSequence,
                firstOffset: batch.firstOffset,
                lastOffset: batch.lastOffset,
                timestamp: batch.maxTimestamp
            )
        )
    }
}

/// The producer fields of one batch, read from its header (no records are touched).
///
/// A value type; thread-safe.
public struct ProducerBatch: Hashable, Sendable {
    public var producerId: Int64
    public var producerEpoch: Int16
    public var firstSequence: Int32
    public var lastSequence: Int32
    public var firstOffset: Int64
    public var lastOffset: Int64
    public var maxTimestamp: Int64
    public var isControl: Bool

    /// The batch's fields; the last sequence is the base sequence plus the last offset delta, wrapping past
    /// Int32.max to 0 as Kafka's `DefaultRecordBatch.incrementSequence` does.
    public init(
        producerId: Int64,
        producerEpoch: Int16,
        baseSequence: Int32,
        firstOffset: Int64,
        lastOffset: Int64,
        maxTimestamp: Int64,
        isControl: Bool = false
    ) {
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.firstSequence = baseSequence
        self.lastSequence = Self.sequence(baseSequence, plus: Int32(clamping: lastOffset - firstOffset))
        self.firstOffset = firstOffset
        self.lastOffset = lastOffset
        self.maxTimestamp = maxTimestamp
        self.isControl = isControl
    }

    /// `sequence + increment`, wrapping past Int32.max to 0.
    public static func sequence(_ sequence: Int32, plus increment: Int32) -> Int32 {
        if sequence > Int32.max - increment { return increment - (Int32.max - sequence) - 1 }
        return sequence + increment
    }
}

/// What `ProducerStateManager.check` decided for a batch from a client.
public enum ProducerCheck: Hashable, Sendable {
    /// Append it.
    case append
    /// A retry of a batch already in the log: answer with its offsets and write nothing.
    case duplicate(ProducerBatchMetadata)
}

/// Why a client's batch was refused by the producer-state checks. `kafkaErrorCode` is what Produce answers.
///
/// A value type; thread-safe.
public struct ProducerStateError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// A gap in the sequence, or a new epoch that does not start at sequence 0.
        case outOfOrderSequence
        /// The producer's epoch is older than the one the partition last saw.
        case invalidProducerEpoch
    }

    public var kind: Kind
    public var description: String

    public var kafkaErrorCode: ErrorCode {
        switch self.kind {
        case .outOfOrderSequence: .outOfOrderSequenceNumber
        case .invalidProducerEpoch: .invalidProducerEpoch
        }
    }
}

/// Kafka's `ProducerAppendInfo` checks for a batch from a client, as one pure function of the partition's state.
///
/// `current` is the entry before this append (nil for a producer id the partition does not know, or whose state
/// expired); `pending` is what earlier batches of the same append made of it (nil when this is the first). Rules:
/// - the same epoch and the exact sequence range of a retained batch: a duplicate;
/// - an epoch below the last seen: INVALID_PRODUCER_EPOCH;
/// - a new (higher) epoch for a known producer must start at sequence 0, else OUT_OF_ORDER_SEQUENCE_NUMBER;
/// - the same epoch must continue at the last sequence + 1 (Int32.max wraps to 0), else OUT_OF_ORDER_SEQUENCE_NUMBER;
/// - an unknown producer id is accepted at any sequence (Kafka since 2.5, KIP-360: its state may have been
///   removed by retention, DeleteRecords or expiry, so the broker no longer answers UNKNOWN_PRODUCER_ID).
public func checkProducerBatch(
    _ batch: ProducerBatch,
    current: ProducerStateEntry?,
    pending: ProducerStateEntry? = nil
) -> Result<ProducerCheck, ProducerStateError> {
    if let current, current.producerEpoch == batch.producerEpoch,
        let original = current.batch(firstSequence: batch.firstSequence, lastSequence: batch.lastSequence)
    {
        return .success(.duplicate(original))
    }
    let currentEpoch = pending?.producerEpoch ?? current?.producerEpoch ?? -1
    let producer = "producer \(batch.producerId) at offset \(batch.firstOffset)"
    if batch.producerEpoch < currentEpoch {
        return .failure(
            ProducerStateError(
                kind: .invalidProducerEpoch,
                description: "Epoch \(batch.producerEpoch) of \(producer) is below the last seen epoch \(currentEpoch)"
            )
        )
    }
    if batch.producerEpoch != currentEpoch {
        if batch.firstSequence != 0 && currentEpoch != -1 {
            return .failure(
                ProducerStateError(
                    kind: .outOfOrderSequence,
                    description: "New epoch \(batch.producerEpoch) of \(producer) starts at sequence "
                        + "\(batch.firstSequence), not 0 (current epoch \(currentEpoch))"
                )
            )
        }
        return .success(.append)
    }
    let lastSequence: Int32
    if let pending, !pending.batches.isEmpty {
        lastSequence = pending.lastSequence
    } else if let current, current.producerEpoch == batch.producerEpoch {
        lastSequence = current.lastSequence
    } else {
        lastSequence = -1
    }
    let inSequence =
        Int64(batch.firstSequence) == Int64(lastSequence) + 1 || (batch.firstSequence == 0 && lastSequence == .max)
    guard (current?.producerEpoch ?? -1) == -1 || inSequence else {
        return .failure(
            ProducerStateError(
                kind: .outOfOrderSequence,
                description: "Out of order sequence \(batch.firstSequence) for \(producer): the last sequence was "
                    + "\(lastSequence)"
            )
        )
    }
    return .success(.append)
}
