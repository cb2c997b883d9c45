/// A topic and a partition number: the key of a partition everywhere, in storage, replication, the group
/// coordinator and the client. A plain value; thread-safe.
public struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    /// `<topic>-<partition>`, as Kafka prints a partition and names its directory.
    public var description: String { "\(self.topic)-\(self.partition)" }

    public static func < (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }
}
