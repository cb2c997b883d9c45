import KafkaMessages
import KafkaWire
import NIOCore

/// A consumer group as DescribeGroups reports it, with each member's assigned partitions.
public struct GroupDescription: Hashable, Sendable {
    public struct Member: Hashable, Sendable {
        public var memberID: String
        public var clientID: String
        public var host: String
        public var assignment: [TopicPartition]
    }

    public var groupID: String
    public var state: String
    public var protocolName: String
    public var members: [Member]
}

extension Admin {
    /// Every group with its state.
    public func listGroups() async throws -> [(groupID: String, state: String)] {
        let (response, _) = try await self.client.sendToAny(supported: 0...4) { _ in ListGroupsRequest() }
        guard response.errorCode == 0 else { throw ClientError.kafka(response.errorCode, "ListGroups") }
        return response.groups.map { ($0.groupID, $0.groupState) }.sorted { $0.0 < $1.0 }
    }

    /// The group's state and members; the consumer protocol's assignments are decoded.
    public func describeGroup(_ groupID: String) async throws -> GroupDescription {
        let (response, _) = try await self.client.sendToAny(supported: 0...5) { _ in
            DescribeGroupsRequest(groups: [groupID])
        }
        guard let group = response.groups.first else { throw ClientError("group \(groupID): no answer") }
        guard group.errorCode == 0 else { throw ClientError.kafka(group.errorCode, "group \(groupID)") }
        return GroupDescription(
            groupID: groupID,
            state: group.groupState,
            protocolName: group.protocolData,
            members: group.members.map { member in
                var reader = WireReader(buffer: member.memberAssignment)
                var assignment: [TopicPartition] = []
                if member.memberAssignment.readableBytes >= 2, let version = try? reader.readInt16(),
                    let decoded = try? ConsumerProtocolAssignment(from: &reader, version: version)
                {
                    assignment = decoded.assignedPartitions.flatMap { topic in
                        topic.partitions.map { TopicPartition(topic.topic, $0) }
                    }
                }
                return GroupDescription.Member(
                    memberID: member.memberID,
                    clientID: member.clientID,
                    host: member.clientHost,
                    assignment: assignment.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
                )
            }
        )
    }

    /// The group's committed offsets (every partition it has one for).
    public func committedOffsets(_ groupID: String) async throws -> [TopicPartition: Int64] {
        let (response, _) = try await self.client.sendToAny(supported: 2...7) { _ in
            OffsetFetchRequest(groupID: groupID, topics: nil)
        }
        guard response.errorCode == 0 else { throw ClientError.kafka(response.errorCode, "group \(groupID)") }
        var offsets: [TopicPartition: Int64] = [:]
        for topic in response.topics {
            for partition in topic.partitions where partition.committedOffset >= 0 {
                offsets[TopicPartition(topic.name, partition.partitionIndex)] = partition.committedOffset
            }
        }
        return offsets
    }

    /// Commits `offsets` for the group as a consumer outside it (generation -1): the group must have no members.
    public func commitOffsets(_ groupID: String, _ offsets: [TopicPartition: Int64]) async throws {
        let byTopic = Dictionary(grouping: offsets, by: \.key.topic)
        let (response, _) = try await self.client.sendToAny(supported: 2...8) { _ in
            OffsetCommitRequest(
                groupID: groupID,
                generationIDOrMemberEpoch: -1,
                memberID: "",
                topics: byTopic.sorted { $0.key < $1.key }.map { topic, entries in
                    .init(
                        name: topic,
                        partitions: entries.sorted { $0.key.partition < $1.key.partition }.map {
                            .init(partitionIndex: $0.key.partition, committedOffset: $0.value, committedMetadata: "")
                        }
                    )
                }
            )
        }
        for topic in response.topics {
            for partition in topic.partitions where partition.errorCode != 0 {
                throw ClientError.kafka(partition.errorCode, "group \(groupID), \(topic.name)-\(partition.partitionIndex)")
            }
        }
    }

    public func deleteGroup(_ groupID: String) async throws {
        let (response, _) = try await self.client.sendToAny(supported: 0...2) { _ in
            DeleteGroupsRequest(groupsNames: [groupID])
        }
        if let result = response.results.first, result.errorCode != 0 {
            throw ClientError.kafka(result.errorCode, "group \(groupID)")
        }
    }

    /// The offsets of `partitions` at `position` (ListOffsets at each leader).
    public func offsets(_ partitions: [TopicPartition], at position: Consumer.Position) async throws
        -> [TopicPartition: Int64]
    {
        try await Consumer(client: self.client).offsets(partitions, at: position)
    }
}
