import KafkaMessages
import KafkaWire
import NIOCore

/// A consumer in a group (the classic protocol): it finds the group's coordinator, joins, and when it is the
/// leader assigns the subscribed topics' partitions to the members with the range or round-robin assignor; it
/// reads its partitions from their committed offsets (else from `autoOffsetReset`), heartbeats while it polls,
/// rejoins when the group rebalances, commits its positions with `commit`, and leaves with `close`.
///
/// Give each group consumer its own `LogBrokerClient`, as each Kafka consumer has its own connections: the
/// coordinator holds a JoinGroup during a rebalance, and the connection carrying it waits meanwhile.
///
/// Thread safety: an actor. Heartbeats go out from `poll`, so poll at least every `heartbeatIntervalMs`.
public actor GroupConsumer {
    public enum Assignor: String, Sendable {
        case range
        case roundRobin = "roundrobin"
    }

    public struct Configuration: Sendable {
        public var sessionTimeoutMs: Int32 = 45_000
        public var rebalanceTimeoutMs: Int32 = 300_000
        public var heartbeatIntervalMs: Int64 = 3_000
        public var assignor: Assignor = .range
        /// Where a partition without a committed offset starts.
        public var autoOffsetReset: Consumer.Position = .beginning
        /// The fetch settings of the consumer underneath.
        public var consumer = Consumer.Configuration()

        public init() {}
    }

    public let groupID: String
    public let topics: [String]
    public let configuration: Configuration
    private let client: LogBrokerClient
    private let consumer: Consumer
    private var coordinator: BrokerConnection?
    private var memberID = ""
    private var generation: Int32 = -1
    private var joined = false
    private var assignment: [TopicPartition] = []
    private var lastHeartbeat = ContinuousClock.now

    public init(client: LogBrokerClient, groupID: String, topics: [String], configuration: Configuration = Configuration()) {
        self.client = client
        self.groupID = groupID
        self.topics = topics
        self.configuration = configuration
        self.consumer = Consumer(client: client, configuration: configuration.consumer)
    }

    /// The partitions this member reads, as of the last rebalance.
    public var assignedPartitions: [TopicPartition] { self.assignment }

    /// The records fetched next, after joining or rejoining the group when needed.
    public func poll() async throws -> [ConsumerRecord] {
        if !self.joined { try await self.join() }
        if ContinuousClock.now - self.lastHeartbeat >= .milliseconds(self.configuration.heartbeatIntervalMs) {
            try await self.heartbeat()
            if !self.joined { try await self.join() }
        }
        guard !self.assignment.isEmpty else {
            // Nothing to fetch (more members than partitions): wait as a fetch would, rather than spin.
            try await Task.sleep(for: .milliseconds(100))
            return []
        }
        return try await self.consumer.poll()
    }

    /// Whether every assigned partition has been read to its end (for `logcat -G -e`).
    public var isAtEnd: Bool {
        get async {
            guard self.joined else { return false }
            return self.assignment.isEmpty ? true : await self.consumer.isAtEnd
        }
    }

    /// The offset after the records `poll` has returned in each assigned partition (its starting offset while none
    /// came): what `commit()` commits.
    public var positions: [TopicPartition: Int64] {
        get async {
            guard self.joined else { return [:] }
            return await self.consumer.deliveredPositions.filter { self.assignment.contains($0.key) }
        }
    }

    /// Commits the positions reached in the assigned partitions, after the records `poll` returned (see
    /// `commit(_:)`).
    @discardableResult
    public func commit() async throws -> Bool {
        guard self.joined, !self.assignment.isEmpty else { return false }
        return try await self.commit(await self.positions)
    }

    /// Commits `offsets` (each the offset of the next record to read, as Kafka's commits are) for those of the
    /// partitions this member is still assigned; the others are another member's to commit since the last rebalance.
    /// Returns false when the coordinator refused the commit because the group is rebalancing or has moved on to a
    /// new generation: the member rejoins on its next poll, and the records are read again by their next owner.
    @discardableResult
    public func commit(_ offsets: [TopicPartition: Int64]) async throws -> Bool {
        guard self.joined, let coordinator = self.coordinator else { return false }
        let positions = offsets.filter { self.assignment.contains($0.key) }
        guard !positions.isEmpty else { return true }
        let (groupID, generation, memberID) = (self.groupID, self.generation, self.memberID)
        let byTopic = Dictionary(grouping: positions, by: \.key.topic)
        let (response, _) = try await coordinator.send(supported: 2...8) { _ in
            OffsetCommitRequest(
                groupID: groupID,
                generationIDOrMemberEpoch: generation,
                memberID: memberID,
                topics: byTopic.sorted { $0.key < $1.key }.map { topic, entries in
                    .init(name: topic, partitions: entries.map {
                        .init(partitionIndex: $0.key.partition, committedOffset: $0.value, committedMetadata: "")
                    })
                }
            )
        }
        for topic in response.topics {
            for partition in topic.partitions where partition.errorCode != 0 {
                if [ErrorCode.rebalanceInProgress, .illegalGeneration, .unknownMemberID].contains(ErrorCode(partition.errorCode)) {
                    self.joined = false
                    return false
                }
                throw ClientError.kafka(partition.errorCode, "group \(groupID) commit of \(topic.name)-\(partition.partitionIndex)")
            }
        }
        return true
    }

    /// Leaves the group, so its partitions move at once instead of after the session timeout.
    public func close() async {
        guard let coordinator = self.coordinator, !self.memberID.isEmpty else { return }
        let (groupID, memberID) = (self.groupID, self.memberID)
        _ = try? await coordinator.send(supported: 0...2) { _ in LeaveGroupRequest(groupID: groupID, memberID: memberID) }
        self.joined = false
    }

    // MARK: Joining

    private func findCoordinator() async throws -> BrokerConnection {
        let groupID = self.groupID
        for _ in 0..<50 {
            let (response, _) = try await self.client.sendToAny(supported: 1...3) { _ in
                FindCoordinatorRequest(key: groupID, keyType: 0)
            }
            if response.errorCode == 0 { return try await self.client.connection(to: response.nodeID) }
            let error = ClientError.kafka(response.errorCode, "group \(groupID) coordinator", message: response.errorMessage)
            guard error.isRetriable else { throw error }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ClientError("group \(groupID): no coordinator found")
    }

    private func join() async throws {
        let coordinator: BrokerConnection
        if let known = self.coordinator, known.isAlive {
            coordinator = known
        } else {
            coordinator = try await self.findCoordinator()
        }
        self.coordinator = coordinator
        var subscription = WireWriter()
        subscription.writeInt16(0)
        ConsumerProtocolSubscription(topics: self.topics.sorted()).encode(into: &subscription, version: 0)
        let metadata = subscription.buffer
        let (groupID, configuration) = (self.groupID, self.configuration)
        var response = JoinGroupResponse()
        for _ in 0..<100 {
            let memberID = self.memberID
            (response, _) = try await coordinator.send(supported: 4...7) { _ in
                JoinGroupRequest(
                    groupID: groupID,
                    sessionTimeoutMs: configuration.sessionTimeoutMs,
                    rebalanceTimeoutMs: configuration.rebalanceTimeoutMs,
                    memberID: memberID,
                    protocolType: "consumer",
                    protocols: [.init(name: configuration.assignor.rawValue, metadata: metadata)]
                )
            }
            switch ErrorCode(response.errorCode) {
            case .memberIDRequired:
                self.memberID = response.memberID
                continue
            case .unknownMemberID:
                self.memberID = ""
                continue
            case .coordinatorLoadInProgress, .rebalanceInProgress:
                try await Task.sleep(for: .milliseconds(100))
                continue
            default:
                break
            }
            break
        }
        guard response.errorCode == 0 else { throw ClientError.kafka(response.errorCode, "group \(groupID) join") }
        self.memberID = response.memberID
        self.generation = response.generationID
        var assignments: [String: [UInt8]] = [:]
        if response.leader == response.memberID {
            assignments = try await self.assign(response.members)
        }
        let (generation, memberID) = (self.generation, self.memberID)
        let plan = assignments
        let (sync, _) = try await coordinator.send(supported: 0...5) { _ in
            SyncGroupRequest(
                groupID: groupID,
                generationID: generation,
                memberID: memberID,
                assignments: plan.map { .init(memberID: $0.key, assignment: ByteBuffer(bytes: $0.value)) }
            )
        }
        if sync.errorCode == ErrorCode.rebalanceInProgress.rawValue { return try await self.join() }
        let syncError = ClientError.kafka(sync.errorCode, "group \(groupID) sync")
        if sync.errorCode != 0 && syncError.isRetriable {
            // The coordinator could not keep the plan (or moved): find it again and rejoin, as librdkafka does.
            self.coordinator = nil
            try await Task.sleep(for: .milliseconds(100))
            return try await self.join()
        }
        guard sync.errorCode == 0 else { throw syncError }
        var reader = WireReader(buffer: sync.assignment)
        var partitions: [TopicPartition] = []
        if sync.assignment.readableBytes >= 2 {
            let version = try reader.readInt16()
            let decoded = try ConsumerProtocolAssignment(from: &reader, version: version)
            partitions = decoded.assignedPartitions.flatMap { t in t.partitions.map { TopicPartition(t.topic, $0) } }
        }
        self.assignment = partitions.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
        await self.consumer.assign(self.assignment, from: self.configuration.autoOffsetReset)
        for (partition, offset) in try await self.committed(self.assignment) {
            await self.consumer.seek(partition, to: .offset(offset))
        }
        self.joined = true
        self.lastHeartbeat = .now
    }

    /// The leader's plan: each member's subscription decoded, partitions dealt by the configured assignor.
    private func assign(_ members: [JoinGroupResponse.JoinGroupResponseMember]) async throws -> [String: [UInt8]] {
        var subscriptions: [String: Set<String>] = [:]
        for member in members {
            var reader = WireReader(buffer: member.metadata)
            let version = try reader.readInt16()
            subscriptions[member.memberID] = Set(try ConsumerProtocolSubscription(from: &reader, version: version).topics)
        }
        var counts: [String: Int] = [:]
        for topic in Set(subscriptions.values.joined()).sorted() {
            counts[topic] = (try? await self.client.topic(topic).partitions.count) ?? 0
        }
        let plan = Self.plan(subscriptions: subscriptions, partitionCounts: counts, assignor: self.configuration.assignor)
        return plan.mapValues { partitions in
            var writer = WireWriter()
            writer.writeInt16(0)
            let byTopic = Dictionary(grouping: partitions, by: \.topic)
            ConsumerProtocolAssignment(
                assignedPartitions: byTopic.sorted { $0.key < $1.key }.map { .init(topic: $0.key, partitions: $0.value.map(\.partition)) }
            ).encode(into: &writer, version: 0)
            return Array(writer.buffer.readableBytesView)
        }
    }

    /// Kafka's range and round-robin assignors. Range: per topic, the members subscribed to it in member id order
    /// get consecutive partitions, the first ones one more when it does not divide. Round-robin: every subscribed
    /// partition in (topic, partition) order, dealt in turn to the members in id order that subscribe to its topic.
    public static func plan(
        subscriptions: [String: Set<String>],
        partitionCounts: [String: Int],
        assignor: Assignor
    ) -> [String: [TopicPartition]] {
        var plan: [String: [TopicPartition]] = Dictionary(uniqueKeysWithValues: subscriptions.keys.map { ($0, []) })
        let members = subscriptions.keys.sorted()
        let topics = partitionCounts.keys.sorted()
        switch assignor {
        case .range:
            for topic in topics {
                let takers = members.filter { subscriptions[$0]?.contains(topic) == true }
                guard !takers.isEmpty else { continue }
                let count = partitionCounts[topic] ?? 0
                var next = 0
                for (index, member) in takers.enumerated() {
                    let share = count / takers.count + (index < count % takers.count ? 1 : 0)
                    plan[member, default: []] += (next..<(next + share)).map { TopicPartition(topic, Int32($0)) }
                    next += share
                }
            }
        case .roundRobin:
            var turn = 0
            for topic in topics {
                for partition in 0..<(partitionCounts[topic] ?? 0) {
                    let takers = members.filter { subscriptions[$0]?.contains(topic) == true }
                    guard !takers.isEmpty else { continue }
                    plan[takers[turn % takers.count], default: []].append(TopicPartition(topic, Int32(partition)))
                    turn += 1
                }
            }
        }
        return plan
    }

    private func committed(_ partitions: [TopicPartition]) async throws -> [TopicPartition: Int64] {
        guard let coordinator = self.coordinator, !partitions.isEmpty else { return [:] }
        let groupID = self.groupID
        let byTopic = Dictionary(grouping: partitions, by: \.topic)
        let (response, _) = try await coordinator.send(supported: 2...7) { _ in
            OffsetFetchRequest(
                groupID: groupID,
                topics: byTopic.sorted { $0.key < $1.key }.map { .init(name: $0.key, partitionIndexes: $0.value.map(\.partition)) }
            )
        }
        guard response.errorCode == 0 else { throw ClientError.kafka(response.errorCode, "group \(groupID) offsets") }
        var offsets: [TopicPartition: Int64] = [:]
        for topic in response.topics {
            for partition in topic.partitions where partition.committedOffset >= 0 {
                offsets[TopicPartition(topic.name, partition.partitionIndex)] = partition.committedOffset
            }
        }
        return offsets
    }

    private func heartbeat() async throws {
        guard let coordinator = self.coordinator else { return }
        let (groupID, generation, memberID) = (self.groupID, self.generation, self.memberID)
        let (response, _) = try await coordinator.send(supported: 0...4) { _ in
            HeartbeatRequest(groupID: groupID, generationID: generation, memberID: memberID)
        }
        self.lastHeartbeat = .now
        switch ErrorCode(response.errorCode) {
        case .none:
            break
        case .rebalanceInProgress, .illegalGeneration:
            self.joined = false
        case .unknownMemberID:
            self.joined = false
            self.memberID = ""
        default:
            throw ClientError.kafka(response.errorCode, "group \(groupID) heartbeat")
        }
    }
}
