import KafkaWire
import MetadataStore
import Testing

@testable import ClusterControl

/// An image with brokers `brokers` (unfenced, registered at epoch 10 + id) and one topic per entry of `topics`, each
/// partition given as (replicas, isr, leader).
func electionImage(
    brokers: [Int32],
    topics: [String: [(replicas: [Int32], isr: [Int32], leader: Int32?)]],
    configs: [String: [String: String]] = [:]
) -> ClusterImage {
    var image = ClusterImage(clusterID: "c")
    for id in brokers {
        image.brokers[id] = BrokerRegistration(
            nodeID: id,
            endpoints: [BrokerEndpoint(listener: "PLAINTEXT", host: "127.0.0.1", port: 9092 + id)],
            incarnationID: KafkaUUID(mostSignificantBits: UInt64(id), leastSignificantBits: 1),
            brokerEpoch: 10 + Int64(id)
        )
    }
    for (index, (name, partitions)) in topics.sorted(by: { $0.key < $1.key }).enumerated() {
        image.topics[name] = TopicImage(
            name: name,
            id: KafkaUUID(mostSignificantBits: UInt64(index + 1), leastSignificantBits: 7),
            partitions: partitions.map {
                PartitionState(replicas: $0.replicas, isr: $0.isr, leader: $0.leader, leaderEpoch: 5, partitionEpoch: 9)
            },
            configs: configs[name] ?? [:]
        )
    }
    return image
}

/// The image after `result`'s writes (the decisions write whole keys, so the new values are decoded back).
func applying<Answer>(_ result: ControllerResult<Answer>, to image: ClusterImage) throws -> ClusterImage {
    var followed = FollowedImage(image: image)
    for write in result.writes {
        let revision = image.revision + 1
        guard let value = write.value else {
            try followed.apply(.delete(key: write.key, revision: revision))
            continue
        }
        try followed.apply(
            .put(MetadataEntry(key: write.key, value: value, createRevision: revision, modRevision: revision))
        )
    }
    return followed.image
}

/// The elections of the controller as pure decisions (KRaft's `handleBrokerFenced`, `handleBrokerUnfenced` and
/// registration), checked on values without a store.
@Suite struct ElectionTests {
    @Test func fencingABrokerMovesEveryLeadershipItHeldAndShrinksEveryISRInOnePass() throws {
        let image = electionImage(
            brokers: [1, 2, 3],
            topics: [
                "a": [
                    ([2, 3, 1], [2, 3, 1], 2),  // led by 2: the next live ISR member in replica order, 3
                    ([1, 2, 3], [1, 2, 3], 1),  // followed by 2: only the ISR shrinks
                    ([3, 1, 2], [3, 1], 3),  // 2 is out of the ISR already: untouched
                ],
                "b": [([2, 1], [2], 2)],  // 2 was the last ISR member: offline, the ISR kept
                "c": [([3], [3], 3)],
            ]
        )
        let result = ControllerDecisions.fencingBroker(image, 2, brokerEpoch: 12, fenced: true)
        // The registration first, then the changed topics by name: every prefix is a valid image.
        #expect(result.writes.map(\.key) == [ImageKeys.broker(2), ImageKeys.topic("a"), ImageKeys.topic("b")])
        #expect(result.answer == ElectionSummaryForTests.summary(changed: 3, leadersMoved: 2, offline: 1))
        let next = try applying(result, to: image)
        #expect(next.brokers[2]?.fenced == true)
        let a = try #require(next.topics["a"]?.partitions)
        #expect(
            a[0] == PartitionState(replicas: [2, 3, 1], isr: [3, 1], leader: 3, leaderEpoch: 6, partitionEpoch: 10)
        )
        #expect(
            a[1] == PartitionState(replicas: [1, 2, 3], isr: [1, 3], leader: 1, leaderEpoch: 5, partitionEpoch: 10)
        )
        #expect(a[2] == image.topics["a"]?.partitions[2])
        #expect(
            next.topics["b"]?.partitions[0]
                == PartitionState(replicas: [2, 1], isr: [2], leader: nil, leaderEpoch: 6, partitionEpoch: 10)
        )
        #expect(next.topics["c"] == image.topics["c"])

        // Fencing it again changes nothing; a stale broker epoch (another incarnation) neither.
        #expect(ControllerDecisions.fencingBroker(next, 2, brokerEpoch: 12, fenced: true).writes.isEmpty)
        #expect(ControllerDecisions.fencingBroker(image, 2, brokerEpoch: 11, fenced: true).writes.isEmpty)
    }

    @Test func uncleanElectionIsAllowedByTheTopicThenTheDynamicBrokerConfigsThenTheStaticSetting() throws {
        // 1 is the last ISR member and is fenced; 2 is a live replica out of the ISR.
        let partition: [(replicas: [Int32], isr: [Int32], leader: Int32?)] = [([1, 2], [1], 1)]
        func leader(
            topicConfigs: [String: String] = [:],
            brokerConfigs: [String: [String: String]] = [:],
            staticValue: Bool = false
        ) throws -> (leader: Int32?, isr: [Int32]) {
            var image = electionImage(brokers: [1, 2], topics: ["t": partition], configs: ["t": topicConfigs])
            image.brokerConfigs = brokerConfigs
            let policy = UncleanElectionPolicy(nodeID: 2, staticValue: staticValue)
            let result = ControllerDecisions.fencingBroker(image, 1, brokerEpoch: 11, fenced: true, policy: policy)
            let state = try #require(try applying(result, to: image).topics["t"]?.partitions[0])
            return (state.leader, state.isr)
        }
        let key = UncleanElectionPolicy.configName
        #expect(try leader() == (nil, [1]))
        #expect(try leader(staticValue: true) == (2, [2]))
        #expect(try leader(brokerConfigs: ["": [key: "true"]]) == (2, [2]))
        #expect(try leader(brokerConfigs: ["2": [key: "TRUE"], "": [key: "false"]]) == (2, [2]))
        // Another node's dynamic config is not the controller's.
        #expect(try leader(brokerConfigs: ["1": [key: "true"]]) == (nil, [1]))
        #expect(try leader(topicConfigs: [key: "true"]) == (2, [2]))
        #expect(try leader(topicConfigs: [key: "false"], staticValue: true) == (nil, [1]))
    }

    @Test func enablingUncleanElectionBringsAnOfflinePartitionBackAtOnce() throws {
        // 1, the last ISR member, is fenced; 2 is a live replica out of the ISR.
        var image = electionImage(brokers: [1, 2], topics: ["t": [([1, 2], [1], nil)], "u": [([1, 2], [1], nil)]])
        image.brokers[1]?.fenced = true
        let policy = UncleanElectionPolicy(nodeID: 2)
        let key = UncleanElectionPolicy.configName
        let disabled = try ControllerDecisions.alteringTopicConfigs(
            image,
            "t",
            validateOnly: false,
            live: [2],
            policy: policy
        ) { _ in [key: "false"] }
        #expect(try applying(disabled, to: image).topics["t"]?.partitions[0].leader == nil)
        let enabled = try ControllerDecisions.alteringTopicConfigs(
            image,
            "t",
            validateOnly: false,
            live: [2],
            policy: policy
        ) { _ in [key: "true"] }
        let topic = try applying(enabled, to: image).topics
        #expect(
            topic["t"]?.partitions[0]
                == PartitionState(replicas: [1, 2], isr: [2], leader: 2, leaderEpoch: 6, partitionEpoch: 10)
        )
        #expect(topic["u"]?.partitions[0].leader == nil, "another topic's config is its own")
        // The cluster-wide default elects in every topic.
        let clusterWide = try ControllerDecisions.alteringBrokerConfigs(
            image,
            "",
            validateOnly: false,
            live: [2],
            policy: policy
        ) { _ in [key: "true"] }
        #expect(try applying(clusterWide, to: image).topics.values.allSatisfy { $0.partitions[0].leader == 2 })
    }

    @Test func unfencingABrokerElectsItWhereItIsTheOnlyISRMemberOfAPartitionWithoutLeader() throws {
        var image = electionImage(
            brokers: [1, 2],
            topics: ["t": [([2, 1], [2], nil), ([1, 2], [1, 2], 1), ([1], [1], nil)]]
        )
        image.brokers[2]?.fenced = true
        let result = ControllerDecisions.fencingBroker(image, 2, brokerEpoch: 12, fenced: false)
        #expect(result.answer == ElectionSummaryForTests.summary(changed: 2, leadersMoved: 2, offline: 0))
        let next = try applying(result, to: image)
        #expect(next.brokers[2]?.fenced == false)
        let partitions = try #require(next.topics["t"]?.partitions)
        #expect(
            partitions[0] == PartitionState(replicas: [2, 1], isr: [2], leader: 2, leaderEpoch: 6, partitionEpoch: 10)
        )
        #expect(partitions[1] == image.topics["t"]?.partitions[1])
        // Every partition without a leader elects among the live brokers, not only those the unfenced one holds.
        #expect(partitions[2] == PartitionState(replicas: [1], isr: [1], leader: 1, leaderEpoch: 6, partitionEpoch: 10))
    }

    @Test func aRegistrationLeavesThePartitionsOtherLiveBrokersLeadAlone() throws {
        let image = electionImage(
            brokers: [1, 2, 3],
            topics: [
                "t": [
                    ([1, 2, 3], [1, 2, 3], 1),  // 2 follows: untouched
                    ([2, 3], [2, 3], 2),  // 2 led, 3 is in sync: 3 leads, 2 leaves the ISR
                    ([2], [2], 2),  // 2 alone: offline until 2 is unfenced
                    ([3, 2], [2], nil),  // no leader, 2 the last ISR member: waits for 2's unfencing
                ]
            ]
        )
        var registration = try #require(image.brokers[2])
        registration.incarnationID = KafkaUUID(mostSignificantBits: 99, leastSignificantBits: 1)
        registration.fenced = true
        // A broker process registers fenced: the live brokers are the others.
        let result = ControllerDecisions.registeringBroker(image, registration, live: [1, 3])
        let partitions = try #require(try applying(result, to: image).topics["t"]?.partitions)
        #expect(partitions[0] == image.topics["t"]?.partitions[0])
        #expect(
            partitions[1] == PartitionState(replicas: [2, 3], isr: [3], leader: 3, leaderEpoch: 6, partitionEpoch: 10)
        )
        #expect(
            partitions[2] == PartitionState(replicas: [2], isr: [2], leader: nil, leaderEpoch: 6, partitionEpoch: 10)
        )
        #expect(partitions[3] == image.topics["t"]?.partitions[3])

        // The standalone broker's in-process registration is live at once: a single replica is elected again,
        // with new epochs, and a partition another live broker leads is still untouched.
        let inProcess = ControllerDecisions.registeringBroker(image, try #require(image.brokers[2]), live: [1, 2, 3])
        let again = try #require(try applying(inProcess, to: image).topics["t"]?.partitions)
        #expect(again[0] == image.topics["t"]?.partitions[0])
        #expect(again[1] == PartitionState(replicas: [2, 3], isr: [3], leader: 3, leaderEpoch: 6, partitionEpoch: 10))
        #expect(again[2] == PartitionState(replicas: [2], isr: [2], leader: 2, leaderEpoch: 6, partitionEpoch: 10))
        #expect(again[3] == PartitionState(replicas: [3, 2], isr: [2], leader: 2, leaderEpoch: 6, partitionEpoch: 10))
    }
}

enum ElectionSummaryForTests {
    static func summary(changed: Int, leadersMoved: Int, offline: Int) -> ElectionSummary {
        var summary = ElectionSummary()
        summary.changed = changed
        summary.leadersMoved = leadersMoved
        summary.offline = offline
        return summary
    }
}
