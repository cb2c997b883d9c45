import ClusterControl
import DelayedOperations
import KafkaWire
import LogStorage
import Logging

/// The controller's answer to an ISR change (AlterPartition), as the leader acts on it.
public enum ISRChangeAnswer: Sendable, Hashable {
    /// Committed: the ISR and partition epoch the controller stored, at `leaderEpoch`.
    case committed(isr: [Int32], leaderEpoch: Int32, partitionEpoch: Int32)
    /// Refused with this error (INVALID_UPDATE_VERSION, FENCED_LEADER_EPOCH, INELIGIBLE_REPLICA, ...).
    case refused(ErrorCode)
    /// No answer: the controller could not be reached, or the connection failed.
    case failed
}

/// Where a leader's ISR changes go: Kafka's `AlterPartitionManager`, AlterPartition to the active controller.
/// The sender fills in the leader's broker epoch.
public protocol ISRChangeSending: Sendable {
    func send(_ change: ISRChange, topic: String) async -> ISRChangeAnswer
}

/// A partition this broker follows, as the image gives it (`becomeFollower`).
public struct Following: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var topicID: KafkaUUID
    /// nil while the partition has no leader: nothing is fetched.
    public var leaderID: Int32?
    public var leaderEpoch: Int32
    public var partitionEpoch: Int32

    public init(
        topic: String,
        partition: Int32,
        topicID: KafkaUUID,
        leaderID: Int32?,
        leaderEpoch: Int32,
        partitionEpoch: Int32
    ) {
        self.topic = topic
        self.partition = partition
        self.topicID = topicID
        self.leaderID = leaderID
        self.leaderEpoch = leaderEpoch
        self.partitionEpoch = partitionEpoch
    }
}

extension ReplicaManager {
    // MARK: Following

    /// Makes this broker a follower of each partition (its log created or opened if needed): clients are refused
    /// from now on (parked fetches and produces are woken to answer NOT_LEADER_OR_FOLLOWER), and the fetchers
    /// follow each partition whose leader or leader epoch changed from that leader's endpoint (`endpoints`, by node
    /// id); a partition without a leader, or whose leader has no endpoint here, stops being fetched.
    /// - Returns: per following, in order, nil or why the partition's log could not be opened.
    public func becomeFollower(_ followings: [Following], endpoints: [Int32: LeaderEndpoint]) async -> [(any Error)?] {
        guard !followings.isEmpty else { return [] }
        let logManager = self.logManager
        let opened: [Result<ManagedLog, any Error>]
        do {
            opened = try await self.ioPool.run {
                followings.map { following in
                    Result {
                        let config = logManager.config.topicConfig(following.topic)
                        let log = try logManager.getOrCreateLog(
                            topic: following.topic,
                            partition: following.partition,
                            config: config
                        )
                        try log.assignTopicID(following.topicID)
                        return log
                    }
                }
            }
        } catch {
            return followings.map { _ in error }
        }
        var toFollow: [LeaderEndpoint: [FollowedPartition]] = [:]
        var toUnfollow: [TopicPartition] = []
        var errors: [(any Error)?] = []
        for (following, result) in zip(followings, opened) {
            let topicPartition = TopicPartition(following.topic, following.partition)
            let log: ManagedLog
            switch result {
            case .success(let opened): log = opened
            case .failure(let error):
                errors.append(error)
                continue
            }
            errors.append(nil)
            let hosted = self.host(topicPartition, log: log, topicID: following.topicID)
            let before = hosted.role
            let beforeEpoch = hosted.leaderEpoch
            guard
                hosted.becomeFollower(
                    topicID: following.topicID,
                    leaderID: following.leaderID,
                    leaderEpoch: following.leaderEpoch,
                    partitionEpoch: following.partitionEpoch
                )
            else { continue }
            self.wakeParked(topicPartition)
            let moved = before != .follower(leaderID: following.leaderID) || beforeEpoch != following.leaderEpoch
            guard moved else { continue }
            if let leader = following.leaderID, let endpoint = endpoints[leader] {
                toFollow[endpoint, default: []].append(
                    FollowedPartition(
                        topicPartition: topicPartition,
                        topicID: following.topicID,
                        leaderEpoch: following.leaderEpoch,
                        log: log
                    )
                )
            } else {
                toUnfollow.append(topicPartition)
            }
        }
        if let fetching = self.fetching {
            if !toUnfollow.isEmpty { await fetching.unfollow(toUnfollow) }
            for (leader, partitions) in toFollow { await fetching.follow(partitions, from: leader) }
        }
        let followed = toFollow.values.reduce(0) { $0 + $1.count }
        if followed + toUnfollow.count > 0 {
            self.logger.info(
                "became follower of partitions",
                metadata: [
                    "fetching": "\(followed)", "withoutLeader": "\(toUnfollow.count)",
                    "leaders": "\(toFollow.keys.map(\.description).sorted())",
                ]
            )
        }
        return errors
    }

    // MARK: acks=all

    /// Waits until the high watermark of each partition reached its required offset (the appends' end offsets) or
    /// `timeout` passed, as Kafka's `DelayedProduce`. Each partition's answer: NONE, NOT_ENOUGH_REPLICAS_AFTER_APPEND
    /// when its ISR shrank below `min.insync.replicas` meanwhile, NOT_LEADER_OR_FOLLOWER when this broker stopped
    /// leading it, REQUEST_TIMED_OUT when the wait ended first.
    public func awaitReplication(
        _ appends: [(topicPartition: TopicPartition, requiredOffset: Int64)],
        timeout: Duration
    ) async -> [ErrorCode] {
        let answers = { @Sendable () -> [ErrorCode?] in
            appends.map { self.acknowledgement($0.topicPartition, $0.requiredOffset) }
        }
        if answers().allSatisfy({ $0 != nil }) { return answers().map { $0 ?? .requestTimedOut } }
        let keys = Array(Set(appends.map(\.topicPartition)))
        _ = await self.delayedProduces.wait(on: keys, timeout: timeout) {
            answers().allSatisfy { $0 != nil }
        }
        return answers().map { $0 ?? .requestTimedOut }
    }

    /// One partition's acks=all answer now; nil while its high watermark is below `requiredOffset`.
    private func acknowledgement(_ topicPartition: TopicPartition, _ requiredOffset: Int64) -> ErrorCode? {
        guard let partition = self.partition(topicPartition), let leader = partition.leaderState else {
            return .notLeaderOrFollower
        }
        return leader.acknowledgement(
            of: requiredOffset,
            minInSyncReplicas: Int(partition.log.config.minInSyncReplicas)
        )
    }

    // MARK: ISR changes

    /// Kafka's `maybeShrinkIsr`, for every partition this broker leads: proposes to drop the followers that have
    /// not caught up for `replica.lag.time.max.ms`. Run every half of that (Kafka's schedule).
    public func shrinkISRs(nowMs: Int64? = nil) {
        guard self.isrChanges != nil else { return }
        let nowMs = nowMs ?? Self.nowMs()
        let led = self.hostedPartitions.filter(\.isLeader)
        for partition in led {
            guard let state = partition.leaderState,
                let shrink = state.proposedShrink(
                    leaderLogEndOffset: partition.logEndOffset,
                    nowMs: nowMs,
                    maxLagMs: self.configuration.replicaLagTimeMaxMs
                )
            else { continue }
            self.logger.info(
                "Shrinking the ISR",
                metadata: [
                    "partition": "\(partition.topicPartition)", "isr": "\(state.isr)",
                    "proposed": "\(shrink.map(\.brokerID))", "highWatermark": "\(state.highWatermark)",
                    "logEndOffset": "\(partition.logEndOffset)",
                ]
            )
            self.proposeISRChange(shrink, for: partition)
        }
    }

    /// Every hosted partition.
    var hostedPartitions: [Partition] { self.partitions(matching: { _ in true }) }

    /// Sends `proposed` as the partition's new ISR to the controller, unless a change is in flight or the partition
    /// moved on; the answer (or a failure) settles it, and what it woke is notified.
    func proposeISRChange(_ proposed: [ISRMember], for partition: Partition) {
        guard let sender = self.isrChanges, let state = partition.leaderState else { return }
        let leaderEpoch = state.leaderEpoch
        let partitionEpoch = state.partitionEpoch
        guard
            partition.markISRChangeInFlight(
                proposed.map(\.brokerID),
                leaderEpoch: leaderEpoch,
                partitionEpoch: partitionEpoch
            )
        else { return }
        // The maximal ISR may hold back acks=all produces now; nothing moves forward, so nothing to wake yet.
        let change = ISRChange(
            topicID: partition.topicID,
            partition: partition.topicPartition.partition,
            leaderID: self.configuration.brokerID,
            brokerEpoch: -1,
            leaderEpoch: leaderEpoch,
            partitionEpoch: partitionEpoch,
            newISR: proposed
        )
        let topicPartition = partition.topicPartition
        Task {
            let answer = await sender.send(change, topic: topicPartition.topic)
            let nowMs = Self.nowMs()
            let moved: Bool
            switch answer {
            case .committed(let isr, let answeredEpoch, let newPartitionEpoch):
                guard answeredEpoch == leaderEpoch else {
                    moved = partition.settleISRChange(
                        leaderEpoch: leaderEpoch,
                        partitionEpoch: partitionEpoch,
                        committed: nil,
                        awaitingImage: true,
                        nowMs: nowMs
                    )
                    break
                }
                moved = partition.settleISRChange(
                    leaderEpoch: leaderEpoch,
                    partitionEpoch: partitionEpoch,
                    committed: (isr, newPartitionEpoch),
                    awaitingImage: false,
                    nowMs: nowMs
                )
                self.logger.info(
                    "ISR change committed",
                    metadata: [
                        "partition": "\(topicPartition)", "isr": "\(isr)", "partitionEpoch": "\(newPartitionEpoch)",
                    ]
                )
            case .refused(let error):
                // A stale partition or leader epoch: only a newer image settles it (Kafka waits for the metadata).
                let awaitingImage = error == .invalidUpdateVersion || error == .fencedLeaderEpoch
                moved = partition.settleISRChange(
                    leaderEpoch: leaderEpoch,
                    partitionEpoch: partitionEpoch,
                    committed: nil,
                    awaitingImage: awaitingImage,
                    nowMs: nowMs
                )
                self.logger.warning(
                    "The controller refused an ISR change",
                    metadata: [
                        "partition": "\(topicPartition)", "proposed": "\(proposed.map(\.brokerID))",
                        "error": "\(error)", "waitingForImage": "\(awaitingImage)",
                    ]
                )
            case .failed:
                moved = partition.settleISRChange(
                    leaderEpoch: leaderEpoch,
                    partitionEpoch: partitionEpoch,
                    committed: nil,
                    awaitingImage: false,
                    nowMs: nowMs
                )
            }
            // A committed shrink may let the high watermark move; a changed ISR changes acks=all's answer.
            if moved { self.delayedFetches.notify(topicPartition) }
            self.delayedProduces.notify(topicPartition)
        }
    }
}
