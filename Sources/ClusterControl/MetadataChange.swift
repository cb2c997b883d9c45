import KafkaWire

/// What a broker following the image is told, in the order it must apply it: deleted topics first (a new topic of
/// the same name must not lose its logs to the old one's deletion), then broker configs, then each topic's configs
/// before its partitions' roles (a new log opens with the topic's config).
public enum MetadataChange: Hashable, Sendable {
    /// The dynamic config set of a broker resource ("" is the cluster-wide default) replaced.
    case brokerConfigs(resource: String, configs: [String: String])
    /// A topic's dynamic configs, on creation and on every change.
    case topicConfigs(topic: String, configs: [String: String])
    /// This broker leads the partition: at a new leader epoch, or its ISR, replicas or partition epoch changed.
    case leadership(PartitionLeadership)
    /// This broker is a replica of the partition and another broker leads it (or none does: leader nil, nothing to
    /// fetch), at a new leader or partition epoch.
    case following(PartitionFollowing)
    /// The topic left the image: its logs go.
    case topicDeleted(TopicImage)

    /// What a follower on `node` must apply to go from `image` to `next`, in this type's order.
    public static func changes(from image: ClusterImage, to next: ClusterImage, node: Int32) -> [MetadataChange] {
        var changes: [MetadataChange] = []
        for topic in image.topics.values.sorted(by: { $0.name < $1.name }) where next.topics[topic.name]?.id != topic.id
        {
            changes.append(.topicDeleted(topic))
        }
        for resource in Set(image.brokerConfigs.keys).union(next.brokerConfigs.keys).sorted()
        where image.brokerConfigs[resource] != next.brokerConfigs[resource] {
            changes.append(.brokerConfigs(resource: resource, configs: next.brokerConfigs[resource] ?? [:]))
        }
        for topic in next.topics.values.sorted(by: { $0.name < $1.name }) {
            let old = image.topics[topic.name].flatMap { $0.id == topic.id ? $0 : nil }
            if old?.configs != topic.configs || old == nil {
                changes.append(.topicConfigs(topic: topic.name, configs: topic.configs))
            }
            for (index, state) in topic.partitions.enumerated() {
                let before = old.flatMap { index < $0.partitions.count ? $0.partitions[index] : nil }
                if let change = Self.change(of: topic, partition: Int32(index), from: before, to: state, node: node) {
                    changes.append(change)
                }
            }
        }
        return changes
    }

    /// What `node` is told about one partition going from `before` to `state`: its leadership when it leads and
    /// anything the leader acts on changed, its following when it is another replica and the leader, leader epoch
    /// or partition epoch changed (or it just became a replica); nil otherwise.
    static func change(
        of topic: TopicImage,
        partition: Int32,
        from before: PartitionState?,
        to state: PartitionState,
        node: Int32
    ) -> MetadataChange? {
        if state.leader == node {
            guard
                before?.leader != node || before?.leaderEpoch != state.leaderEpoch
                    || before?.partitionEpoch != state.partitionEpoch || before?.isr != state.isr
                    || before?.replicas != state.replicas
            else { return nil }
            return .leadership(
                PartitionLeadership(
                    topic: topic.name,
                    topicID: topic.id,
                    partition: partition,
                    leaderEpoch: state.leaderEpoch,
                    isr: state.isr,
                    replicas: state.replicas,
                    partitionEpoch: state.partitionEpoch
                )
            )
        }
        guard state.replicas.contains(node) else { return nil }
        if let before, before.replicas.contains(node), before.leader == state.leader,
            before.leaderEpoch == state.leaderEpoch, before.partitionEpoch == state.partitionEpoch
        {
            return nil
        }
        return .following(
            PartitionFollowing(
                topic: topic.name,
                topicID: topic.id,
                partition: partition,
                leader: state.leader,
                leaderEpoch: state.leaderEpoch,
                partitionEpoch: state.partitionEpoch
            )
        )
    }
}

/// What the replica manager is told about a partition this broker replicates but does not lead. A plain value;
/// thread-safe.
public struct PartitionFollowing: Hashable, Sendable {
    public var topic: String
    public var topicID: KafkaUUID
    public var partition: Int32
    /// nil while the partition has no leader (offline): the broker stops fetching it.
    public var leader: Int32?
    public var leaderEpoch: Int32
    public var partitionEpoch: Int32

    public init(
        topic: String,
        topicID: KafkaUUID,
        partition: Int32,
        leader: Int32?,
        leaderEpoch: Int32,
        partitionEpoch: Int32
    ) {
        self.topic = topic
        self.topicID = topicID
        self.partition = partition
        self.leader = leader
        self.leaderEpoch = leaderEpoch
        self.partitionEpoch = partitionEpoch
    }
}
