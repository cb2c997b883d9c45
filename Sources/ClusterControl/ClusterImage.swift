import KafkaWire

/// One listener a broker advertises (`advertised.listeners`): Metadata answers with the one the request came in on.
public struct BrokerEndpoint: Hashable, Sendable {
    public var listener: String
    public var host: String
    public var port: Int32

    public init(listener: String, host: String, port: Int32) {
        self.listener = listener
        self.host = host
        self.port = port
    }
}

/// A registered broker: its node id, endpoints and rack, the process that registered it and whether it is fenced,
/// as KRaft's `BrokerRegistration`. A plain value; thread-safe.
public struct BrokerRegistration: Hashable, Sendable {
    public var nodeID: Int32
    public var endpoints: [BrokerEndpoint]
    public var rack: String?
    /// New at every start of the broker's process; zero for a registration made in-process by the broker's own
    /// controller (the standalone broker), which has no session to lose.
    public var incarnationID: KafkaUUID
    /// A fenced broker leads nothing new and gets no new replicas: it registered and has not caught up yet, or its
    /// session ended.
    public var fenced: Bool
    /// The store revision that recorded this registration (Kafka's broker epoch); 0 in a registration not yet
    /// committed.
    public var brokerEpoch: Int64

    public init(
        nodeID: Int32,
        endpoints: [BrokerEndpoint],
        rack: String? = nil,
        incarnationID: KafkaUUID = .zero,
        fenced: Bool = false,
        brokerEpoch: Int64 = 0
    ) {
        self.nodeID = nodeID
        self.endpoints = endpoints
        self.rack = rack
        self.incarnationID = incarnationID
        self.fenced = fenced
        self.brokerEpoch = brokerEpoch
    }

    /// Whether an in-process registration made it (see `incarnationID`).
    public var isInProcess: Bool { self.incarnationID == .zero }
}

/// Leader and ISR of one partition, as KRaft's `PartitionRegistration`. Transitions are pure: the controller
/// commits them with compare-and-set. A plain value; thread-safe.
public struct PartitionState: Hashable, Sendable {
    /// In assignment order; the first is the preferred leader.
    public var replicas: [Int32]
    public var isr: [Int32]
    /// nil while no replica can lead (Metadata answers LEADER_NOT_AVAILABLE, leader -1).
    public var leader: Int32?
    /// Bumped by every election, never decreased (clients and followers fence on it).
    public var leaderEpoch: Int32
    /// Bumped by every change of leader or ISR (AlterPartition compares it).
    public var partitionEpoch: Int32

    public init(replicas: [Int32], isr: [Int32], leader: Int32?, leaderEpoch: Int32, partitionEpoch: Int32) {
        self.replicas = replicas
        self.isr = isr
        self.leader = leader
        self.leaderEpoch = leaderEpoch
        self.partitionEpoch = partitionEpoch
    }

    /// Replicas that are not live: Metadata's offline replicas.
    public func offlineReplicas(live: Set<Int32>) -> [Int32] { self.replicas.filter { !live.contains($0) } }

    /// A new partition on `replicas`: all in the ISR, the first leading at epoch 0.
    init(newReplicas replicas: [Int32]) {
        self.init(replicas: replicas, isr: replicas, leader: replicas.first, leaderEpoch: 0, partitionEpoch: 0)
    }

    /// An election among the live in-sync replicas, in assignment order. Every election bumps the leader epoch and
    /// the partition epoch, even when the same broker wins again (a restarted single replica must fence clients
    /// and fetchers that still hold the old epoch). With no live ISR member the leader becomes nil and the ISR is
    /// kept, so a clean recovery stays possible (`removing` and `electingIfLeaderless` add unclean election).
    public func electingLeader(live: Set<Int32>) -> PartitionState {
        var next = self
        let liveISR = self.replicas.filter { self.isr.contains($0) && live.contains($0) }
        if let leader = liveISR.first {
            next.leader = leader
            next.isr = liveISR
        } else {
            next.leader = nil
        }
        next.leaderEpoch = self.leaderEpoch + 1
        next.partitionEpoch = self.partitionEpoch + 1
        return next
    }
}

/// A topic: its id, partitions (index = partition number) and dynamic configs. A plain value; thread-safe.
public struct TopicImage: Hashable, Sendable {
    public var name: String
    public var id: KafkaUUID
    public var partitions: [PartitionState]
    /// The topic's config overrides (Kafka's dynamic topic configs), by Kafka's topic-level names. The controller
    /// stores them as given; the broker validated them against its topic config definitions.
    public var configs: [String: String]

    public init(name: String, id: KafkaUUID, partitions: [PartitionState], configs: [String: String] = [:]) {
        self.name = name
        self.id = id
        self.partitions = partitions
        self.configs = configs
    }

    /// Kafka's internal topics (`Topic.isInternal`): clients may not delete them.
    public var isInternal: Bool { TopicName.internalTopics.contains(self.name) }
}

/// What the replica manager is told about a partition this broker leads: its leader epoch, and the replicas, ISR
/// and partition epoch the leader's replication state follows. A plain value; thread-safe.
public struct PartitionLeadership: Hashable, Sendable {
    public var topic: String
    public var topicID: KafkaUUID
    public var partition: Int32
    public var leaderEpoch: Int32
    public var isr: [Int32]
    public var replicas: [Int32]
    public var partitionEpoch: Int32

    public init(
        topic: String,
        topicID: KafkaUUID,
        partition: Int32,
        leaderEpoch: Int32,
        isr: [Int32],
        replicas: [Int32],
        partitionEpoch: Int32
    ) {
        self.topic = topic
        self.topicID = topicID
        self.partition = partition
        self.leaderEpoch = leaderEpoch
        self.isr = isr
        self.replicas = replicas
        self.partitionEpoch = partitionEpoch
    }
}

/// The cluster's metadata (DESIGN.md "Cluster"): cluster id, brokers, topics with ids, partitions and configs, and
/// dynamic broker configs. Its
/// `revision` is the metadata store revision it was read or written at, as KRaft's metadata offset.
///
/// Every transition is a pure function returning a new value; the `Controller` persists it. A plain value;
/// thread-safe.
public struct ClusterImage: Hashable, Sendable {
    public var clusterID: String
    public var brokers: [Int32: BrokerRegistration]
    public var topics: [String: TopicImage]
    /// Dynamic broker configs by resource name: a node id ("1") for one broker, "" for the cluster-wide default,
    /// as Kafka's BROKER config resources.
    public var brokerConfigs: [String: [String: String]]
    /// The first producer id no broker has been given yet (Kafka's `ProducerIdsRecord.nextProducerId`): ids are
    /// handed out in blocks recorded here before use, so no id is ever given twice, across restarts too.
    public var nextProducerID: Int64
    public var revision: Int64

    public init(
        clusterID: String,
        brokers: [Int32: BrokerRegistration] = [:],
        topics: [String: TopicImage] = [:],
        brokerConfigs: [String: [String: String]] = [:],
        nextProducerID: Int64 = 0,
        revision: Int64 = 0
    ) {
        self.clusterID = clusterID
        self.brokers = brokers
        self.topics = topics
        self.brokerConfigs = brokerConfigs
        self.nextProducerID = nextProducerID
        self.revision = revision
    }

    /// A new topic with `partitions` partitions of `replicationFactor` replicas each, placed on the `live` brokers
    /// as `placing` says, or on `assignment` (one replica list per partition) when given; every
    /// replica in the ISR, the first replica leading at epoch 0.
    /// - Throws: `invalidTopic` for a name Kafka refuses or one that collides with an existing topic once '.' and
    ///   '_' are treated alike, `topicAlreadyExists`, `invalidPartitions` below 1, `invalidReplicationFactor` below
    ///   1 or above the live broker count, `invalidReplicaAssignment`.
    public func creatingTopic(
        _ name: String,
        id: KafkaUUID,
        partitions: Int32,
        replicationFactor: Int16,
        assignment: [[Int32]]? = nil,
        configs: [String: String] = [:],
        live: Set<Int32>
    ) throws(ClusterControlError) -> TopicImage {
        try TopicName.validate(name)
        guard self.topics[name] == nil else { throw .topicAlreadyExists(name) }
        if let existing = self.topics.keys.first(where: { TopicName.collide($0, name) }) {
            throw .invalidTopic(name, reason: "it collides with the existing topic '\(existing)' ('.' and '_' "
                + "are alike in metric names)")
        }
        let placement: [[Int32]]
        if let assignment {
            placement = try Self.checked(assignment, live: live)
        } else {
            guard partitions >= 1 else { throw .invalidPartitions(partitions) }
            guard replicationFactor >= 1, Int(replicationFactor) <= live.count else {
                throw .invalidReplicationFactor(replicationFactor, liveBrokers: live.count)
            }
            placement = self.placing(count: Int(partitions), from: 0, replicationFactor: Int(replicationFactor),
                                     live: live)
        }
        return TopicImage(name: name, id: id, partitions: placement.map(PartitionState.init(newReplicas:)),
                          configs: configs)
    }

    /// `name` grown to `count` partitions, the new ones placed on `assignment` (one replica list per new partition)
    /// or as `placing` continues the topic's placement, with its replication factor.
    /// - Throws: `unknownTopic`, `invalidPartitions` unless `count` is above the current count,
    ///   `invalidReplicaAssignment`, `invalidReplicationFactor` when the live brokers are too few.
    public func addingPartitions(
        to name: String,
        count: Int32,
        assignment: [[Int32]]?,
        live: Set<Int32>
    ) throws(ClusterControlError) -> TopicImage {
        guard var topic = self.topics[name] else { throw .unknownTopic(name) }
        let current = topic.partitions.count
        guard Int(count) > current else {
            throw .invalidPartitions(count, reason: "the topic has \(current) partitions; the count can only grow")
        }
        let replicationFactor = topic.partitions.first?.replicas.count ?? 1
        let placement: [[Int32]]
        if let assignment {
            guard assignment.count == Int(count) - current else {
                throw .invalidReplicaAssignment(
                    "\(assignment.count) assignments for \(Int(count) - current) new partitions")
            }
            placement = try Self.checked(assignment, live: live)
        } else {
            guard replicationFactor <= live.count else {
                throw .invalidReplicationFactor(Int16(replicationFactor), liveBrokers: live.count)
            }
            placement = self.placing(count: Int(count) - current, from: current,
                                     replicationFactor: replicationFactor, live: live)
        }
        topic.partitions += placement.map(PartitionState.init(newReplicas:))
        return topic
    }

    /// Replica lists for partitions `first` ..< `first + count`, placed as Kafka's `AdminUtils.assignReplicasToBrokers`
    /// does with a fixed start (deterministic, so every controller computes the same placement): the first replica
    /// of partition p is the (p mod n)-th broker, which spreads preferred leaders evenly, and the followers are
    /// shifted by one more broker after each round of n partitions, so no two brokers share all their partitions.
    /// When every live broker has a `broker.rack`, the brokers are taken alternately from each rack and a partition's
    /// replicas go to distinct racks first (Kafka's rack-aware assignment); otherwise racks are ignored.
    func placing(count: Int, from first: Int, replicationFactor: Int, live: Set<Int32>) -> [[Int32]] {
        let racks = live.compactMap { self.brokers[$0]?.rack }
        guard racks.count == live.count, Set(racks).count > 1 else {
            let brokers = live.sorted()
            return (first..<(first + count)).map { partition in
                let start = partition % brokers.count
                let shift = partition / brokers.count
                return [brokers[start]] + (0..<(replicationFactor - 1)).map { replica in
                    brokers[Self.replicaIndex(start, shift: shift, replica: replica, brokers: brokers.count)]
                }
            }
        }
        let rackOf = Dictionary(uniqueKeysWithValues: live.map { ($0, self.brokers[$0]?.rack ?? "") })
        let brokers = Self.rackAlternated(rackOf)
        let rackCount = Set(rackOf.values).count
        return (first..<(first + count)).map { partition in
            let start = partition % brokers.count
            let shift = partition / brokers.count
            var replicas = [brokers[start]]
            var racksUsed: Set<String> = [rackOf[brokers[start]]!]
            var candidate = 0
            while replicas.count < replicationFactor {
                let broker = brokers[
                    Self.replicaIndex(start, shift: shift * rackCount, replica: candidate, brokers: brokers.count)
                ]
                candidate += 1
                let rack = rackOf[broker]!
                // A rack or broker already holding a replica is skipped until every rack (broker) holds one.
                guard !racksUsed.contains(rack) || racksUsed.count == rackCount else { continue }
                guard !replicas.contains(broker) || replicas.count == brokers.count else { continue }
                replicas.append(broker)
                racksUsed.insert(rack)
            }
            return replicas
        }
    }

    /// The index of a follower: `start` moved on by 1 + (shift + replica) mod (n - 1), never `start` itself.
    private static func replicaIndex(_ start: Int, shift: Int, replica: Int, brokers: Int) -> Int {
        guard brokers > 1 else { return start }
        return (start + 1 + (shift + replica) % (brokers - 1)) % brokers
    }

    /// Broker ids taken in turn from each rack (racks and the brokers in each in order): rack a's first broker,
    /// rack b's first, ..., then each rack's second, as Kafka's `getRackAlternatedBrokerList`.
    private static func rackAlternated(_ rackOf: [Int32: String]) -> [Int32] {
        let byRack = Dictionary(grouping: rackOf.keys.sorted(), by: { rackOf[$0]! })
        let racks = byRack.keys.sorted()
        let deepest = byRack.values.map(\.count).max() ?? 0
        return (0..<deepest).flatMap { depth in
            racks.compactMap { rack in byRack[rack].flatMap { depth < $0.count ? $0[depth] : nil } }
        }
    }

    /// A manual assignment as Kafka checks it: at least one partition, every one with the same number of
    /// distinct replicas, all on live brokers.
    private static func checked(_ assignment: [[Int32]], live: Set<Int32>) throws(ClusterControlError) -> [[Int32]] {
        guard let first = assignment.first, !first.isEmpty else {
            throw .invalidReplicaAssignment("an assignment needs at least one partition with one replica")
        }
        for (index, replicas) in assignment.enumerated() {
            guard replicas.count == first.count else {
                throw .invalidReplicaAssignment("partition \(index) has \(replicas.count) replicas, not \(first.count)")
            }
            guard Set(replicas).count == replicas.count else {
                throw .invalidReplicaAssignment("partition \(index) names a broker twice: \(replicas)")
            }
            if let missing = replicas.first(where: { !live.contains($0) }) {
                throw .invalidReplicaAssignment("partition \(index) names broker \(missing), which is not live")
            }
        }
        return assignment
    }

    /// The preferred replica (the first assigned) of each listed partition made leader where it is live, in the
    /// ISR and not leading already: Kafka's preferred election.
    /// - Returns: the topic after the elections, and per partition in request order the refusal, nil where the
    ///   preferred replica was elected (`electionNotNeeded` where it already leads, as Kafka reports it).
    /// - Throws: `unknownTopic`.
    public func electingPreferredLeaders(
        of name: String,
        partitions: [Int32],
        live: Set<Int32>
    ) throws(ClusterControlError) -> (topic: TopicImage, results: [(partition: Int32, error: ClusterControlError?)]) {
        guard var topic = self.topics[name] else { throw .unknownTopic(name) }
        let results = partitions.map { partition -> (partition: Int32, error: ClusterControlError?) in
            guard partition >= 0, Int(partition) < topic.partitions.count else {
                return (partition, .unknownTopic(name, partition: partition))
            }
            var state = topic.partitions[Int(partition)]
            guard let preferred = state.replicas.first, state.leader != preferred else {
                return (partition, .electionNotNeeded)
            }
            guard live.contains(preferred), state.isr.contains(preferred) else {
                return (partition, .preferredLeaderNotAvailable(name, partition: partition))
            }
            state.leader = preferred
            state.leaderEpoch += 1
            state.partitionEpoch += 1
            topic.partitions[Int(partition)] = state
            return (partition, nil)
        }
        return (topic, results)
    }

    /// The topics changed by `broker`'s (re)registration, each by name. A partition it led moves to another live
    /// ISR member when there is one (and it leaves that ISR: its restarted log may lack the tail); else, when
    /// `live` holds `broker` (an in-process registration, unfenced at once), it elects again among `live`
    /// (`electingLeader`: a restarted single replica gets a new epoch), and when it does not (a broker process's
    /// registration, fenced until it has caught up), it has no leader until the unfencing elects one. A partition
    /// without a live leader elects among `live`, unclean where `policy` allows. A partition another live broker
    /// leads is untouched: a follower's restart causes no churn of epochs.
    public func reelecting(
        after broker: Int32,
        live: Set<Int32>,
        policy: UncleanElectionPolicy? = nil
    ) -> [TopicImage] {
        let others = live.subtracting([broker])
        return self.passing(policy: policy ?? UncleanElectionPolicy(nodeID: broker)) { state, uncleanAllowed in
            if state.leader == broker {
                guard !live.contains(broker) || state.isr.contains(where: others.contains) else {
                    return state.electingLeader(live: live)
                }
                return state.removing(broker, live: others, uncleanAllowed: uncleanAllowed)
            }
            guard let leader = state.leader, live.contains(leader) else {
                var leaderless = state
                leaderless.leader = nil
                let elected = leaderless.electingIfLeaderless(live: live, uncleanAllowed: uncleanAllowed)
                return elected == leaderless ? state : elected.bumpingEpochs(from: state)
            }
            return state
        }.topics
    }

    /// The partitions `broker` leads, in topic and partition order.
    public func leaderships(of broker: Int32) -> [PartitionLeadership] {
        self.topics.values.sorted { $0.name < $1.name }.flatMap { topic in
            topic.partitions.enumerated().compactMap { index, state in
                state.leader == broker
                    ? PartitionLeadership(
                        topic: topic.name,
                        topicID: topic.id,
                        partition: Int32(index),
                        leaderEpoch: state.leaderEpoch,
                        isr: state.isr,
                        replicas: state.replicas,
                        partitionEpoch: state.partitionEpoch
                    )
                    : nil
            }
        }
    }
}

/// Kafka's topic name rules (`Topic.validate`): 1 to 249 characters from `[a-zA-Z0-9._-]`, and not `.` or `..`.
public enum TopicName {
    public static let maxLength = 249
    /// Kafka's internal topics (`Topic.INTERNAL_TOPICS`).
    public static let internalTopics: Set<String> = ["__consumer_offsets", "__transaction_state"]

    /// Whether two names would share metric names (`Topic.hasCollision`): equal once '.' is read as '_'.
    public static func collide(_ first: String, _ second: String) -> Bool {
        first != second && first.replacingDots() == second.replacingDots()
    }

    public static func validate(_ name: String) throws(ClusterControlError) {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty else { throw .invalidTopic(name, reason: "the name is empty") }
        guard name != ".", name != ".." else { throw .invalidTopic(name, reason: "'.' and '..' are not allowed") }
        guard bytes.count <= Self.maxLength else {
            throw .invalidTopic(name, reason: "longer than \(Self.maxLength) characters")
        }
        let legal = bytes.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
        guard legal else {
            throw .invalidTopic(name, reason: "only ASCII letters, digits, '.', '_' and '-' are allowed")
        }
    }
}

extension String {
    fileprivate func replacingDots() -> String { String(self.map { $0 == "." ? "_" : $0 }) }
}
