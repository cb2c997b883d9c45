import KafkaWire

/// A partition leader's request to change the partition's ISR (Kafka's AlterPartition). The controller applies it
/// only as a compare-and-set: the partition must still be at `partitionEpoch` and `leaderEpoch`, led by `leaderID`
/// at `brokerEpoch`, and every new member must be a replica that is registered and not fenced. A plain value;
/// thread-safe.
public struct ISRChange: Hashable, Sendable {
    public var topicID: KafkaUUID
    public var partition: Int32
    /// The leader asking, and the broker epoch of its registration.
    public var leaderID: Int32
    public var brokerEpoch: Int64
    public var leaderEpoch: Int32
    /// The partition epoch the leader's view is at (the compare of the compare-and-set).
    public var partitionEpoch: Int32
    /// The proposed ISR, in any order; the leader is one of them.
    public var newISR: [ISRMember]

    public init(
        topicID: KafkaUUID,
        partition: Int32,
        leaderID: Int32,
        brokerEpoch: Int64,
        leaderEpoch: Int32,
        partitionEpoch: Int32,
        newISR: [ISRMember]
    ) {
        self.topicID = topicID
        self.partition = partition
        self.leaderID = leaderID
        self.brokerEpoch = brokerEpoch
        self.leaderEpoch = leaderEpoch
        self.partitionEpoch = partitionEpoch
        self.newISR = newISR
    }
}

/// One member of a proposed ISR: a broker and the broker epoch the leader saw it fetch with (KIP-903: a replica
/// that restarted since has another epoch and is refused), -1 when the leader does not know it.
public struct ISRMember: Hashable, Sendable {
    public var brokerID: Int32
    public var brokerEpoch: Int64

    public init(brokerID: Int32, brokerEpoch: Int64 = -1) {
        self.brokerID = brokerID
        self.brokerEpoch = brokerEpoch
    }
}

/// The controller's answer to one `ISRChange`: the refusal, or the partition as committed (its leader, leader
/// epoch, partition epoch and ISR). A plain value; thread-safe.
public struct ISRChangeOutcome: Hashable, Sendable {
    public var topicID: KafkaUUID
    public var partition: Int32
    /// Why the change was refused (nothing was written for it); nil when it was committed.
    public var error: ClusterControlError?
    /// The partition after the change; nil when refused.
    public var state: PartitionState?

    public init(topicID: KafkaUUID, partition: Int32, error: ClusterControlError?, state: PartitionState?) {
        self.topicID = topicID
        self.partition = partition
        self.error = error
        self.state = state
    }
}
