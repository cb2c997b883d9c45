/// What a broker following the image is told, in the order it must apply it: deleted topics first (a new topic of
/// the same name must not lose its logs to the old one's deletion), then broker configs, then each topic's configs
/// before its partitions' leaderships (a new log opens with the topic's config).
public enum MetadataChange: Hashable, Sendable {
    /// The dynamic config set of a broker resource ("" is the cluster-wide default) replaced.
    case brokerConfigs(resource: String, configs: [String: String])
    /// A topic's dynamic configs, on creation and on every change.
    case topicConfigs(topic: String, configs: [String: String])
    /// This broker now leads the partition at a new leader epoch.
    case leadership(PartitionLeadership)
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
            for (index, state) in topic.partitions.enumerated() where state.leader == node {
                let before = old.flatMap { index < $0.partitions.count ? $0.partitions[index] : nil }
                guard before?.leader != node || before?.leaderEpoch != state.leaderEpoch else { continue }
                changes.append(
                    .leadership(
                        PartitionLeadership(
                            topic: topic.name,
                            topicID: topic.id,
                            partition: Int32(index),
                            leaderEpoch: state.leaderEpoch,
                            isr: state.isr
                        )
                    )
                )
            }
        }
        return changes
    }
}
