import KafkaWire

/// Where the controller's elections read `unclean.leader.election.enable`, most specific first, as KRaft's
/// `ConfigurationControlManager` resolves it: the topic's dynamic config, the controller node's dynamic broker
/// config, the cluster-wide dynamic broker default, then the controller's static setting (`server.properties`,
/// default false). A plain value; thread-safe.
public struct UncleanElectionPolicy: Hashable, Sendable {
    public static let configName = "unclean.leader.election.enable"

    /// The controller's node id: the name of its dynamic BROKER config resource.
    public var nodeID: Int32
    /// The static setting of the controller's process.
    public var staticValue: Bool

    public init(nodeID: Int32, staticValue: Bool = false) {
        self.nodeID = nodeID
        self.staticValue = staticValue
    }

    /// Whether a partition of `topic` may elect a live replica out of the ISR when no ISR member is live.
    public func allows(_ topic: TopicImage, in image: ClusterImage) -> Bool {
        let layers = [topic.configs, image.brokerConfigs[String(self.nodeID)], image.brokerConfigs[""]]
        for layer in layers {
            // Kafka's boolean parsing: "true" in any case; the value was validated when it was set.
            if let value = layer?[Self.configName] { return value.lowercased() == "true" }
        }
        return self.staticValue
    }
}

extension PartitionState {
    /// The leader an election among `live` picks: the first live ISR member in replica order; else, when
    /// `uncleanAllowed`, the first live replica, whose ISR is then itself alone (the configuration accepts losing
    /// what the ISR had); else none.
    func electedLeader(live: Set<Int32>, uncleanAllowed: Bool) -> (leader: Int32, isr: [Int32])? {
        if let leader = self.replicas.first(where: { self.isr.contains($0) && live.contains($0) }) {
            return (leader, self.isr)
        }
        if uncleanAllowed, let leader = self.replicas.first(where: live.contains) { return (leader, [leader]) }
        return nil
    }

    /// Broker `broker` gone from the partition (fenced, or shutting down), as KRaft's `handleBrokerFenced`: it
    /// leaves the ISR, except as its last member (KRaft keeps the last ISR member, so a clean recovery stays
    /// possible), and a partition it led, or one without a leader, elects among `live` (which must not hold
    /// `broker`) as `electedLeader` does; with nobody to elect it has no leader. The leader epoch grows when the
    /// leader changes, the partition epoch on every change; a partition `broker` neither leads nor follows in sync
    /// is unchanged.
    public func removing(_ broker: Int32, live: Set<Int32>, uncleanAllowed: Bool) -> PartitionState {
        guard self.leader == broker || self.isr.contains(broker) else { return self }
        var next = self
        let remaining = self.isr.filter { $0 != broker }
        next.isr = remaining.isEmpty ? self.isr : remaining
        if self.leader == broker || self.leader == nil {
            if let (leader, isr) = next.electedLeader(live: live, uncleanAllowed: uncleanAllowed) {
                (next.leader, next.isr) = (leader, isr)
            } else {
                next.leader = nil
            }
        }
        return next.bumpingEpochs(from: self)
    }

    /// A partition without a leader electing among `live` (clean, then unclean when allowed): what a broker's
    /// unfencing causes, as KRaft's `handleBrokerUnfenced`. The ISR keeps its live members. Unchanged when it has
    /// a leader or nobody can lead.
    public func electingIfLeaderless(live: Set<Int32>, uncleanAllowed: Bool) -> PartitionState {
        guard self.leader == nil, let (leader, isr) = self.electedLeader(live: live, uncleanAllowed: uncleanAllowed)
        else { return self }
        var next = self
        next.leader = leader
        next.isr = isr.filter(live.contains)
        return next.bumpingEpochs(from: self)
    }

    /// Self with the leader epoch bumped when the leader differs from `previous`'s and the partition epoch bumped
    /// when anything differs.
    func bumpingEpochs(from previous: PartitionState) -> PartitionState {
        guard self != previous else { return self }
        var next = self
        if next.leader != previous.leader { next.leaderEpoch = previous.leaderEpoch + 1 }
        next.partitionEpoch = previous.partitionEpoch + 1
        return next
    }
}

/// What one pass over the image did to the partitions: how many changed, moved leader, and were left without one.
/// A plain value; thread-safe.
public struct ElectionSummary: Hashable, Sendable {
    /// Partitions whose leader or ISR changed.
    public var changed = 0
    /// Partitions that got another leader (a broker or none).
    public var leadersMoved = 0
    /// Partitions left without a leader (offline) by this pass.
    public var offline = 0

    public init() {}

    mutating func count(_ before: PartitionState, _ after: PartitionState) {
        guard before != after else { return }
        self.changed += 1
        if before.leader != after.leader { self.leadersMoved += 1 }
        if before.leader != nil && after.leader == nil { self.offline += 1 }
    }
}

extension ClusterImage {
    /// Every partition changed by `transition` (given the topic, whether unclean election is allowed for it, and
    /// the partition), in one pass over the image; only the topics that changed are returned, by name.
    func passing(
        policy: UncleanElectionPolicy,
        _ transition: (PartitionState, Bool) -> PartitionState
    ) -> (topics: [TopicImage], summary: ElectionSummary) {
        var summary = ElectionSummary()
        let topics = self.topics.values.sorted { $0.name < $1.name }.compactMap { topic -> TopicImage? in
            var next = topic
            let uncleanAllowed = policy.allows(topic, in: self)
            for (index, state) in topic.partitions.enumerated() {
                let after = transition(state, uncleanAllowed)
                summary.count(state, after)
                next.partitions[index] = after
            }
            return next == topic ? nil : next
        }
        return (topics, summary)
    }

    /// Whether `broker` leads a partition, or is in an ISR with other members: what fencing it would change.
    public func holdsPartitions(_ broker: Int32) -> Bool {
        self.topics.values.contains { topic in
            topic.partitions.contains { $0.leader == broker || ($0.isr.count > 1 && $0.isr.contains(broker)) }
        }
    }

    /// Whether `broker` leads a partition that has another live ISR member it could hand the leadership to: a
    /// controlled shutdown is not done while it does.
    public func leadsMovablePartitions(_ broker: Int32, live: Set<Int32>) -> Bool {
        self.topics.values.contains { topic in
            topic.partitions.contains { state in
                state.leader == broker && state.isr.contains { $0 != broker && live.contains($0) }
            }
        }
    }
}
