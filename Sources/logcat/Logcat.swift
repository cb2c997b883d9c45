import ArgumentParser
import Foundation
import KafkaRecords
import LogBrokerCLI
import LogBrokerClient

/// `logcat`, kcat's habits on the LogBroker client library: `-P` produces delimited input, `-C` consumes to
/// stdout with kcat's format tokens, `-L` lists the cluster's metadata (`-J` as JSON). Binary-safe throughout.
/// Exit status 0 on success and when stdout closes early (`| head -1`); otherwise 1 with one line on stderr that
/// names the broker, topic or partition.
@main
struct Logcat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logcat",
        abstract: "Produce stdin to a topic, consume a topic to stdout, or list the cluster, with kcat's habits.",
        discussion: """
            Produce:  logcat -b HOST:PORT -P -t TOPIC [-p N] [-k KEY | -K DELIM] [-z CODEC] [-H name=value]... \
            [-l FILE] [-D DELIM]
            Consume:  logcat -b HOST:PORT -C -t TOPIC [-p N] [-o beginning|end|OFFSET|-N|s@MS] [-c COUNT] [-e] \
            [-f FORMAT] [-K DELIM] [-D DELIM]
            List:     logcat -b HOST:PORT -L [-t TOPIC] [-J]
            Group:    logcat -b HOST:PORT -G GROUP TOPIC... [-c COUNT] [-e] [-f FORMAT] [-K DELIM] [-D DELIM]

            FORMAT tokens: %t topic, %p partition, %o offset, %k key, %K key length, %s value, %S value length \
            (-1 for null), %T timestamp (ms), %h headers (name=value,...); \\n \\r \\t \\\\ and \\xNN escapes. \
            Delimiters take the same escapes. -X key=value sets client properties: acks, linger.ms, batch.size, \
            enable.idempotence, compression.type, buffer.memory, max.in.flight.requests.per.connection, client.id.
            """
    )

    @Option(name: .customShort("b"), help: "Bootstrap broker(s): host:port[,host:port...].")
    var brokers = "localhost:9092"
    @Flag(name: .customShort("P"), help: "Produce mode.") var produce = false
    @Flag(name: .customShort("C"), help: "Consume mode.") var consume = false
    @Flag(name: .customShort("L"), help: "Metadata list mode.") var list = false
    @Option(name: .customShort("G"), help: "Balanced consumer mode: join this group and read the TOPICs.")
    var group: String?
    @Argument(help: "The topics a -G group consumer subscribes to.") var groupTopics: [String] = []
    @Option(name: .customShort("t"), help: "Topic.") var topic: String?
    @Option(name: .customShort("p"), help: "Partition (produce: -1 or none for the partitioner).") var partition: Int32?
    @Option(name: .customShort("k"), help: "A fixed key for every produced message.") var key: String?
    @Option(name: .customShort("K"), help: "Key delimiter: split input at it (produce), print keys (consume).")
    var keyDelimiter: String?
    @Option(name: .customShort("D"), help: "Message delimiter (default \\n).") var delimiter = "\\n"
    @Option(name: .customShort("z"), help: "Compression: none, gzip, snappy, lz4, zstd.") var codec = "none"
    @Option(name: .customShort("H"), help: "A header name=value (repeatable).") var headers: [String] = []
    @Option(name: .customShort("l"), help: "Produce from this file instead of stdin.") var file: String?
    @Option(
        name: .customShort("o"),
        parsing: .unconditional,
        help: "Start offset: beginning, end, OFFSET, -N (N before the end), s@MS (first at or after a timestamp)."
    )
    var offset = "beginning"
    @Option(name: .customShort("c"), help: "Stop after this many messages.") var count: Int?
    @Flag(name: .customShort("e"), help: "Exit when the end of every partition is reached.") var exitAtEnd = false
    @Option(name: .customShort("f"), help: "Output format (consume).") var format: String?
    @Flag(name: .customShort("J"), help: "JSON output (list).") var json = false
    @Option(name: .customShort("X"), help: "A client property key=value (repeatable).") var properties: [String] = []

    func validate() throws {
        guard [self.produce, self.consume, self.list, self.group != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of -P, -C, -L and -G")
        }
        if self.group != nil && self.groupTopics.isEmpty { throw ValidationError("-G GROUP needs at least one TOPIC") }
        if (self.produce || self.consume) && self.topic == nil { throw ValidationError("-t TOPIC is required") }
        if self.key != nil && self.keyDelimiter != nil && self.produce {
            throw ValidationError("-k and -K cannot be used together")
        }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        do {
            let client = try LogBrokerClient(bootstrapServers: self.brokers, clientID: self.property("client.id") ?? "logcat")
            if self.produce {
                try await self.runProducer(client)
            } else if self.consume {
                try await self.runConsumer(client)
            } else if let group = self.group {
                try await self.runGroupConsumer(client, group: group)
            } else {
                try await self.runList(client)
            }
        } catch is StdoutClosed {
            return
        } catch let error as ValidationError {
            throw error
        } catch {
            FileHandle.standardError.write(Data("logcat: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    func property(_ key: String) -> String? {
        self.properties.last { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
    }

    // MARK: Produce

    func runProducer(_ client: LogBrokerClient) async throws {
        let topic = self.topic ?? ""
        var configuration = Producer.Configuration()
        guard let codec = CompressionCodec.allCases.first(where: { "\($0)" == self.codec }) else {
            throw ValidationError("unknown codec \(self.codec): none, gzip, snappy, lz4 or zstd")
        }
        configuration.compression = codec
        if let acks = self.property("acks") {
            guard let value = Int16(acks == "all" ? "-1" : acks) else { throw ValidationError("acks=\(acks)") }
            configuration.acks = value
            configuration.enableIdempotence = value == -1
        }
        if let value = self.property("enable.idempotence") { configuration.enableIdempotence = value == "true" }
        if let value = self.property("linger.ms").flatMap(Int64.init) { configuration.lingerMs = value }
        if let value = self.property("batch.size").flatMap(Int.init) { configuration.batchSize = value }
        if let value = self.property("buffer.memory").flatMap(Int.init) { configuration.bufferMemory = value }
        if let value = self.property("max.in.flight.requests.per.connection").flatMap(Int.init) {
            configuration.maxInFlightRequestsPerConnection = value
        }
        let producer = try Producer(client: client, configuration: configuration)
        let headers: [(String, [UInt8]?)] = try self.headers.map { header in
            guard let equals = header.firstIndex(of: "=") else { throw ValidationError("-H \(header): not name=value") }
            return (String(header[..<equals]), Array(header[header.index(after: equals)...].utf8))
        }
        let delimiter = try Escapes.decode(self.delimiter)
        let keyDelimiter = try self.keyDelimiter.map(Escapes.decode)
        let fixedKey = self.key.map { Array($0.utf8) }
        let partition = self.partition.flatMap { $0 < 0 ? nil : $0 }
        let failures = FailureLog()

        let input: FileHandle
        if let file = self.file {
            guard let handle = FileHandle(forReadingAtPath: file) else { throw ClientStop("cannot read \(file)") }
            input = handle
        } else {
            input = FileHandle.standardInput
        }
        var splitter = DelimitedReader(delimiter: delimiter)
        var sent = 0
        while true {
            let chunk = input.availableData
            let messages = chunk.isEmpty ? splitter.finish() : splitter.feed(chunk)
            for message in messages {
                if let limit = self.count, sent >= limit { break }
                var key = fixedKey
                var value = message
                if let keyDelimiter, let cut = message.firstRange(of: keyDelimiter) {
                    key = Array(message[..<cut.lowerBound])
                    value = Array(message[cut.upperBound...])
                }
                try await producer.send(
                    ProducerRecord(topic: topic, partition: partition, key: key, value: value, headers: headers)
                ) { result in
                    if case .failure(let error) = result { failures.add(error) }
                }
                sent += 1
            }
            if chunk.isEmpty || (self.count.map { sent >= $0 } ?? false) { break }
        }
        await producer.flush()
        if let first = failures.first {
            throw ClientStop("\(failures.count) of \(sent) messages to topic \(topic) failed; the first: \(first)")
        }
    }

    // MARK: Consume

    func runConsumer(_ client: LogBrokerClient) async throws {
        let topic = self.topic ?? ""
        let metadata = try await client.topic(topic)
        let partitions: [TopicPartition]
        if let partition = self.partition {
            guard partition >= 0, Int(partition) < metadata.partitions.count else {
                throw ClientStop("partition \(partition) of topic \(topic) does not exist")
            }
            partitions = [TopicPartition(topic, partition)]
        } else {
            partitions = metadata.partitions.map { TopicPartition(topic, $0.partition) }
        }
        let consumer = Consumer(client: client)
        try await self.position(consumer, partitions)
        let output = Output()
        let formatter = try self.formatter()
        var received = 0
        while true {
            if let limit = self.count, received >= limit { break }
            if self.exitAtEnd, await consumer.isAtEnd { break }
            for record in try await consumer.poll() {
                if let limit = self.count, received >= limit { break }
                try output.write(formatter.format(record))
                received += 1
            }
            try output.flush()
            try output.checkOpen()
        }
        try output.flush()
    }

    /// kcat's balanced consumer: the group's share of the topics, its offsets committed after every batch, the
    /// group left at the end.
    func runGroupConsumer(_ client: LogBrokerClient, group: String) async throws {
        var configuration = GroupConsumer.Configuration()
        configuration.autoOffsetReset = self.offset == "end" ? .end : .beginning
        let consumer = GroupConsumer(client: client, groupID: group, topics: self.groupTopics, configuration: configuration)
        let output = Output()
        let formatter = try self.formatter()
        var received = 0
        do {
            while self.count.map({ received < $0 }) ?? true {
                let records = try await consumer.poll()
                if self.exitAtEnd, records.isEmpty, await consumer.isAtEnd { break }
                let room = self.count.map { $0 - received } ?? records.count
                for record in records.prefix(room) {
                    try output.write(formatter.format(record))
                    received += 1
                }
                try output.flush()
                try output.checkOpen()
                // A batch cut short by -c is not committed: its unprinted records are read again next time.
                guard records.count <= room else { break }
                try await consumer.commit()
            }
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
    }

    /// The consumer output format: `-f`, else the value with `-K`'s key prefix and `-D`'s delimiter.
    func formatter() throws -> MessageFormatter {
        try MessageFormatter(
            format: self.format,
            delimiter: Escapes.decode(self.delimiter),
            keyDelimiter: self.keyDelimiter.map(Escapes.decode)
        )
    }

    /// Places every partition at `-o`.
    func position(_ consumer: Consumer, _ partitions: [TopicPartition]) async throws {
        let spec = self.offset
        if spec == "beginning" || spec == "end" {
            await consumer.assign(partitions, from: spec == "end" ? .end : .beginning)
        } else if spec.hasPrefix("s@"), let ms = Int64(spec.dropFirst(2)) {
            await consumer.assign(partitions, from: .timestamp(ms))
        } else if spec.hasPrefix("-"), let back = Int64(spec.dropFirst()) {
            await consumer.assign(partitions)
            let ends = try await consumer.offsets(partitions, at: .end)
            let starts = try await consumer.offsets(partitions, at: .beginning)
            for partition in partitions {
                await consumer.seek(partition, to: .offset(max(starts[partition] ?? 0, (ends[partition] ?? 0) - back)))
            }
        } else if let absolute = Int64(spec), absolute >= 0 {
            await consumer.assign(partitions, from: .offset(absolute))
        } else {
            throw ValidationError("-o \(spec): use beginning, end, OFFSET, -N or s@MS")
        }
    }

    // MARK: List

    func runList(_ client: LogBrokerClient) async throws {
        let metadata = try await client.refreshMetadata(topics: self.topic.map { [$0] })
        let output = Output()
        if self.json {
            let document: [String: Any] = [
                "controllerid": metadata.controllerID,
                "clusterid": metadata.clusterID ?? NSNull(),
                "brokers": metadata.brokers.map { ["id": $0.nodeID, "name": "\($0.host):\($0.port)"] },
                "topics": metadata.topics.map { topic in
                    [
                        "topic": topic.name,
                        "partitions": topic.partitions.map { partition in
                            [
                                "partition": partition.partition,
                                "leader": partition.leader,
                                "replicas": partition.replicas.map { ["id": $0] },
                                "isrs": partition.isr.map { ["id": $0] },
                            ] as [String: Any]
                        },
                    ] as [String: Any]
                },
            ]
            var bytes = try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])
            bytes.append(UInt8(ascii: "\n"))
            try output.write(Array(bytes))
        } else {
            var text = "Metadata for \(self.topic.map { "topic \($0)" } ?? "all topics"):\n"
            text += " \(metadata.brokers.count) brokers:\n"
            for broker in metadata.brokers {
                let controller = broker.nodeID == metadata.controllerID ? " (controller)" : ""
                text += "  broker \(broker.nodeID) at \(broker.host):\(broker.port)\(controller)\n"
            }
            text += " \(metadata.topics.count) topics:\n"
            for topic in metadata.topics {
                text += "  topic \"\(topic.name)\" with \(topic.partitions.count) partitions:\n"
                for partition in topic.partitions {
                    let replicas = partition.replicas.map(String.init).joined(separator: ",")
                    let isr = partition.isr.map(String.init).joined(separator: ",")
                    text += "    partition \(partition.partition), leader \(partition.leader), replicas: \(replicas), isrs: \(isr)\n"
                }
            }
            try output.write(Array(text.utf8))
        }
        try output.flush()
    }
}

/// A failure to report on one line and exit 1.
struct ClientStop: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Delivery failures collected from callbacks. Thread-safe.
final class FailureLog: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [ClientError] = []
    func add(_ error: ClientError) { self.lock.withLock { self.errors.append(error) } }
    var count: Int { self.lock.withLock { self.errors.count } }
    var first: ClientError? { self.lock.withLock { self.errors.first } }
}
