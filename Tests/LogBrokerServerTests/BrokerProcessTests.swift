import Foundation
import Testing

/// The helper's own promises: a failing test leaves no broker behind, and a restart serves the same data.
@Suite struct BrokerProcessTests {
    struct Planned: Error {}

    @Test(.timeLimit(.minutes(1)))
    func aThrowingTestLeavesNoBrokerAndNoDirectory() async throws {
        var seen: (pid: Int32, directory: URL)?
        await #expect(throws: Planned.self) {
            try await BrokerProcess.withBroker { broker in
                seen = (try #require(broker.processIdentifier), broker.directory)
                throw Planned()
            }
        }
        let (pid, directory) = try #require(seen)
        // The child was killed and reaped: signal 0 finds no such process.
        #expect(kill(pid, 0) == -1 && errno == ESRCH)
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    @Test(.timeLimit(.minutes(1)))
    func restartKeepsTheDirectoryAndGetsANewProcess() async throws {
        try await BrokerProcess.withBroker { broker in
            let produce = try await KcatRoundTripTests.shell("printf 'kept\\n' | kcat -b \(broker.bootstrap) -P -t t")
            #expect(produce.status == 0, "\(produce.output)")
            let first = try #require(broker.processIdentifier)
            let stop = try await broker.terminate()
            #expect(stop.status == 0 && !broker.isRunning)
            try await broker.start()
            #expect(broker.processIdentifier != first && broker.runs == 2)
            // The second run has its own stderr; the data is the first run's.
            #expect(broker.stderr.components(separatedBy: "LogBroker started").count == 2)
            let consume = try await KcatRoundTripTests.shell("kcat -b \(broker.bootstrap) -C -t t -e -q")
            #expect(consume.output == "kept\n")
        }
    }
}
