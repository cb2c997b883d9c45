import ClusterControl
import EtcdMetadataStore
import Testing

@testable import LogBrokerServer

/// KRaft's controlled shutdown between real `BrokerLifecycle`s and a controller listener over a real etcd
/// (`BrokerLifecycleTests.withCluster`): the stopping broker's leaderships move before the controller lets it stop.
@Suite(.timeLimit(.minutes(3))) struct ControlledShutdownTests {
    @Test func aStoppingBrokerHandsItsLeadershipsOverBeforeTheControllerLetsItStop() async throws {
        try await BrokerLifecycleTests.withCluster { cluster in
            let (node2, store2) = try await cluster.follower(nodeID: 2)
            let (node3, store3) = try await cluster.follower(nodeID: 3)
            let stopping = try await cluster.lifecycle(nodeID: 2, following: node2)
            let staying = try await cluster.lifecycle(nodeID: 3, following: node3)
            try await stopping.waitUntilUnfenced()
            try await staying.waitUntilUnfenced()
            try await cluster.controller.createTopic(
                "led",
                partitions: 4,
                replicationFactor: 2,
                assignment: Array(repeating: [2, 3], count: 4)
            )

            let started = ContinuousClock.now
            // The bound of a busy machine, as in BrokerLifecycleTests; the test shows it takes far less.
            await stopping.stop(timeout: .seconds(60))
            print("Controlled shutdown of a broker leading 4 partitions: agreed after \(ContinuousClock.now - started)")
            #expect(await stopping.status.shutDownAllowed)
            // Its own image had the move when it was let go: it knew it led nothing.
            let seen = try #require(await node2.follower.followed.image.topics["led"])
            #expect(seen.partitions.allSatisfy { $0.leader == 3 && $0.isr == [3] && $0.leaderEpoch == 1 })
            #expect(await cluster.registration(2)?.fenced == true)

            await staying.stop(timeout: .seconds(5))
            for (node, store) in [(node2, store2), (node3, store3)] {
                await node.stop()
                await store.shutdown()
            }
        }
    }
}
