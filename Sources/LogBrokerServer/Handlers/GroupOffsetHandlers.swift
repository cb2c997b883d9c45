import GroupCoordinator
import KafkaMessages
import KafkaWire
import LogStorage
import Replication

/// OffsetCommit (key 8), v0–9: a group member's offsets for the current generation, or a consumer's that only
/// stores offsets here (generation -1, no member id) while the group has no members. Per partition:
/// UNKNOWN_TOPIC_OR_PARTITION for one this broker does not have, OFFSET_METADATA_TOO_LARGE past
/// `offset.metadata.max.bytes`, and the group's refusals (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
/// REBALANCE_IN_PROGRESS).
///
/// v1 carries a commit timestamp per partition (-1: now), kept as the offset's commit time, which is what a
/// group-less consumer's offset expires from (Kafka 3.9's coordinator does the same). v0 has neither generation nor
/// member id: Kafka 3.9 with ZooKeeper wrote it to ZooKeeper, beside the group; with no ZooKeeper here it goes to
/// the same group store as a v1 commit without a generation, so it is refused (UNKNOWN_MEMBER_ID) while the group
/// has members.
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct OffsetCommitHandler: KafkaHandler {
    public typealias Request = OffsetCommitRequest

    public var versions: ClosedRange<Int16> { 0...9 }

    let coordinator: GroupCoordinator
    let replicas: ReplicaManager

    public init(coordinator: GroupCoordinator, replicas: ReplicaManager) {
        self.coordinator = coordinator
        self.replicas = replicas
    }

    public func handle(_ request: OffsetCommitRequest, context: RequestContext) async -> OffsetCommitResponse {
        let now = PartitionLog.nowMs()
        // v2–4 may give the offsets' retention; later versions leave it to offsets.retention.minutes (KIP-211).
        let retention =
            (2...4).contains(context.apiVersion) && request.retentionTimeMs != -1 ? request.retentionTimeMs : nil
        var offsets: [(TopicPartition, CommittedOffset)] = []
        for topic in request.topics {
            for partition in topic.partitions {
                offsets.append((
                    TopicPartition(topic.name, partition.partitionIndex),
                    CommittedOffset(
                        offset: partition.committedOffset,
                        leaderEpoch: context.apiVersion >= 6 ? partition.committedLeaderEpoch : -1,
                        metadata: partition.committedMetadata,
                        commitTimestamp: context.apiVersion == 1 && partition.commitTimestamp != -1
                            ? partition.commitTimestamp : now,
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

/// OffsetFetch (key 9), v0–9: a group's committed offsets, of the listed partitions or (topics null, v2+) all of
/// them; a partition without one, or a group never seen, answers offset -1 with NONE. v8+ asks for several groups
/// at once, each answered in its own entry. Before the coordinator has loaded `__consumer_offsets`, every group
/// gets COORDINATOR_LOAD_IN_PROGRESS: v0–1 have no group error field, so each listed partition carries it (Kafka's
/// `OffsetFetchRequest.getErrorResponse`).
///
/// v0 read ZooKeeper in Kafka 3.9; here it reads the group store as v1 does, with v0's answers: a partition this
/// broker does not have, or one without a committed offset, is offset -1 with UNKNOWN_TOPIC_OR_PARTITION.
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct OffsetFetchHandler: KafkaHandler {
    public typealias Request = OffsetFetchRequest

    public var versions: ClosedRange<Int16> { 0...9 }

    let coordinator: GroupCoordinator
    let replicas: ReplicaManager

    public init(coordinator: GroupCoordinator, replicas: ReplicaManager) {
        self.coordinator = coordinator
        self.replicas = replicas
    }

    public func handle(_ request: OffsetFetchRequest, context: RequestContext) async -> OffsetFetchResponse {
        guard await self.coordinator.isLoaded else {
            let loading = ErrorCode.coordinatorLoadInProgress.rawValue
            if context.apiVersion >= 8 {
                return OffsetFetchResponse(groups: request.groups.map { .init(groupID: $0.groupID, errorCode: loading) })
            }
            guard context.apiVersion <= 1 else { return OffsetFetchResponse(errorCode: loading) }
            return OffsetFetchResponse(
                topics: (request.topics ?? []).map { topic in
                    .init(
                        name: topic.name,
                        partitions: topic.partitionIndexes.map {
                            .init(partitionIndex: $0, committedOffset: -1, metadata: "", errorCode: loading)
                        }
                    )
                }
            )
        }
        if context.apiVersion >= 8 {
            var groups: [OffsetFetchResponse.OffsetFetchResponseGroup] = []
            for group in request.groups {
                let wanted = group.topics.map { $0.flatMap { t in t.partitionIndexes.map { TopicPartition(t.name, $0) } } }
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
        let wanted = request.topics.map { $0.flatMap { t in t.partitionIndexes.map { TopicPartition(t.name, $0) } } }
        let committed = await self.coordinator.committed(groupID: request.groupID, partitions: wanted)
        if context.apiVersion == 0 { return self.answerV0(committed) }
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

    /// v0's answers, as Kafka's ZooKeeper read gave them: no offset (or no such partition) is
    /// UNKNOWN_TOPIC_OR_PARTITION.
    private func answerV0(_ committed: [(TopicPartition, CommittedOffset?)]) -> OffsetFetchResponse {
        OffsetFetchResponse(
            topics: Dictionary(grouping: committed, by: \.0.topic).sorted { $0.key < $1.key }.map { name, entries in
                .init(
                    name: name,
                    partitions: entries.map { partition, offset in
                        let hosted = self.replicas.partition(.init(partition.topic, partition.partition)) != nil
                        guard hosted, let offset else {
                            return .init(
                                partitionIndex: partition.partition,
                                committedOffset: -1,
                                metadata: "",
                                errorCode: ErrorCode.unknownTopicOrPartition.rawValue
                            )
                        }
                        return .init(
                            partitionIndex: partition.partition,
                            committedOffset: offset.offset,
                            metadata: offset.metadata ?? "",
                            errorCode: 0
                        )
                    }
                )
            }
        )
    }
}
