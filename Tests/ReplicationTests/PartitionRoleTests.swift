import KafkaWire
import LogStorage
import Replication
import Synchronization
import Testing

/// Leader and follower roles in the replica manager: what clients get, and what the followers' fetchers are told
/// (`RecordingFetchers`, which stands in for the fetchers behind the `ReplicaFetching` contract).
@Suite struct PartitionRoleTests {
    static let topicID = KafkaUUID(mostSignificantBits: 9, leastSignificantBits: 9)

    /// Records the `ReplicaFetching` calls, in order. Thread-safe: a `Mutex`.
    final class RecordingFetchers: ReplicaFetching {
        enum Call: Hashable {
            case follow([TopicPartition], epochs: [Int32], from: LeaderEndpoint)
            case unfollow([TopicPartition])
        }

        let calls = Mutex<[Call]>([])

        func follow(_ partitions: [FollowedPartition], from leader: LeaderEndpoint) async {
            let call = Call.follow(
                partitions.map(\.topicPartition).sorted(),
                epochs: partitions.sorted { $0.topicPartition < $1.topicPartition }.map(\.leaderEpoch),
                from: leader
            )
            self.calls.withLock { $0.append(call) }
        }

        func unfollow(_ partitions: [TopicPartition]) async {
            self.calls.withLock { $0.append(.unfollow(partitions.sorted())) }
        }
    }

    static func following(_ partition: Int32, leader: Int32?, epoch: Int32, partitionEpoch: Int32 = 0) -> Following {
        Following(
            topic: "t",
            partition: partition,
            topicID: Self.topicID,
            leaderID: leader,
            leaderEpoch: epoch,
            partitionEpoch: partitionEpoch
        )
    }

    @Test func followersAreFetchedFromTheirLeaderAndStopBeingFetchedBeforeThisBrokerLeadsThem() async throws {
        let fetchers = RecordingFetchers()
        let fixture = try ReplicaFixture(fetching: fetchers)
        defer { fixture.close() }
        let two = LeaderEndpoint(nodeID: 2, host: "10.0.0.2", port: 9092)
        let three = LeaderEndpoint(nodeID: 3, host: "10.0.0.3", port: 9092)
        let errors = await fixture.replicas.becomeFollower(
            [
                Self.following(0, leader: 2, epoch: 4), Self.following(1, leader: 3, epoch: 5),
                Self.following(2, leader: 2, epoch: 6),
            ],
            endpoints: [2: two, 3: three]
        )
        #expect(errors.allSatisfy { $0 == nil })
        let followed = Set(fetchers.calls.withLock { $0 })
        #expect(
            followed == [
                .follow([TopicPartition("t", 0), TopicPartition("t", 2)], epochs: [4, 6], from: two),
                .follow([TopicPartition("t", 1)], epochs: [5], from: three),
            ]
        )
        // Followers refuse clients and answer nothing.
        let partition = try #require(fixture.replicas.partition(TopicPartition("t", 0)))
        #expect(!partition.isLeader)
        let appended = await fixture.replicas.append(
            topic: "t",
            partition: 0,
            records: try TestBatches.make(count: 1),
            requiredAcks: 1
        )
        #expect(appended.error == .notLeaderOrFollower)
        let read = await fixture.replicas.read(
            [PartitionRead(topicPartition: TopicPartition("t", 0), fetchOffset: 0, maxBytes: 1024)],
            maxBytes: 1024
        )
        #expect(read.first?.error == .notLeaderOrFollower)

        // Only the ISR or partition epoch changed: nothing for the fetchers.
        fetchers.calls.withLock { $0.removeAll() }
        _ = await fixture.replicas.becomeFollower(
            [Self.following(0, leader: 2, epoch: 4, partitionEpoch: 1)],
            endpoints: [2: two]
        )
        #expect(fetchers.calls.withLock { $0 }.isEmpty)
        #expect(partition.partitionEpoch == 1)
        // The partition lost its leader: it stops being fetched.
        _ = await fixture.replicas.becomeFollower([Self.following(2, leader: nil, epoch: 7)], endpoints: [:])
        #expect(fetchers.calls.withLock { $0 } == [.unfollow([TopicPartition("t", 2)])])

        // Elected here: fetching stops first, then it leads at the new epoch and takes appends.
        fetchers.calls.withLock { $0.removeAll() }
        let results = await fixture.replicas.becomeLeader([
            ReplicaManager.Leadership(
                topic: "t",
                partition: 0,
                topicID: Self.topicID,
                leaderEpoch: 5,
                partitionEpoch: 2,
                replicas: [2, 1],
                isr: [1]
            )
        ])
        #expect(results.allSatisfy { $0 == nil })
        #expect(fetchers.calls.withLock { $0 } == [.unfollow([TopicPartition("t", 0)])])
        #expect(partition.isLeader)
        #expect(partition.leaderEpoch == 5)
        #expect(partition.leaderState?.isr == [1])
        let led = await fixture.replicas.append(
            topic: "t",
            partition: 0,
            records: try TestBatches.make(count: 2),
            requiredAcks: -1
        )
        #expect(led.error == .none)
        #expect(partition.highWatermark == 2)
    }

    @Test func anOlderLeaderEpochIsIgnoredInEitherRole() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close() }
        let partition = try await fixture.replicas.becomeLeader(
            topic: "t",
            partition: 0,
            topicID: Self.topicID,
            leaderEpoch: 8,
            partitionEpoch: 3,
            replicas: [1, 2],
            isr: [1, 2]
        )
        _ = await fixture.replicas.becomeFollower([Self.following(0, leader: 2, epoch: 7)], endpoints: [:])
        #expect(partition.isLeader)
        _ = await fixture.replicas.becomeFollower([Self.following(0, leader: 2, epoch: 9)], endpoints: [:])
        #expect(partition.role == .follower(leaderID: 2))
        try await fixture.replicas.becomeLeader(
            topic: "t",
            partition: 0,
            topicID: Self.topicID,
            leaderEpoch: 8,
            partitionEpoch: 4,
            replicas: [1, 2],
            isr: [1, 2]
        )
        #expect(!partition.isLeader)
        #expect(partition.leaderEpoch == 9)
    }
}
