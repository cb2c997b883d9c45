import KafkaWire

/// What a controller decision makes of the image: the keys to write and the answer to give once they are
/// committed, as Kafka's `ControllerResult` (records and response). A decision that writes nothing answers at
/// once. A plain value; thread-safe.
public struct ControllerResult<Answer: Sendable>: Sendable {
    public var writes: [ImageWrite]
    public var answer: Answer

    public init(writes: [ImageWrite], answer: Answer) {
        self.writes = writes
        self.answer = answer
    }

    /// The writes that turn `image` into `next`, and `answer`.
    public init(from image: ClusterImage, to next: ClusterImage, answer: Answer) {
        self.init(writes: ImageKeys.writes(from: image, to: next), answer: answer)
    }
}

/// The active controller's decisions: pure functions of the image and the live brokers, returning the writes and
/// the answer (the transitions of `ClusterImage` and `PartitionState` do the work). The `ActiveController` commits
/// them, fenced by its epoch, and computes them again on a newer image after a conflict, so each must be a pure
/// function of its inputs. Stateless; thread-safe.
public enum ControllerDecisions {
    /// The cluster id written once, on a store without one; nothing when the image has one.
    public static func creatingCluster(_ image: ClusterImage, id: String) -> ControllerResult<String> {
        guard image.clusterID.isEmpty else { return ControllerResult(writes: [], answer: image.clusterID) }
        var next = image
        next.clusterID = id
        return ControllerResult(from: image, to: next, answer: id)
    }

    /// `registration` recorded and the partitions it led, or that have no live leader, re-elected among `live`
    /// (which includes it; see `ClusterImage.reelecting`): what a (re)starting broker causes. Partitions another
    /// live broker leads keep their epochs. Answers the number of topics touched.
    public static func registeringBroker(
        _ image: ClusterImage,
        _ registration: BrokerRegistration,
        live: Set<Int32>,
        policy: UncleanElectionPolicy? = nil
    ) -> ControllerResult<Int> {
        var next = image
        next.brokers[registration.nodeID] = registration
        let topics = image.reelecting(after: registration.nodeID, live: live, policy: policy)
        for topic in topics { next.topics[topic.name] = topic }
        return ControllerResult(from: image, to: next, answer: topics.count)
    }

    /// Broker `nodeID`, registered at `brokerEpoch`, fenced or unfenced, with the elections that follow in one
    /// pass over the image (KRaft's `handleBrokerFenced` and `handleBrokerUnfenced`):
    /// - fenced: it leaves every ISR (but as the last member), and every partition it led gets the first live ISR
    ///   member in replica order as leader, else (when `policy` allows for the topic) the first live replica, else
    ///   none (`PartitionState.removing`). A fenced broker is passed over again, so a pass a conflict cut short is
    ///   completed.
    /// - unfenced: every partition without a leader elects among the live brokers, now including it
    ///   (`PartitionState.electingIfLeaderless`).
    /// Nothing is written when the registration has moved on to another epoch (a new incarnation), or when nothing
    /// changes. Answers what the pass did, nil when it wrote nothing.
    public static func fencingBroker(
        _ image: ClusterImage,
        _ nodeID: Int32,
        brokerEpoch: Int64,
        fenced: Bool,
        policy: UncleanElectionPolicy? = nil
    ) -> ControllerResult<ElectionSummary?> {
        guard var broker = image.brokers[nodeID], broker.brokerEpoch == brokerEpoch else {
            return ControllerResult(writes: [], answer: nil)
        }
        broker.fenced = fenced
        var next = image
        next.brokers[nodeID] = broker
        let live = ActiveController.liveBrokers(in: next)
        let policy = policy ?? UncleanElectionPolicy(nodeID: nodeID)
        let (topics, summary) =
            fenced
            ? image.passing(policy: policy) { $0.removing(nodeID, live: live, uncleanAllowed: $1) }
            : image.passing(policy: policy) { $0.electingIfLeaderless(live: live, uncleanAllowed: $1) }
        for topic in topics { next.topics[topic.name] = topic }
        let result = ControllerResult(from: image, to: next, answer: Optional(summary))
        return result.writes.isEmpty ? ControllerResult(writes: [], answer: nil) : result
    }

    /// A new topic (see `ClusterImage.creatingTopic`); with `validateOnly` the checks run and nothing is written.
    public static func creatingTopic(
        _ image: ClusterImage,
        _ name: String,
        id: KafkaUUID,
        partitions: Int32,
        replicationFactor: Int16,
        assignment: [[Int32]]?,
        configs: [String: String],
        validateOnly: Bool,
        live: Set<Int32>
    ) throws(ClusterControlError) -> ControllerResult<TopicImage> {
        let topic = try image.creatingTopic(
            name,
            id: id,
            partitions: partitions,
            replicationFactor: replicationFactor,
            assignment: assignment,
            configs: configs,
            live: live
        )
        return Self.recording(topic, in: image, validateOnly: validateOnly)
    }

    /// The topic named `name`, or with id `id` when `name` is nil, removed.
    /// - Throws: `unknownTopic`, `unknownTopicID`, `invalidRequest` for an internal topic.
    public static func deletingTopic(
        _ image: ClusterImage,
        named name: String?,
        id: KafkaUUID?
    ) throws(ClusterControlError) -> ControllerResult<TopicImage> {
        let found: TopicImage?
        if let name {
            found = image.topics[name]
            guard found != nil else { throw .unknownTopic(name) }
        } else {
            found = image.topics.values.first { $0.id == id }
            guard found != nil else { throw .unknownTopicID(id ?? .zero) }
        }
        guard let topic = found, !topic.isInternal else {
            throw .invalidRequest("'\(found?.name ?? "")' is a Kafka internal topic and cannot be deleted")
        }
        var next = image
        next.topics[topic.name] = nil
        return ControllerResult(from: image, to: next, answer: topic)
    }

    /// `name` grown to `count` partitions (see `ClusterImage.addingPartitions`).
    public static func addingPartitions(
        _ image: ClusterImage,
        to name: String,
        count: Int32,
        assignment: [[Int32]]?,
        validateOnly: Bool,
        live: Set<Int32>
    ) throws(ClusterControlError) -> ControllerResult<TopicImage> {
        let topic = try image.addingPartitions(to: name, count: count, assignment: assignment, live: live)
        return Self.recording(topic, in: image, validateOnly: validateOnly)
    }

    /// `topic` put in the image and answered; with `validateOnly` only answered.
    private static func recording(
        _ topic: TopicImage,
        in image: ClusterImage,
        validateOnly: Bool
    ) -> ControllerResult<TopicImage> {
        guard !validateOnly else { return ControllerResult(writes: [], answer: topic) }
        var next = image
        next.topics[topic.name] = topic
        return ControllerResult(from: image, to: next, answer: topic)
    }

    /// The dynamic configs of topic `name` replaced by what `change` makes of them. Given the live brokers and
    /// the controller's `policy`, the topic's partitions without a leader then elect where they can: a change that
    /// enables `unclean.leader.election.enable` brings an offline partition back at once, as KRaft's does.
    /// - Throws: `unknownTopic`, or what `change` throws.
    public static func alteringTopicConfigs(
        _ image: ClusterImage,
        _ name: String,
        validateOnly: Bool,
        live: Set<Int32>? = nil,
        policy: UncleanElectionPolicy? = nil,
        _ change: ([String: String]) throws(ClusterControlError) -> [String: String]
    ) throws(ClusterControlError) -> ControllerResult<[String: String]> {
        guard var topic = image.topics[name] else { throw .unknownTopic(name) }
        topic.configs = try change(topic.configs)
        guard !validateOnly else { return ControllerResult(writes: [], answer: topic.configs) }
        var next = image
        next.topics[name] = topic
        if let live, let policy { Self.electLeaderless(in: &next, topics: [name], live: live, policy: policy) }
        return ControllerResult(from: image, to: next, answer: topic.configs)
    }

    /// The partitions without a leader of `topics` (every topic when nil) elected among `live` where they can be,
    /// unclean where `policy` allows.
    static func electLeaderless(
        in image: inout ClusterImage,
        topics: Set<String>?,
        live: Set<Int32>,
        policy: UncleanElectionPolicy
    ) {
        let (elected, _) = image.passing(policy: policy) { state, uncleanAllowed in
            state.electingIfLeaderless(live: live, uncleanAllowed: uncleanAllowed)
        }
        for topic in elected where topics?.contains(topic.name) ?? true { image.topics[topic.name] = topic }
    }

    /// The dynamic configs of broker resource `resource` replaced by what `change` makes of them; an empty set
    /// removes the key. Given the live brokers and the controller's `policy`, every partition without a leader
    /// then elects where it can (see `alteringTopicConfigs`).
    public static func alteringBrokerConfigs(
        _ image: ClusterImage,
        _ resource: String,
        validateOnly: Bool,
        live: Set<Int32>? = nil,
        policy: UncleanElectionPolicy? = nil,
        _ change: ([String: String]) throws(ClusterControlError) -> [String: String]
    ) throws(ClusterControlError) -> ControllerResult<[String: String]> {
        let configs = try change(image.brokerConfigs[resource] ?? [:])
        guard !validateOnly else { return ControllerResult(writes: [], answer: configs) }
        var next = image
        next.brokerConfigs[resource] = configs.isEmpty ? nil : configs
        if let live, let policy { Self.electLeaderless(in: &next, topics: nil, live: live, policy: policy) }
        return ControllerResult(from: image, to: next, answer: configs)
    }

    /// Preferred leader election (see `ClusterImage.electingPreferredLeaders`).
    public static func electingPreferredLeaders(
        _ image: ClusterImage,
        of topic: String,
        partitions: [Int32],
        live: Set<Int32>
    ) throws(ClusterControlError) -> ControllerResult<[ElectionOutcome]> {
        let (elected, results) = try image.electingPreferredLeaders(of: topic, partitions: partitions, live: live)
        var next = image
        next.topics[topic] = elected
        return ControllerResult(
            from: image,
            to: next,
            answer: results.map { ElectionOutcome(partition: $0.partition, error: $0.error) }
        )
    }

    /// Kafka's producer id block size (`ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
    public static let producerIDBlockSize: Int64 = 1000

    /// The next block of `producerIDBlockSize` producer ids, recorded as handed out.
    /// - Throws: `invalidRequest` when the ids are exhausted.
    public static func allocatingProducerIDBlock(
        _ image: ClusterImage
    ) throws(ClusterControlError) -> ControllerResult<Range<Int64>> {
        let first = image.nextProducerID
        let (end, overflow) = first.addingReportingOverflow(Self.producerIDBlockSize)
        guard !overflow else { throw .invalidRequest("producer ids are exhausted") }
        var next = image
        next.nextProducerID = end
        return ControllerResult(from: image, to: next, answer: first..<end)
    }
}

/// One partition's outcome of a preferred leader election: nil where the preferred replica was elected. A plain
/// value; thread-safe.
public struct ElectionOutcome: Hashable, Sendable {
    public var partition: Int32
    public var error: ClusterControlError?

    public init(partition: Int32, error: ClusterControlError?) {
        self.partition = partition
        self.error = error
    }
}
