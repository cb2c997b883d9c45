import DelayedOperations
import Foundation
import KafkaMessages
import KafkaNIO
import NIOCore
import NIOPosix
import Replication
import Testing

/// Long-poll fetches park without a thread each, and leave the delayed-fetch queue when their connection closes,
/// not at their max.wait.ms.
@Suite struct ParkedFetchTests {
    /// This process's thread count, from /proc/self/status.
    static func threadCount() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try requireNonNilValue(status.split(separator: "\n").first { $0.hasPrefix("Threads:") })
        return try requireNonNilValue(Int(line.dropFirst("Threads:".count).trimmingCharacters(in: .whitespaces)))
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
    static func eventually(within timeout: Duration, _ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    @Test func thousandParkedFetchesHoldNoThreadsAndLeaveTheQueueWhenTheirConnectionsClose() async throws {
        let connections = 1_000
        try await ProduceFetchTests.withBroker { port, replicas in
            // One long-poll fetch at the log end (nothing to return) that would wait 10 minutes: released any
            // sooner, it left the queue because its connection closed.
            let sendFrame = sizedRequestFrame(
                ProduceFetchTests.fetchRequest(offset: 0, maxWaitMs: 600_000),
                version: 12,
                clientID: "parked"
            )

            let threadsBefore = try Self.threadCount()
            var channels: [any Channel] = []
            // In groups, so the listen backlog never overflows (a dropped SYN costs a 1 s retransmit).
            for _ in 0..<(connections / 100) {
                let group = try await withThrowingTaskGroup(of: (any Channel).self) { tasks in
                    for _ in 0..<100 {
                        tasks.addTask {
                            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                                .connect(host: "127.0.0.1", port: port).get()
                            try await channel.writeAndFlush(sendFrame).get()
                            return channel
                        }
                    }
                    return try await tasks.reduce(into: []) { $0.append($1) }
                }
                channels += group
            }
            let allParked = try await Self.eventually(within: .seconds(20)) {
                replicas.delayedFetches.parkedCount == connections
            }
            #expect(allParked, "parked: \(replicas.delayedFetches.parkedCount)")
            let threadsParked = try Self.threadCount()
            // Flat when this suite runs alone (seen: +0); other suites' brokers run in this process at the same
            // time and start their own threads, so the bound only rules out a thread (or pool slot) per fetch.
            #expect(
                threadsParked - threadsBefore < connections / 10,
                "threads \(threadsBefore), parked \(threadsParked)"
            )
            print("threads: \(threadsBefore) before, \(threadsParked) with \(connections) fetches parked")

            let clock = ContinuousClock()
            let closing = clock.now
            for channel in channels { channel.close(promise: nil) }
            // A bound far below the fetches' own wait, so a loaded machine cannot fail it (a clean-clone run beside
            // other builds took over 2 s); the time it took is printed.
            let released = try await Self.eventually(within: .seconds(120)) {
                replicas.delayedFetches.parkedCount == 0
            }
            #expect(released, "still parked 120 s after close: \(replicas.delayedFetches.parkedCount)")
            print("1,000 parked fetches released \(clock.now - closing) after their connections closed")

            // The broker still answers a new connection at once.
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let response = try await connection.send(
                    ProduceFetchTests.fetchRequest(offset: 0, maxWaitMs: 0),
                    version: 12
                )
                #expect(response.responses.first?.partitions.first?.errorCode == 0)
            }
        }
    }

    /// A peer that closes while its fetch is parked gets its fetch cancelled before max.wait.ms.
    @Test func oneParkedFetchLeavesTheQueueWhenItsConnectionCloses() async throws {
        try await ProduceFetchTests.withBroker { port, replicas in
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let contents = KafkaFrame.request(
                    ProduceFetchTests.fetchRequest(offset: 0, maxWaitMs: 30_000),
                    version: 12,
                    correlationID: 7,
                    clientID: "parked"
                )
                try await connection.sendFrame(contents)
                let parked = try await Self.eventually(within: .seconds(5)) {
                    replicas.delayedFetches.parkedCount == 1
                }
                #expect(parked)
            }
            let released = try await Self.eventually(within: .seconds(2)) {
                replicas.delayedFetches.parkedCount == 0
            }
            #expect(released)
        }
    }
}
