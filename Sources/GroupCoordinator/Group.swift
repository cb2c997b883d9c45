import KafkaWire

/// A committed offset (OffsetCommit's fields, what OffsetFetch answers).
public struct CommittedOffset: Hashable, Sendable {
    public var offset: Int64
    public var leaderEpoch: Int32
    public var metadata: String?
    public var commitTimestamp: Int64
    /// When the offset expires, from OffsetCommit v2–4's `retention_time_ms`; nil: `offsets.retention.minutes`
    /// applies (KIP-211).
    public var expireTimestamp: Int64?

    public init(offset: Int64, leaderEpoch: Int32, metadata: String?, commitTimestamp: Int64, expireTimestamp: Int64? = nil) {
        self.offset = offset
        self.leaderEpoch = leaderEpoch
        self.metadata = metadata
        self.commitTimestamp = commitTimestamp
        self.expireTimestamp = expireTimestamp
    }
}

/// Kafka's classic group states (`GroupState`).
public enum GroupState: String, Hashable, Sendable {
    case empty = "Empty"
    case preparingRebalance = "PreparingRebalance"
    case completingRebalance = "CompletingRebalance"
    case stable = "Stable"
    case dead = "Dead"
}

/// One member of a group: who it is, what it supports, what it was assigned, and the answers it waits for.
struct Member {
    let id: String
    var instanceID: String?
    var clientID: String
    var clientHost: String
    var sessionTimeoutMs: Int32
    var rebalanceTimeoutMs: Int32
    var protocolType: String
    var protocols: [(name: String, metadata: [UInt8])]
    var assignment: [UInt8] = []
    /// The ticket of its JoinGroup, parked until the rebalance completes.
    var joinWaiter: UInt64?
    /// The ticket of its SyncGroup, parked until the leader's assignment arrives.
    var syncWaiter: UInt64?
    /// When it is dropped without a heartbeat.
    var sessionDeadline: ContinuousClock.Instant

    func supports(_ name: String) -> Bool { self.protocols.contains { $0.name == name } }
    func metadata(for name: String) -> [UInt8] { self.protocols.first { $0.name == name }?.metadata ?? [] }
}

/// A classic group (Kafka's `GroupMetadata`): members in join order, the generation, the chosen protocol, and
/// the committed offsets.
struct Group {
    let id: String
    var state: GroupState = .empty
    var generation: Int32 = 0
    var protocolType: String?
    var protocolName: String?
    var leader: String?
    var members: [String: Member] = [:]
    /// Join order, which decides the leader when the old one left.
    var order: [String] = []
    /// Member ids handed out with MEMBER_ID_REQUIRED (KIP-394) and not yet used to join.
    var pending: Set<String> = []
    var offsets: [TopicPartition: CommittedOffset] = [:]
    /// When the group last became empty (wall-clock ms), from which its offsets' retention counts.
    var emptySinceMs: Int64?
    /// Bumped by every rebalance, so a timer of an older one does nothing.
    var rebalanceEpoch = 0
    /// The first rebalance of an empty group still waits `group.initial.rebalance.delay.ms`.
    var initialDelayPending = false

    init(id: String) {
        self.id = id
    }

    /// The group as it is kept once stable or empty.
    func stored(at nowMs: Int64) -> StoredGroup {
        let name = self.protocolName ?? ""
        return StoredGroup(
            protocolType: self.protocolType ?? "",
            generation: self.generation,
            protocolName: self.protocolName,
            leader: self.leader,
            stateTimestamp: nowMs,
            members: self.order.compactMap { id in
                self.members[id].map {
                    StoredMember(
                        memberID: id, instanceID: $0.instanceID, clientID: $0.clientID, clientHost: $0.clientHost,
                        rebalanceTimeoutMs: $0.rebalanceTimeoutMs, sessionTimeoutMs: $0.sessionTimeoutMs,
                        subscription: $0.metadata(for: name), assignment: $0.assignment
                    )
                }
            }
        )
    }

    /// Restores a kept group: stable with its members, whose sessions start now, or empty. Offsets stay as they are.
    mutating func restore(_ stored: StoredGroup) {
        self.protocolType = stored.protocolType.isEmpty ? nil : stored.protocolType
        self.generation = stored.generation
        self.protocolName = stored.protocolName
        self.leader = stored.leader
        self.pending = []
        self.members = [:]
        self.order = stored.members.map(\.memberID)
        for kept in stored.members {
            self.members[kept.memberID] = Member(
                id: kept.memberID, instanceID: kept.instanceID, clientID: kept.clientID, clientHost: kept.clientHost,
                sessionTimeoutMs: kept.sessionTimeoutMs, rebalanceTimeoutMs: kept.rebalanceTimeoutMs,
                protocolType: stored.protocolType,
                protocols: [(stored.protocolName ?? "", kept.subscription)], assignment: kept.assignment,
                sessionDeadline: .now + .milliseconds(Int64(kept.sessionTimeoutMs))
            )
        }
        self.state = stored.members.isEmpty ? .empty : .stable
        self.emptySinceMs = stored.members.isEmpty ? stored.stateTimestamp : nil
    }

    /// The protocol every member supports with the most votes (each member votes for the first of its protocols
    /// that all support), as Kafka's `selectProtocol`; ties go to the one listed first by the first member.
    func selectProtocol() -> String? {
        guard let first = self.order.first.flatMap({ self.members[$0] }) else { return nil }
        let candidates = first.protocols.map(\.name).filter { name in self.members.values.allSatisfy { $0.supports(name) } }
        var votes: [String: Int] = [:]
        for member in self.members.values {
            if let vote = member.protocols.first(where: { candidates.contains($0.name) })?.name { votes[vote, default: 0] += 1 }
        }
        let best = votes.values.max() ?? 0
        return candidates.first { (votes[$0] ?? 0) == best }
    }

    /// Whether `protocols` of `type` can join: the same protocol type as the group's members and at least one
    /// protocol every member (and this one) supports.
    func accepts(type: String, protocols: [String], replacing memberID: String?) -> Bool {
        let others = self.members.values.filter { $0.id != memberID }
        guard !others.isEmpty else { return !protocols.isEmpty }
        guard others.allSatisfy({ $0.protocolType == type }) else { return false }
        return protocols.contains { name in others.allSatisfy { $0.supports(name) } }
    }
}

/// JoinGroup's answer.
public struct JoinResult: Sendable {
    public var error: ErrorCode
    public var generation: Int32 = -1
    public var protocolType: String?
    public var protocolName: String?
    public var leader: String = ""
    public var memberID: String = ""
    /// For the leader only: every member with its metadata for the chosen protocol.
    public var members: [(memberID: String, instanceID: String?, metadata: [UInt8])] = []
    /// A restarted static leader keeps the current assignment instead of computing one (JoinGroup v9, KIP-814).
    public var skipAssignment = false

    init(error: ErrorCode, memberID: String = "") {
        self.error = error
        self.memberID = memberID
    }
}

/// SyncGroup's answer.
public struct SyncResult: Sendable {
    public var error: ErrorCode
    public var protocolType: String?
    public var protocolName: String?
    public var assignment: [UInt8] = []
}

/// Where a coordinator keeps committed offsets and group state (the broker's `__consumer_offsets`).
public protocol GroupStore: Sendable {
    /// Keeps `offsets` of `groupID` durably before it returns; a nil offset deletes the partition's entry.
    func persist(groupID: String, offsets: [(TopicPartition, CommittedOffset?)]) async throws
    /// Keeps the group's state durably before it returns; nil: the group is gone.
    func persist(groupID: String, group: StoredGroup?) async throws
}

/// One record a `GroupStore` kept, as `GroupCoordinator.load` replays them.
public enum StoredRecord: Sendable {
    /// A committed offset; nil: deleted.
    case offset(groupID: String, partition: TopicPartition, offset: CommittedOffset?)
    /// A group's state after a rebalance or once it emptied (Kafka's `GroupMetadataValue`); nil: deleted.
    case group(groupID: String, StoredGroup?)
}

/// A group's state as it is kept: the generation, its protocol, leader and members with their assignments.
public struct StoredGroup: Hashable, Sendable {
    public var protocolType: String
    public var generation: Int32
    public var protocolName: String?
    public var leader: String?
    /// When the group entered its current state (wall-clock ms).
    public var stateTimestamp: Int64
    public var members: [StoredMember]

    public init(
        protocolType: String, generation: Int32, protocolName: String?, leader: String?, stateTimestamp: Int64,
        members: [StoredMember]
    ) {
        self.protocolType = protocolType
        self.generation = generation
        self.protocolName = protocolName
        self.leader = leader
        self.stateTimestamp = stateTimestamp
        self.members = members
    }
}

/// A member as it is kept: its subscription for the group's protocol and its assignment.
public struct StoredMember: Hashable, Sendable {
    public var memberID: String
    public var instanceID: String?
    public var clientID: String
    public var clientHost: String
    public var rebalanceTimeoutMs: Int32
    public var sessionTimeoutMs: Int32
    public var subscription: [UInt8]
    public var assignment: [UInt8]

    public init(
        memberID: String, instanceID: String?, clientID: String, clientHost: String, rebalanceTimeoutMs: Int32,
        sessionTimeoutMs: Int32, subscription: [UInt8], assignment: [UInt8]
    ) {
        self.memberID = memberID
        self.instanceID = instanceID
        self.clientID = clientID
        self.clientHost = clientHost
        self.rebalanceTimeoutMs = rebalanceTimeoutMs
        self.sessionTimeoutMs = sessionTimeoutMs
        self.subscription = subscription
        self.assignment = assignment
    }
}

/// A group as DescribeGroups reports it.
public struct GroupDescription: Sendable {
    public var groupID: String
    public var state: GroupState
    public var protocolType: String
    public var protocolName: String
    public var members: [MemberDescription]
}

/// A member as DescribeGroups reports it: its metadata for the group's protocol and its assignment.
public struct MemberDescription: Sendable {
    public var memberID: String
    public var instanceID: String?
    public var clientID: String
    public var clientHost: String
    public var metadata: [UInt8]
    public var assignment: [UInt8]
}
