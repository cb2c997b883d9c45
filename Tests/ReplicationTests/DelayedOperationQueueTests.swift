import DelayedOperations
import KafkaWire
import LogStorage
import NIOCore
import Replication
import Synchronization
import Testing

@Suite struct DelayedOperationQueueTests {
    @Test func anOperationWhoseConditionHoldsDoesNotPark() async {
        let queue = DelayedOperationQueue<String>()
        #expect(await queue.wait(on: ["a"], timeout: .seconds(60), until: { true }))
        #expect(queue.parkedCount == 0)
    }

    @Test func aParkedOperationTimesOut() async {
        let queue = DelayedOperationQueue<String>()
        let clock = ContinuousClock()
        let start = clock.now
        #expect(await queue.wait(on: ["a"], timeout: .milliseconds(50), until: { false }) == false)
        #expect(clock.now - start >= .milliseconds(50))
        #expect(queue.parkedCount == 0)
    }

    @Test func aNotifyCompletesOnlyOperationsWhoseConditionHolds() async throws {
        let queue = DelayedOperationQueue<String>()
        let ready = Atomic<Bool>(false)
        let waiter = Task {
            await queue.wait(on: ["a", "b"], timeout: .seconds(60), until: { ready.load(ordering: .relaxed) })
        }
        while queue.parkedCount == 0 { try await Task.sleep(for: .milliseconds(1)) }
        queue.notify("b")  // the condition does not hold yet: stays parked
        #expect(queue.parkedCount == 1)
        queue.notify("c")  // another key
        ready.store(true, ordering: .relaxed)
        #expect(queue.parkedCount == 1)
        queue.notify("b")
        #expect(await waiter.value)
        #expect(queue.parkedCount == 0)
    }

    @Test func cancellingTheWaitingTaskEndsIt() async throws {
        let queue = DelayedOperationQueue<Int>()
        let waiter = Task { await queue.wait(on: [1], timeout: .seconds(60), until: { false }) }
        while queue.parkedCount == 0 { try await Task.sleep(for: .milliseconds(1)) }
        waiter.cancel()
        #expect(await waiter.value == false)
        #expect(queue.parkedCount == 0)
    }

    @Test func anAppendWakesAFetchParkedOnItsPartition() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close() }
        let partition = try await fixture.replicas.becomeLeader(
            topic: "t",
            partition: 0,
            topicID: .zero,
            leaderEpoch: 0
        )
        let replicas = fixture.replicas
        let tp = TopicPartition("t", 0)
        let before = partition.bytesAppended
        let clock = ContinuousClock()
        let start = clock.now
        let waiter = Task {
            await replicas.delayedFetches.wait(on: [tp], timeout: .seconds(120)) {
                partition.bytesAppended - before >= 1
            }
        }
        while replicas.delayedFetches.parkedCount == 0 { try await Task.sleep(for: .milliseconds(1)) }
        let result = await replicas.append(
            topic: "t",
            partition: 0,
            records: try TestBatches.make(count: 1),
            requiredAcks: 1
        )
        #expect(result.error == .none)
        #expect(await waiter.value)
        // Woken by the append, not by the 120 s timeout; the bound is far from both.
        #expect(clock.now - start < .seconds(60))
    }
}
