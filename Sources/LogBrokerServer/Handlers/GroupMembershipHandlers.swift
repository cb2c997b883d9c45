import GroupCoordinator
import KafkaMessages
import KafkaWire
import NIOCore

/// JoinGroup (key 11), v0–9, for the classic protocol: the group coordinator holds the answer until the rebalance
/// completes. From v4 a first join without a member id gets MEMBER_ID_REQUIRED with one (KIP-394); v0 has no
/// rebalance timeout (the session timeout stands in, as in Kafka).
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct JoinGroupHandler: KafkaHandler {
    public typealias Request = JoinGroupRequest

    public var versions: ClosedRange<Int16> { 0...9 }

    let coordinator: GroupCoordinator

    public init(coordinator: GroupCoordinator) {
        self.coordinator = coordinator
    }

    public func handle(_ request: JoinGroupRequest, context: RequestContext) async -> JoinGroupResponse {
        let result = await self.coordinator.join(
            GroupCoordinator.JoinRequest(
                groupID: request.groupID,
                memberID: request.memberID,
                instanceID: request.groupInstanceID,
                clientID: context.clientID,
                clientHost: context.remoteAddress?.ipAddress ?? "",
                sessionTimeoutMs: request.sessionTimeoutMs,
                rebalanceTimeoutMs: context.apiVersion >= 1 ? request.rebalanceTimeoutMs : request.sessionTimeoutMs,
                protocolType: request.protocolType,
                protocols: request.protocols.map { ($0.name, Array($0.metadata.readableBytesView)) },
                requiresKnownMemberID: context.apiVersion >= 4,
                supportsSkipAssignment: context.apiVersion >= 9
            )
        )
        return JoinGroupResponse(
            errorCode: result.error.rawValue,
            generationID: result.generation,
            protocolType: result.protocolType,
            protocolName: result.protocolName,
            leader: result.leader,
            skipAssignment: result.skipAssignment,
            memberID: result.memberID,
            members: result.members.map {
                .init(memberID: $0.memberID, groupInstanceID: $0.instanceID, metadata: ByteBuffer(bytes: $0.metadata))
            }
        )
    }
}

/// SyncGroup (key 14), v0–5: the leader's assignment, handed to each member once the leader sent it.
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct SyncGroupHandler: KafkaHandler {
    public typealias Request = SyncGroupRequest

    public var versions: ClosedRange<Int16> { 0...5 }

    let coordinator: GroupCoordinator

    public init(coordinator: GroupCoordinator) {
        self.coordinator = coordinator
    }

    public func handle(_ request: SyncGroupRequest, context: RequestContext) async -> SyncGroupResponse {
        var assignments: [String: [UInt8]] = [:]
        for assignment in request.assignments {
            assignments[assignment.memberID] = Array(assignment.assignment.readableBytesView)
        }
        let result = await self.coordinator.sync(
            groupID: request.groupID,
            generation: request.generationID,
            memberID: request.memberID,
            assignments: assignments
        )
        return SyncGroupResponse(
            errorCode: result.error.rawValue,
            protocolType: result.protocolType,
            protocolName: result.protocolName,
            assignment: ByteBuffer(bytes: result.assignment)
        )
    }
}

/// Heartbeat (key 12), v0–4: keeps a member in; REBALANCE_IN_PROGRESS tells it to rejoin.
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct HeartbeatHandler: KafkaHandler {
    public typealias Request = HeartbeatRequest

    public var versions: ClosedRange<Int16> { 0...4 }

    let coordinator: GroupCoordinator

    public init(coordinator: GroupCoordinator) {
        self.coordinator = coordinator
    }

    public func handle(_ request: HeartbeatRequest, context: RequestContext) async -> HeartbeatResponse {
        let error = await self.coordinator.heartbeat(
            groupID: request.groupID,
            generation: request.generationID,
            memberID: request.memberID
        )
        return HeartbeatResponse(errorCode: error.rawValue)
    }
}

/// LeaveGroup (key 13), v0–5: one member (v0–2) or a batch of them (v3+) leaves; the group rebalances.
///
/// A `Sendable` value sharing the coordinator (an actor); thread-safe.
public struct LeaveGroupHandler: KafkaHandler {
    public typealias Request = LeaveGroupRequest

    public var versions: ClosedRange<Int16> { 0...5 }

    let coordinator: GroupCoordinator

    public init(coordinator: GroupCoordinator) {
        self.coordinator = coordinator
    }

    public func handle(_ request: LeaveGroupRequest, context: RequestContext) async -> LeaveGroupResponse {
        let members = context.apiVersion >= 3 ? request.members : [.init(memberID: request.memberID)]
        let errors = await self.coordinator.leave(groupID: request.groupID, memberIDs: members.map(\.memberID))
        if context.apiVersion < 3 { return LeaveGroupResponse(errorCode: errors.first?.rawValue ?? 0) }
        return LeaveGroupResponse(
            errorCode: 0,
            members: zip(members, errors).map {
                .init(memberID: $0.memberID, groupInstanceID: $0.groupInstanceID, errorCode: $1.rawValue)
            }
        )
    }
}
