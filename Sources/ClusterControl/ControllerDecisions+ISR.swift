import KafkaWire

extension ControllerDecisions {
    /// Leaders' ISR changes (Kafka's AlterPartition), each a compare-and-set applied in order, as KRaft's
    /// `ReplicationControlManager.alterPartition` checks them:
    /// - an unknown topic id: `unknownTopicID`; an unknown partition: `unknownTopic` (UNKNOWN_TOPIC_OR_PARTITION);
    /// - a requester whose registration is not at the broker epoch it sends: `staleBrokerEpoch`;
    /// - a leader epoch or partition epoch newer than the image's: `aheadOfController` (NOT_CONTROLLER: this
    ///   controller is likely behind, no longer the active one);
    /// - an older leader epoch: `fencedLeaderEpoch`; a requester that is not the leader: `invalidRequest`; an older
    ///   partition epoch: `invalidUpdateVersion`;
    /// - an ISR naming a broker twice or a broker that is not a replica, or one without the leader:
    ///   `invalidRequest`;
    /// - a new member that is not registered, is fenced (or shutting down, which fences it here), or whose broker
    ///   epoch (when given, not -1) is not its registration's: `ineligibleReplica`.
    /// A change that passes is committed with the partition epoch bumped; the leader and its epoch stay. An ISR
    /// equal to the current one writes nothing and answers the partition as it is. Nothing is written for a
    /// refused change. Answers one outcome per change, in order.
    public static func alteringPartitions(
        _ image: ClusterImage,
        _ changes: [ISRChange]
    ) -> ControllerResult<[ISRChangeOutcome]> {
        var next = image
        var names: [KafkaUUID: String] = [:]
        for topic in image.topics.values { names[topic.id] = topic.name }
        let outcomes = changes.map { change -> ISRChangeOutcome in
            let outcome = { (error: ClusterControlError?, state: PartitionState?) in
                ISRChangeOutcome(topicID: change.topicID, partition: change.partition, error: error, state: state)
            }
            guard change.topicID != .zero, let name = names[change.topicID], var topic = next.topics[name] else {
                return outcome(.unknownTopicID(change.topicID), nil)
            }
            do throws(ClusterControlError) {
                let state = try Self.checked(change, of: topic, in: next)
                var altered = state
                altered.isr = state.replicas.filter { replica in change.newISR.contains { $0.brokerID == replica } }
                guard altered.isr != state.isr else { return outcome(nil, state) }
                altered.partitionEpoch += 1
                topic.partitions[Int(change.partition)] = altered
                next.topics[name] = topic
                return outcome(nil, altered)
            } catch {
                return outcome(error, nil)
            }
        }
        return ControllerResult(from: image, to: next, answer: outcomes)
    }

    /// The partition `change` applies to, once every check of `alteringPartitions` has passed.
    private static func checked(
        _ change: ISRChange,
        of topic: TopicImage,
        in image: ClusterImage
    ) throws(ClusterControlError) -> PartitionState {
        let name = topic.name
        guard change.partition >= 0, Int(change.partition) < topic.partitions.count else {
            throw .unknownTopic(name, partition: change.partition)
        }
        let state = topic.partitions[Int(change.partition)]
        guard let requester = image.brokers[change.leaderID], requester.brokerEpoch == change.brokerEpoch else {
            throw .staleBrokerEpoch(
                change.leaderID,
                epoch: change.brokerEpoch,
                current: image.brokers[change.leaderID]?.brokerEpoch ?? -1
            )
        }
        guard change.leaderEpoch <= state.leaderEpoch, change.partitionEpoch <= state.partitionEpoch else {
            throw .aheadOfController(
                "\(name)-\(change.partition) is at leader epoch \(state.leaderEpoch) and partition epoch "
                    + "\(state.partitionEpoch) here, older than the request's \(change.leaderEpoch) and "
                    + "\(change.partitionEpoch): this controller is behind"
            )
        }
        guard change.leaderEpoch == state.leaderEpoch else {
            throw .fencedLeaderEpoch(
                name,
                partition: change.partition,
                epoch: change.leaderEpoch,
                current: state.leaderEpoch
            )
        }
        guard change.leaderID == state.leader else {
            throw .invalidRequest(
                "broker \(change.leaderID) does not lead \(name)-\(change.partition) "
                    + "(its leader is \(state.leader.map(String.init) ?? "none"))"
            )
        }
        guard change.partitionEpoch == state.partitionEpoch else {
            throw .invalidUpdateVersion(
                name,
                partition: change.partition,
                epoch: change.partitionEpoch,
                current: state.partitionEpoch
            )
        }
        let members = change.newISR.map(\.brokerID)
        guard Set(members).count == members.count, members.allSatisfy(state.replicas.contains) else {
            throw .invalidRequest(
                "the ISR \(members) of \(name)-\(change.partition) is not a set of its replicas \(state.replicas)"
            )
        }
        guard members.contains(change.leaderID) else {
            throw .invalidRequest("the ISR \(members) of \(name)-\(change.partition) does not hold its leader")
        }
        for member in change.newISR {
            guard let registration = image.brokers[member.brokerID] else {
                throw .ineligibleReplica(member.brokerID, reason: "it is not registered")
            }
            guard !registration.fenced else {
                throw .ineligibleReplica(member.brokerID, reason: "it is fenced or shutting down")
            }
            guard member.brokerEpoch == -1 || member.brokerEpoch == registration.brokerEpoch else {
                throw .ineligibleReplica(
                    member.brokerID,
                    reason: "its broker epoch is \(registration.brokerEpoch), not \(member.brokerEpoch)"
                )
            }
        }
        return state
    }
}
