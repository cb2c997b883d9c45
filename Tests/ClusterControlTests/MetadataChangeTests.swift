import ClusterControl
import KafkaWire
import Testing

/// What each broker is told about a partition's roles as the image changes: pure, on images built by hand.
@Suite struct MetadataChangeTests {
    static let id = KafkaUUID(mostSignificantBits: 7, leastSignificantBits: 8)

    static func image(_ state: PartitionState?) -> ClusterImage {
        var image = ClusterImage(clusterID: "c")
        if let state { image.topics["t"] = TopicImage(name: "t", id: Self.id, partitions: [state]) }
        return image
    }

    static func roles(from before: PartitionState?, to after: PartitionState, node: Int32) -> [MetadataChange] {
        MetadataChange.changes(from: Self.image(before), to: Self.image(after), node: node).filter {
            switch $0 {
            case .leadership, .following: true
            default: false
            }
        }
    }

    static let created = PartitionState(
        replicas: [1, 2, 3],
        isr: [1, 2, 3],
        leader: 1,
        leaderEpoch: 0,
        partitionEpoch: 0
    )

    @Test func aNewPartitionIsLedByItsLeaderAndFollowedByTheOtherReplicas() {
        #expect(
            Self.roles(from: nil, to: Self.created, node: 1) == [
                .leadership(
                    PartitionLeadership(
                        topic: "t",
                        topicID: Self.id,
                        partition: 0,
                        leaderEpoch: 0,
                        isr: [1, 2, 3],
                        replicas: [1, 2, 3],
                        partitionEpoch: 0
                    )
                )
            ]
        )
        let following = MetadataChange.following(
            PartitionFollowing(topic: "t", topicID: Self.id, partition: 0, leader: 1, leaderEpoch: 0, partitionEpoch: 0)
        )
        #expect(Self.roles(from: nil, to: Self.created, node: 2) == [following])
        #expect(Self.roles(from: nil, to: Self.created, node: 3) == [following])
        #expect(Self.roles(from: nil, to: Self.created, node: 4).isEmpty)
    }

    @Test func anISRChangeReachesTheLeaderAndTheFollowersWithTheNewPartitionEpoch() {
        var shrunk = Self.created
        shrunk.isr = [1, 2]
        shrunk.partitionEpoch = 1
        #expect(
            Self.roles(from: Self.created, to: shrunk, node: 1) == [
                .leadership(
                    PartitionLeadership(
                        topic: "t",
                        topicID: Self.id,
                        partition: 0,
                        leaderEpoch: 0,
                        isr: [1, 2],
                        replicas: [1, 2, 3],
                        partitionEpoch: 1
                    )
                )
            ]
        )
        #expect(
            Self.roles(from: Self.created, to: shrunk, node: 3) == [
                .following(
                    PartitionFollowing(
                        topic: "t",
                        topicID: Self.id,
                        partition: 0,
                        leader: 1,
                        leaderEpoch: 0,
                        partitionEpoch: 1
                    )
                )
            ]
        )
        // The same image again tells nobody anything.
        #expect(Self.roles(from: shrunk, to: shrunk, node: 1).isEmpty)
        #expect(Self.roles(from: shrunk, to: shrunk, node: 2).isEmpty)
    }

    @Test func aNewLeaderIsToldToLeadAndTheOldOneToFollowItAndAnOfflinePartitionHasNothingToFollow() {
        let elected = Self.created.electingLeader(live: [2, 3])
        #expect(elected.leader == 2)
        #expect(
            Self.roles(from: Self.created, to: elected, node: 1) == [
                .following(
                    PartitionFollowing(
                        topic: "t",
                        topicID: Self.id,
                        partition: 0,
                        leader: 2,
                        leaderEpoch: 1,
                        partitionEpoch: 1
                    )
                )
            ]
        )
        guard case .leadership(let leadership) = Self.roles(from: Self.created, to: elected, node: 2).first else {
            Issue.record("node 2 was not told to lead")
            return
        }
        #expect(leadership.leaderEpoch == 1)
        #expect(leadership.isr == [2, 3])
        let offline = elected.electingLeader(live: [])
        #expect(offline.leader == nil)
        #expect(
            Self.roles(from: elected, to: offline, node: 2) == [
                .following(
                    PartitionFollowing(
                        topic: "t",
                        topicID: Self.id,
                        partition: 0,
                        leader: nil,
                        leaderEpoch: 2,
                        partitionEpoch: 2
                    )
                )
            ]
        )
    }
}
