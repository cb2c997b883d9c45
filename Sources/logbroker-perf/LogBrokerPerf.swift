import ArgumentParser
import Foundation
import KafkaRecords
import KafkaWire
import LogBrokerCLI
import LogBrokerClient

/// `logbroker-perf`, Kafka's perf-test habits on the LogBroker client library: `producer` sends records as fast as
/// allowed and measures send-to-acknowledgement latency, `consumer` reads records back, `end-to-end` measures
/// send-to-receipt latency. Each prints a progress line every reporting interval, then the totals, the latency
/// percentiles (HdrHistogram) and the audit count (sent, acknowledged, failed, received); `--json` prints the
/// closing figures as one JSON document. Exit status 1 when records failed or fewer arrived than asked for.
@main
struct LogBrokerPerf: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logbroker-perf",
        abstract: "Producer, consumer and end-to-end latency load tests with percentiles.",
        subcommands: [ProducerPerf.self, ConsumerPerf.self, EndToEndPerf.self]
    )
}

/// Options every mode has.
struct CommonOptions: ParsableArguments {
    @Option(name: [.customShort("b"), .customLong("bootstrap-server")], help: "Bootstrap broker(s): host:port[,...].")
    var bootstrapServer = "127.0.0.1:9092"

    @Option(help: "The topic.")
    var topic: String

    @Option(help: "Milliseconds between progress lines.")
    var reportingInterval: Int64 = 5_000

    @Flag(help: "Print the closing figures as one JSON document on stdout (progress lines go to stderr).")
    var json = false

    /// Prints the summary and fails the command if the audit does not add up to `expected` completions.
    func finish(_ stats: PerfStats, mode: String, expected: Int) throws {
        let summary = stats.summary(mode: mode, elapsed: ContinuousClock.now - stats.started)
        print(self.json ? summary.json : summary.text)
        if let failure = stats.firstFailure {
            FileHandle.standardError.write(Data("logbroker-perf: \(summary.failed) records failed; the first: \(failure)\n".utf8))
            throw ExitCode(1)
        }
        let completed = mode == "producer" ? summary.acknowledged : summary.received
        guard completed >= expected else {
            FileHandle.standardError.write(Data("logbroker-perf: \(completed) of \(expected) records \(mode == "producer" ? "acknowledged" : "received")\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Runs `body` with progress lines every reporting interval.
    func withProgress(_ stats: PerfStats, _ body: () async throws -> Void) async rethrows {
        let reporter = Task { await reportProgress(stats, every: .milliseconds(self.reportingInterval), toStandardError: self.json) }
        defer { reporter.cancel() }
        try await body()
    }
}

/// The producer side of `producer` and `end-to-end`.
struct ProducerOptions: ParsableArguments {
    @Option(help: "Records to send.")
    var numRecords: Int

    @Option(help: "Bytes per record value.")
    var recordSize: Int?

    @Option(help: "A file whose lines are the record values, sent in turn (instead of --record-size).")
    var payloadFile: String?

    @Option(help: "Records per second at most, over all producers (-1: unlimited).")
    var throughput: Double = -1

    @Option(help: "acks: 0, 1 or all.")
    var acks = "1"

    @Option(help: "none, gzip, snappy, lz4 or zstd.")
    var compression = "none"

    @Option(help: "batch.size in bytes.")
    var batchSize = 16_384

    @Option(help: "linger.ms.")
    var lingerMs: Int64 = 5

    @Option(help: "Create the topic with this many partitions if it does not exist.")
    var partitions: Int32?

    @Option(help: "Producers sending at once, each with its own connections.")
    var producers = 1

    func validate() throws {
        guard (self.recordSize == nil) != (self.payloadFile == nil) else {
            throw ValidationError("give one of --record-size and --payload-file")
        }
        guard self.numRecords >= 0, self.producers >= 1 else { throw ValidationError("--num-records >= 0, --producers >= 1") }
        guard ["0", "1", "all", "-1"].contains(self.acks) else { throw ValidationError("--acks 0, 1 or all") }
        guard CompressionCodec.allCases.contains(where: { "\($0)" == self.compression }) else {
            throw ValidationError("--compression none, gzip, snappy, lz4 or zstd")
        }
    }

    var configuration: Producer.Configuration {
        var configuration = Producer.Configuration()
        configuration.acks = self.acks == "all" ? -1 : Int16(self.acks)!
        // Idempotence needs acks=all; the perf tool follows the acks asked for, as Kafka's does.
        configuration.enableIdempotence = configuration.acks == -1
        configuration.compression = CompressionCodec.allCases.first { "\($0)" == self.compression }!
        configuration.batchSize = self.batchSize
        configuration.lingerMs = self.lingerMs
        return configuration
    }

    /// The record values: one buffer of `--record-size` random letters (shared, never copied), or the file's lines.
    func payloads() throws -> [[UInt8]] {
        if let size = self.recordSize {
            return [(0..<size).map { _ in UInt8.random(in: 65...90) }]
        }
        guard let data = FileManager.default.contents(atPath: self.payloadFile!) else {
            throw ValidationError("cannot read --payload-file \(self.payloadFile!)")
        }
        let lines = data.split(separator: UInt8(ascii: "\n")).map { Array($0) }
        guard !lines.isEmpty else { throw ValidationError("--payload-file \(self.payloadFile!) has no lines") }
        return lines
    }

    /// Creates the topic when `--partitions` is given and it does not exist.
    func prepare(_ topic: String, bootstrap: String) async throws {
        guard let partitions = self.partitions else { return }
        let client = try LogBrokerClient(bootstrapServers: bootstrap, clientID: "logbroker-perf")
        do {
            try await Admin(client: client).createTopic(topic, partitions: partitions)
        } catch let error as ClientError where error.code == .topicAlreadyExists {
            return
        }
    }

    /// Sends `--num-records` records from `--producers` producers, paced to `--throughput`; `value(index, payload)`
    /// makes each record's value, and `delivered` is called per acknowledged record with its latency.
    func send(
        topic: String,
        bootstrap: String,
        stats: PerfStats,
        value: @escaping @Sendable (_ payload: [UInt8]) -> [UInt8] = { $0 },
        delivered: @escaping @Sendable (_ bytes: Int, _ latencyMicros: UInt64) -> Void
    ) async throws {
        let payloads = try self.payloads()
        let configuration = self.configuration
        let perProducerRate = self.throughput > 0 ? self.throughput / Double(self.producers) : nil
        try await withThrowingTaskGroup(of: Void.self) { group in
            for producerIndex in 0..<self.producers {
                let count = self.numRecords / self.producers + (producerIndex < self.numRecords % self.producers ? 1 : 0)
                group.addTask {
                    let client = try LogBrokerClient(bootstrapServers: bootstrap, clientID: "logbroker-perf-\(producerIndex)")
                    let producer = try Producer(client: client, configuration: configuration)
                    let started = ContinuousClock.now
                    for index in 0..<count {
                        if let rate = perProducerRate {
                            let due = started + .seconds(Double(index) / rate)
                            if due > ContinuousClock.now { try await Task.sleep(until: due) }
                        }
                        let record = value(payloads[index % payloads.count])
                        let sentAt = DispatchTime.now().uptimeNanoseconds
                        stats.sent()
                        try await producer.send(ProducerRecord(topic: topic, value: record)) { result in
                            switch result {
                            case .success:
                                delivered(record.count, (DispatchTime.now().uptimeNanoseconds - sentAt) / 1000)
                            case .failure(let error):
                                stats.failed(error)
                            }
                        }
                    }
                    await producer.flush()
                }
            }
            try await group.waitForAll()
        }
    }
}

struct ProducerPerf: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "producer",
        abstract: "Send records and measure throughput and send-to-acknowledgement latency."
    )

    @OptionGroup var common: CommonOptions
    @OptionGroup var producer: ProducerOptions

    func run() async throws {
        try await self.producer.prepare(self.common.topic, bootstrap: self.common.bootstrapServer)
        let stats = PerfStats()
        try await self.common.withProgress(stats) {
            try await self.producer.send(topic: self.common.topic, bootstrap: self.common.bootstrapServer, stats: stats) {
                stats.completed(bytes: $0, latencyMicros: $1, received: false)
            }
        }
        try self.common.finish(stats, mode: "producer", expected: self.producer.numRecords)
    }
}

struct ConsumerPerf: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consumer",
        abstract: "Read records from the beginning (or as a group member) and measure throughput."
    )

    @OptionGroup var common: CommonOptions

    @Option(help: "Records to read.")
    var messages: Int

    @Option(help: "Read as a member of this consumer group (from its committed offsets) instead of every partition.")
    var group: String?

    @Option(help: "fetch.max.bytes.")
    var fetchMaxBytes: Int32 = 52_428_800

    @Option(help: "Give up after this many milliseconds without a record.")
    var timeout: Int64 = 10_000

    func run() async throws {
        let client = try LogBrokerClient(bootstrapServers: self.common.bootstrapServer, clientID: "logbroker-perf")
        var fetch = Consumer.Configuration()
        fetch.fetchMaxBytes = self.fetchMaxBytes
        let poll: () async throws -> [ConsumerRecord]
        if let group = self.group {
            var configuration = GroupConsumer.Configuration()
            configuration.consumer = fetch
            let member = GroupConsumer(client: client, groupID: group, topics: [self.common.topic], configuration: configuration)
            poll = { try await member.poll() }
        } else {
            let consumer = Consumer(client: client, configuration: fetch)
            let metadata = try await client.topic(self.common.topic)
            await consumer.assign(metadata.partitions.map { TopicPartition(self.common.topic, $0.partition) }, from: .beginning)
            poll = { try await consumer.poll() }
        }
        let stats = PerfStats()
        try await self.common.withProgress(stats) {
            var lastRecord = ContinuousClock.now
            while stats.counts.received < self.messages {
                let records = try await poll()
                for record in records { stats.completed(bytes: record.value?.count ?? 0, latencyMicros: nil, received: true) }
                if !records.isEmpty {
                    lastRecord = .now
                } else if ContinuousClock.now - lastRecord > .milliseconds(self.timeout) {
                    break
                }
            }
        }
        try self.common.finish(stats, mode: "consumer", expected: self.messages)
    }
}

struct EndToEndPerf: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "end-to-end",
        abstract: "Send records and read them back in the same process: send-to-receipt latency."
    )

    @OptionGroup var common: CommonOptions
    @OptionGroup var producer: ProducerOptions

    @Option(help: "Give up after this many milliseconds without a record.")
    var timeout: Int64 = 10_000

    func run() async throws {
        let topic = self.common.topic
        try await self.producer.prepare(topic, bootstrap: self.common.bootstrapServer)
        let client = try LogBrokerClient(bootstrapServers: self.common.bootstrapServer, clientID: "logbroker-perf-reader")
        let consumer = Consumer(client: client)
        let metadata = try await client.topic(topic)
        await consumer.assign(metadata.partitions.map { TopicPartition(topic, $0.partition) }, from: .end)
        // The reader starts at the end before anything is sent, so it sees exactly this run's records.
        _ = try await consumer.poll()
        let stats = PerfStats()
        try await self.common.withProgress(stats) {
            let reader = Task {
                var lastRecord = ContinuousClock.now
                while stats.counts.received < self.producer.numRecords {
                    let records = try await consumer.poll()
                    let now = DispatchTime.now().uptimeNanoseconds
                    for record in records {
                        // Each value starts with its send time (this process's monotonic clock, in ns).
                        guard let value = record.value, value.count >= 8 else { continue }
                        let sentAt = value.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                        stats.completed(bytes: value.count, latencyMicros: (now &- sentAt) / 1000, received: true)
                    }
                    if !records.isEmpty {
                        lastRecord = .now
                    } else if ContinuousClock.now - lastRecord > .milliseconds(self.timeout) {
                        return
                    }
                }
            }
            try await self.producer.send(
                topic: topic, bootstrap: self.common.bootstrapServer, stats: stats,
                value: { payload in
                    let stamp = DispatchTime.now().uptimeNanoseconds
                    var value = (0..<8).map { UInt8(truncatingIfNeeded: stamp >> (56 - 8 * $0)) }
                    value += payload.dropFirst(min(8, payload.count))
                    return value
                },
                delivered: { _, _ in stats.acknowledged() }
            )
            try await reader.value
        }
        try self.common.finish(stats, mode: "end-to-end", expected: self.producer.numRecords)
    }
}
