import GroupCoordinator
import KafkaMessages
import KafkaWire
import LogStorage
import Replication

/// OffsetCommit (key 8), v2–9: a group member's offsets for the current generation, or a consumer's that only
/// stores offsets here (generation -1, no member id) while the group has no members. Per partition:
/// UNKNOWN_TOPIC_OR_PARTITION for one this broker does not have, OFFSET_METADATA_TOO_LARGE past
/// `offset.metadata.max.bytes`, and the group's refusals (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
/// REBALANCE_IN_PROGRESS). v0–1 (ZooKeeper-era) are not advertised, as in Kafka 4.
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct OffsetCommitHandler: KafkaHandler {
    public typealias Request = OffsetCommitRequest

    public var versions: ClosedRange<Int16> { 2...9 }

    let coordinator: GroupCoordinator
    let replicas: ReplicaManager

    public init(coordinator: GroupCoordinator, replicas: ReplicaManager) {
        self.coordinator = coordinator
        self.replicas = replicas
    }

    public func handle(_ request: OffsetCommitRequest, context: RequestContext) async -> OffsetCommitResponse {
        let now = PartitionLog.nowMs()
        // v2–4 may give the offsets' retention; later versions leave it to offsets.retention.minutes (KIP-211).
        let retention = context.apiVersion <= 4 && request.retentionTimeMs != -1 ? request.retentionTimeMs : nil
        var offsets: [(GroupTopicPartition, CommittedOffset)] = []
        for topic in request.topics {
            for partition in topic.partitions {
                offsets.append((
                    GroupTopicPartition(topic.name, partition.partitionIndex),
                    CommittedOffset(
                        offset: partition.committedOffset,
                        leaderEpoch: context.apiVersion >= 6 ? partition.committedLeaderEpoch : -1,
                        metadata: partition.committedMetadata,
                        commitTimestamp: now,
                        expireTimestamp: retention.map { now + $0 }
                    )
                ))
            }
        }
        let replicas = self.replicas
        let errors = await self.coordinator.commit(
            groupID: request.groupID,
            generation: request.generationIDOrMemberEpoch,
            memberID: request.memberID,
            offsets: offsets,
            partitionExists: { replicas.partition(.init($0.topic, $0.partition)) != nil }
        )
        var index = 0
        return OffsetCommitResponse(
            topics: request.topics.map { topic in
                .init(
                    name: topic.name,
                    partitions: topic.partitions.map { partition in
                        defer { index += 1 }
                        return .init(partitionIndex: partition.partitionIndex, errorCode: errors[index].rawValue)
                    }
                )
            }
        )
    }
}

/// OffsetFetch (key 9), v1–9: a group's committed offsets, of the listed partitions or (topics null, v2+) all of
/// them; a partition without one, or a group never seen, answers offset -1 with NONE. v8+ asks for several groups
/// at once, each answered in its own entry. Before the coordinator has loaded `__consumer_offsets`, every group
/// gets COORDINATOR_LOAD_IN_PROGRESS.
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct OffsetFetchHandler: KafkaHandler {
    public typealias Request = OffsetFetchRequest

    public var versions: ClosedRange<Int16> { 1...9 }

    let coordinator: GroupCoordinator

    public init(coordinator: GroupCoordinator) {
        self.coordinator = coordinator
    }

    public func handle(_ request: OffsetFetchRequest, context: RequestContext) async -> OffsetFetchResponse {
        guard await self.coordinator.isLoaded else {
            let loading = ErrorCode.coordinatorLoadInProgress.rawValue
            return context.apiVersion >= 8
                ? OffsetFetchResponse(groups: request.groups.map { .init(groupID: $0.groupID, errorCode: loading) })
                : OffsetFetchResponse(errorCode: loading)
        }
        if context.apiVersion >= 8 {
            var groups: [OffsetFetchResponse.OffsetFetchResponseGroup] = []
            for group in request.groups {
                let wanted = group.topics.map { $0.flatMap { t in t.partitionIndexes.map { GroupTopicPartition(t.name, $0) } } }
                let committed = await self.coordinator.committed(groupID: group.groupID, partitions: wanted)
                groups.append(
                    .init(
                        groupID: group.groupID,
                        topics: Dictionary(grouping: committed, by: \.0.topic).sorted { $0.key < $1.key }.map { name, entries in
                            .init(
                                name: name,
                                partitions: entries.map { partition, offset in
                                    .init(
                                        partitionIndex: partition.partition,
                                        committedOffset: offset?.offset ?? -1,
                                        committedLeaderEpoch: offset?.leaderEpoch ?? -1,
                                        metadata: offset?.metadata ?? "",
                                        errorCode: 0
                                    )
                                }
                            )
                        }
                    )
                )
            }
            return OffsetFetchResponse(groups: groups)
        }
        let wanted = request.topics.map { $0.flatMap { t in t.partitionIndexes.map { GroupTopicPartition(t.name, $0) } } }
        let committed = await self.coordinator.committed(groupID: request.groupID, partitions: wanted)
        return OffsetFetchResponse(
            topics: Dictionary(grouping: committed, by: \.0.topic).sorted { $0.key < $1.key }.map { name, entries in
                .init(
                    name: name,
                    partitions: entries.map { partition, offset in
                        .init(
                            partitionIndex: partition.partition,
                            committedOffset: offset?.offset ?? -1,
                            committedLeaderEpoch: offset?.leaderEpoch ?? -1,
                            metadata: offset?.metadata ?? "",
                            errorCode: 0
                        )
                    }
                )
            }
        )
    }
}
