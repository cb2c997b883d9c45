import GroupCoordinator
import KafkaMessages
import KafkaWire
import NIOCore

/// DescribeGroups (key 15), v0–5: each group's state, protocol type and chosen protocol, and its members with
/// client id, host, their metadata for that protocol and their assignment. A group never seen is "Dead" with no
/// members and NONE, as Kafka answers below v6 (v6, GROUP_ID_NOT_FOUND, is not advertised).
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct DescribeGroupsHandler: KafkaHandler {
    public typealias Request = DescribeGroupsRequest

    public var versions: ClosedRange<Int16> { 0...5 }

    let coordinator: GroupCoordinator

    public init(coordinator: GroupCoordinator) {
        self.coordinator = coordinator
    }

    public func handle(_ request: DescribeGroupsRequest, context: RequestContext) async -> DescribeGroupsResponse {
        var groups: [DescribeGroupsResponse.DescribedGroup] = []
        for groupID in request.groups {
            let group = await self.coordinator.describe(groupID: groupID)
            groups.append(
                .init(
                    errorCode: 0,
                    groupID: groupID,
                    groupState: group.state.rawValue,
                    protocolType: group.protocolType,
                    protocolData: group.protocolName,
                    members: group.members.map {
                        .init(
                            memberID: $0.memberID,
                            groupInstanceID: $0.instanceID,
                            clientID: $0.clientID,
                            clientHost: $0.clientHost,
                            memberMetadata: ByteBuffer(bytes: $0.metadata),
                            memberAssignment: ByteBuffer(bytes: $0.assignment)
                        )
                    }
                )
            )
        }
        return DescribeGroupsResponse(groups: groups)
    }
}

/// ListGroups (key 16), v0–5: every group with its protocol type and (v4+) state, filtered by state (v4+).
/// Every group here is a classic one (the type filter of v5 keeps "classic" or all).
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct ListGroupsHandler: KafkaHandler {
    public typealias Request = ListGroupsRequest

    public var versions: ClosedRange<Int16> { 0...5 }

    let coordinator: GroupCoordinator

    public init(coordinator: GroupCoordinator) {
        self.coordinator = coordinator
    }

    public func handle(_ request: ListGroupsRequest, context: RequestContext) async -> ListGroupsResponse {
        let types = Set(request.typesFilter.map { $0.lowercased() })
        guard context.apiVersion < 5 || types.isEmpty || types.contains("classic") else {
            return ListGroupsResponse(groups: [])
        }
        let states = context.apiVersion >= 4 ? Set(request.statesFilter) : []
        let groups = await self.coordinator.list(states: states)
        return ListGroupsResponse(
            errorCode: 0,
            groups: groups.map {
                .init(groupID: $0.groupID, protocolType: $0.protocolType, groupState: $0.state.rawValue,
                      groupType: "classic")
            }
        )
    }
}

/// DeleteGroups (key 42), v0–2: empty groups and their committed offsets go (tombstones in
/// `__consumer_offsets`); NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND for a group never seen.
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct DeleteGroupsHandler: KafkaHandler {
    public typealias Request = DeleteGroupsRequest

    public var versions: ClosedRange<Int16> { 0...2 }

    let coordinator: GroupCoordinator

    public init(coordinator: GroupCoordinator) {
        self.coordinator = coordinator
    }

    public func handle(_ request: DeleteGroupsRequest, context: RequestContext) async -> DeleteGroupsResponse {
        let errors = await self.coordinator.delete(groupIDs: request.groupsNames)
        return DeleteGroupsResponse(
            results: zip(request.groupsNames, errors).map { .init(groupID: $0, errorCode: $1.rawValue) }
        )
    }
}

/// OffsetDelete (key 47), v0: a group's committed offsets of some partitions go, except for topics its members
/// subscribe to (GROUP_SUBSCRIBED_TO_TOPIC, read from the consumer protocol's subscriptions).
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct OffsetDeleteHandler: KafkaHandler {
    public typealias Request = OffsetDeleteRequest

    public var versions: ClosedRange<Int16> { 0...0 }

    let coordinator: GroupCoordinator

    public init(coordinator: GroupCoordinator) {
        self.coordinator = coordinator
    }

    public func handle(_ request: OffsetDeleteRequest, context: RequestContext) async -> OffsetDeleteResponse {
        let group = await self.coordinator.describe(groupID: request.groupID)
        var subscribed: Set<String> = []
        if group.protocolType == "consumer" {
            for member in group.members {
                var reader = WireReader(buffer: ByteBuffer(bytes: member.metadata))
                if let version = try? reader.readInt16(),
                    let subscription = try? ConsumerProtocolSubscription(from: &reader, version: version)
                {
                    subscribed.formUnion(subscription.topics)
                }
            }
        }
        let partitions = request.topics.flatMap { topic in
            topic.partitions.map { TopicPartition(topic.name, $0.partitionIndex) }
        }
        let (groupError, errors) = await self.coordinator.deleteOffsets(
            groupID: request.groupID,
            partitions: partitions,
            subscribed: subscribed
        )
        guard groupError == .none else { return OffsetDeleteResponse(errorCode: groupError.rawValue) }
        var index = 0
        return OffsetDeleteResponse(
            errorCode: 0,
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
