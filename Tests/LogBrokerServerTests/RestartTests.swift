import Foundation
import KafkaMessages
import KafkaNIO
import KafkaRecords
import NIOCore
import Testing

/// The real `logbroker-server` stopped between produce and consume, by SIGTERM in one test and SIGKILL in the other,
/// twice each: everything acknowledged (kcat -P exiting 0, a raw Produce acks=1 answered without error) is read back
/// after each restart; each restart re-elects the broker, so Metadata's leader epoch grows and a Fetch or ListOffsets
/// carrying the epoch of the run before is fenced, as a client with stale metadata would be.
@Suite(.serialized) struct RestartTests {
    /// Written by kcat (lz4, acks=all, librdkafka's default).
    static let kcatTopic = "durable-lines"
    /// Written with raw Produce v9 requests, acks=1.
    static let rawTopic = "durable-raw"

    /// What was acknowledged so far, to compare with what comes back.
    struct Acknowledged {
        var lines = ""
        var values: [String] = []
    }

    /// One round: kcat -P lines and raw Produce acks=1 batches, each acknowledged.
    static func produce(round: Int, to broker: BrokerProcess, _ acknowledged: inout Acknowledged) async throws {
        let lines = KcatRoundTripTests.lines(20_000, prefix: "round-\(round)")
        let input = broker.directory.appendingPathComponent("round-\(round).txt")
        try lines.write(to: input, atomically: true, encoding: .utf8)
        let kcat = try await KcatRoundTripTests.shell(
            "kcat -b \(broker.bootstrap) -P -t \(Self.kcatTopic) -z lz4 -X linger.ms=5 < \(input.path)"
        )
        try #require(kcat.status == 0, "kcat -P: \(kcat.output)")
        acknowledged.lines += lines

        let values = (0..<3).map { batch in (0..<100).map { "round-\(round) batch-\(batch) record-\($0)" } }
        try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
            // Produce does not create topics; Metadata does (auto.create.topics.enable, Kafka's default).
            _ = try await connection.send(MetadataRequest(topics: [.init(name: Self.rawTopic)]), version: 12)
            for (number, batch) in values.enumerated() {
                let records = try ProduceFetchTests.batch(batch, codec: number == 1 ? .zstd : .none)
                let response = try await connection.send(
                    ProduceFetchTests.produceRequest(records, acks: 1, topic: Self.rawTopic),
                    version: 9
                )
                let partition = try #require(response.responses.first?.partitionResponses.first)
                try #require(partition.errorCode == 0, "Produce acks=1: error \(partition.errorCode)")
                #expect(partition.baseOffset == Int64(acknowledged.values.count))
                acknowledged.values += batch
            }
        }
    }

    /// Leader epochs of partition 0 of both topics, from Metadata v12.
    static func leaderEpochs(_ broker: BrokerProcess) async throws -> [String: Int32] {
        try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
            let request = MetadataRequest(topics: [.init(name: Self.kcatTopic), .init(name: Self.rawTopic)])
            let response = try await connection.send(request, version: 12)
            var epochs: [String: Int32] = [:]
            for topic in response.topics {
                let partition = try #require(topic.partitions.first { $0.partitionIndex == 0 })
                #expect(topic.errorCode == 0 && partition.errorCode == 0 && partition.leaderID == 1)
                epochs[topic.name ?? ""] = partition.leaderEpoch
            }
            return epochs
        }
    }

    static func fetch(offset: Int64, currentLeaderEpoch: Int32) -> FetchRequest {
        FetchRequest(
            maxWaitMs: 0,
            minBytes: 1,
            maxBytes: 50 << 20,
            topics: [
                .init(
                    topic: Self.rawTopic,
                    partitions: [
                        .init(
                            partition: 0,
                            currentLeaderEpoch: currentLeaderEpoch,
                            fetchOffset: offset,
                            partitionMaxBytes: 10 << 20
                        )
                    ]
                )
            ]
        )
    }

    static func latestOffset(currentLeaderEpoch: Int32) -> ListOffsetsRequest {
        ListOffsetsRequest(
            replicaID: -1,
            topics: [
                .init(
                    name: Self.rawTopic,
                    partitions: [.init(partitionIndex: 0, currentLeaderEpoch: currentLeaderEpoch, timestamp: -1)]
                )
            ]
        )
    }

    /// After a restart: the epoch grew; requests with the previous epoch are fenced, with the new one they read
    /// everything acknowledged; kcat reads every line back.
    static func verify(
        _ broker: BrokerProcess,
        _ acknowledged: Acknowledged,
        previousEpochs: [String: Int32]
    ) async throws -> [String: Int32] {
        let epochs = try await Self.leaderEpochs(broker)
        for topic in [Self.kcatTopic, Self.rawTopic] {
            let before = try #require(previousEpochs[topic])
            let now = try #require(epochs[topic])
            #expect(now > before, "\(topic): leader epoch \(before) before the restart, \(now) after")
        }
        let stale = try #require(previousEpochs[Self.rawTopic])
        let current = try #require(epochs[Self.rawTopic])
        let fenced: Int16 = 74  // FENCED_LEADER_EPOCH
        let unknown: Int16 = 75  // UNKNOWN_LEADER_EPOCH
        try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
            // current_leader_epoch is in Fetch from v9 and in ListOffsets from v4.
            for version in Int16(9)...12 {
                let old = try await connection.send(Self.fetch(offset: 0, currentLeaderEpoch: stale), version: version)
                let oldPartition = try #require(old.responses.first?.partitions.first)
                #expect(oldPartition.errorCode == fenced, "Fetch v\(version) with epoch \(stale) (now \(current))")
                #expect(oldPartition.records?.readableBytes ?? 0 == 0)
                let ahead = try await connection.send(
                    Self.fetch(offset: 0, currentLeaderEpoch: current + 1),
                    version: version
                )
                #expect(ahead.responses.first?.partitions.first?.errorCode == unknown, "Fetch v\(version) ahead")
                let new = try await connection.send(
                    Self.fetch(offset: 0, currentLeaderEpoch: current),
                    version: version
                )
                let partition = try #require(new.responses.first?.partitions.first)
                #expect(partition.errorCode == 0, "Fetch v\(version) with the current epoch \(current)")
                #expect(partition.highWatermark == Int64(acknowledged.values.count))
                #expect(try ProduceFetchTests.decode(partition.records).values == acknowledged.values)
            }
            for version in Int16(4)...7 {
                let old = try await connection.send(Self.latestOffset(currentLeaderEpoch: stale), version: version)
                let oldPartition = try #require(old.topics.first?.partitions.first)
                #expect(oldPartition.errorCode == fenced, "ListOffsets v\(version) with epoch \(stale)")
                let new = try await connection.send(Self.latestOffset(currentLeaderEpoch: current), version: version)
                let partition = try #require(new.topics.first?.partitions.first)
                #expect(partition.errorCode == 0, "ListOffsets v\(version) with the current epoch")
                #expect(partition.offset == Int64(acknowledged.values.count))
                // Kafka answers latest with the epoch cache's latest epoch, which becoming leader sets at the log
                // end (Partition.makeLeader assigns the new epoch's start offset), before anything is appended.
                #expect(partition.leaderEpoch == current, "ListOffsets v\(version) latest: the leader epoch")
            }
        }
        let output = broker.directory.appendingPathComponent("consumed.txt")
        let consume = try await KcatRoundTripTests.shell(
            "kcat -b \(broker.bootstrap) -C -t \(Self.kcatTopic) -e -q > \(output.path)"
        )
        #expect(consume.status == 0, "kcat -C: \(consume.output)")
        let back = try String(contentsOf: output, encoding: .utf8)
        #expect(back == acknowledged.lines, "\(back.utf8.count) of \(acknowledged.lines.utf8.count) bytes back")
        return epochs
    }

    /// The "Loaded logs" line of a run's stderr.
    static func loadedLogsLine(_ stderr: String) throws -> Substring {
        try #require(stderr.split(separator: "\n").first { $0.contains("Loaded logs") }, "\(stderr)")
    }

    @Test(.timeLimit(.minutes(3)))
    func acknowledgedDataSurvivesSIGTERMAndLeaderEpochsGrow() async throws {
        try await BrokerProcess.withBroker { broker in
            var acknowledged = Acknowledged()
            let marker = broker.logDirectory.appendingPathComponent(".kafka_cleanshutdown")
            try await Self.produce(round: 0, to: broker, &acknowledged)
            var epochs = try await Self.leaderEpochs(broker)
            for round in 1...2 {
                let stop = try await broker.terminate()
                #expect(stop.status == 0, "\(stop.stderr)")
                // The stop was clean: logs flushed and closed, the marker written, then the process ended.
                #expect(stop.stderr.contains("Logs closed cleanly"), "\(stop.stderr)")
                #expect(stop.stderr.contains("LogBroker stopped"), "\(stop.stderr)")
                #expect(FileManager.default.fileExists(atPath: marker.path))

                try await broker.start()
                // The start saw the marker (no recovery scan), then removed it so that a crash from here is
                // recovered.
                let loaded = try Self.loadedLogsLine(broker.stderr)
                #expect(loaded.contains("cleanShutdown=[\"\(broker.logDirectory.path)\"]"), "\(loaded)")
                #expect(!FileManager.default.fileExists(atPath: marker.path))
                #expect(!broker.stderr.contains("Truncated"), "\(broker.stderr)")
                epochs = try await Self.verify(broker, acknowledged, previousEpochs: epochs)
                try await Self.produce(round: round, to: broker, &acknowledged)
            }
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func acknowledgedDataSurvivesSIGKILLAndTheRestartRecovers() async throws {
        try await BrokerProcess.withBroker { broker in
            var acknowledged = Acknowledged()
            let marker = broker.logDirectory.appendingPathComponent(".kafka_cleanshutdown")
            let segment = broker.logDirectory.appendingPathComponent("\(Self.rawTopic)-0/00000000000000000000.log")
            try await Self.produce(round: 0, to: broker, &acknowledged)
            var epochs = try await Self.leaderEpochs(broker)
            for round in 1...2 {
                let stop = try await broker.kill()
                #expect(stop.status == nil, "killed by a signal, not an exit")
                #expect(!stop.stderr.contains("Logs closed cleanly"), "\(stop.stderr)")
                #expect(!FileManager.default.fileExists(atPath: marker.path))
                var tornBytes = 0
                if round == 1 {
                    // A write the kill cut short: the first 40 bytes of a batch header whose length promises more.
                    // Recovery must drop them and nothing acknowledged.
                    let log = try Data(contentsOf: segment)
                    let handle = try FileHandle(forWritingTo: segment)
                    try handle.seekToEnd()
                    try handle.write(contentsOf: log.prefix(40))
                    try handle.close()
                    tornBytes = 40
                }
                try await broker.start()
                // No marker, so every log was recovered from its recovery point; round 1 also truncated the tear.
                let loaded = try Self.loadedLogsLine(broker.stderr)
                #expect(loaded.contains("cleanShutdown=[]"), "\(loaded)")
                let recovered = broker.stderr.split(separator: "\n").contains {
                    $0.contains("Recovered the unflushed") && $0.contains("partition=\(Self.kcatTopic)-0")
                }
                #expect(recovered, "no recovery logged:\n\(broker.stderr)")
                if tornBytes > 0 {
                    let truncated = broker.stderr.split(separator: "\n").first { $0.contains("Truncated a torn") }
                    let line = try #require(truncated, "no truncation logged:\n\(broker.stderr)")
                    #expect(line.contains("file=\(segment.path)"), "\(line)")
                    #expect(line.contains("bytesDropped=\(tornBytes)"), "\(line)")
                    #expect(line.contains("offsetsDroppedFrom=\(acknowledged.values.count)"), "\(line)")
                } else {
                    #expect(!broker.stderr.contains("Truncated"), "\(broker.stderr)")
                }
                epochs = try await Self.verify(broker, acknowledged, previousEpochs: epochs)
                try await Self.produce(round: round, to: broker, &acknowledged)
            }
        }
    }
}
