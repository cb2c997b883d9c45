import ArgumentParser
import Foundation
import KafkaRecords
import KafkaWire
import LogBrokerCLI
import LogBrokerClient

/// `logcat`, kcat's habits on the LogBroker client library: `-P` produces delimited input, `-C` consumes to
/// stdout with kcat's format tokens or its JSON envelope (`-J`), `-G` consumes as a member of a group, `-L` lists
/// the cluster's metadata (`-J` as JSON). Binary-safe throughout. Exit status 0 on success, when stdout closes early
/// (`| head -1`) and when SIGINT or SIGTERM stops a group consumer (which commits what it printed and leaves the
/// group first); otherwise 1 with one line on stderr that names the broker, topic or partition.
@main
struct Logcat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logcat",
        abstract: "Produce stdin to a topic, consume a topic to stdout, or list the cluster, with kcat's habits.",
        discussion: """
            Produce:  logcat -b HOST:PORT -P -t TOPIC [-p N] [-k KEY | -K DELIM] [-z CODEC] [-H name=value]... \
            [-l FILE] [-D DELIM]
            Consume:  logcat -b HOST:PORT -C -t TOPIC [-p N] [-o beginning|end|OFFSET|-N|s@MS] [-c COUNT] [-e] \
            [-f FORMAT | -J] [-K DELIM] [-D DELIM]
            List:     logcat -b HOST:PORT -L [-t TOPIC] [-J]
            Group:    logcat -b HOST:PORT -G GROUP TOPIC... [-o beginning|end] [-c COUNT] [-e] [-f FORMAT | -J] \
            [-K DELIM] [-D DELIM]

            A group consumer commits the offsets of the messages it printed after every batch and when it stops \
            (-c, -e, SIGINT, SIGTERM), then leaves the group at once.

            FORMAT tokens: %t topic, %p partition, %o offset, %k key, %K key length, %s value, %S value length \
            (-1 for null), %T timestamp (ms), %h headers (name=value,...); \\n \\r \\t \\\\ and \\xNN escapes. \
            Delimiters take the same escapes. -J prints each consumed message as kcat's JSON envelope on one line: \
            topic, partition, offset, tstype, ts, broker, headers, key, payload.

            -X property=value sets client properties (an unknown one is refused): acks, linger.ms, batch.size, \
            enable.idempotence, compression.type, buffer.memory, max.in.flight.requests.per.connection, client.id, \
            bootstrap.servers, auto.offset.reset (-G without committed offsets).
            """
    )

    @Option(
        name: .customShort("b"),
        help: ArgumentHelp(
            "Bootstrap broker(s): host:port[,host:port...] (default: localhost:9092).",
            valueName: "host:port"
        )
    )
    var brokers: String?
    @Flag(name: .customShort("P"), help: "Produce mode.") var produce = false
    @Flag(name: .customShort("C"), help: "Consume mode.") var consume = false
    @Flag(name: .customShort("L"), help: "Metadata list mode.") var list = false
    @Option(
        name: .customShort("G"),
        help: ArgumentHelp("Balanced consumer mode: join this group and read the TOPICs.", valueName: "group")
    )
    var group: String?
    @Argument(help: "The topics a -G group consumer subscribes to.") var groupTopics: [String] = []
    @Option(name: .customShort("t"), help: ArgumentHelp("Topic.", valueName: "topic")) var topic: String?
    @Option(
        name: .customShort("p"),
        help: ArgumentHelp("Partition (produce: -1 or none for the partitioner).", valueName: "partition")
    )
    var partition: Int32?
    @Option(
        name: .customShort("k"),
        help: ArgumentHelp("A fixed key for every produced message.", valueName: "key")
    )
    var key: String?
    @Option(
        name: .customShort("K"),
        help: ArgumentHelp("Key delimiter: split input at it (produce), print keys (consume).", valueName: "delim")
    )
    var keyDelimiter: String?
    @Option(name: .customShort("D"), help: ArgumentHelp("Message delimiter.", valueName: "delim")) var delimiter = "\\n"
    @Option(
        name: .customShort("z"),
        help: ArgumentHelp("Compression: none, gzip, snappy, lz4, zstd.", valueName: "codec")
    )
    var codec = "none"
    @Option(
        name: .customShort("H"),
        help: ArgumentHelp("A header name=value (repeatable).", valueName: "name=value")
    )
    var headers: [String] = []
    @Option(
        name: .customShort("l"),
        help: ArgumentHelp("Produce from this file instead of stdin.", valueName: "file")
    )
    var file: String?
    @Option(
        name: .customShort("o"),
        parsing: .unconditional,
        help: ArgumentHelp(
            "Start offset: beginning, end, OFFSET, -N (N before the end), s@MS (first at or after a timestamp).",
            valueName: "offset"
        )
    )
    var offset = "beginning"
    @Option(
        name: .customShort("c"),
        help: ArgumentHelp("Stop after this many messages.", valueName: "count")
    )
    var count: Int?
    @Flag(name: .customShort("e"), help: "Exit when the end of every partition is reached.") var exitAtEnd = false
    @Option(
        name: .customShort("f"),
        help: ArgumentHelp("Output format (consume).", valueName: "format")
    )
    var format: String?
    @Flag(name: .customShort("J"), help: "JSON output: the metadata (-L), or kcat's envelope per message (-C, -G).")
    var json = false
    @Option(
        name: .customShort("X"),
        help: ArgumentHelp("A client property key=value (repeatable).", valueName: "property=value")
    )
    var properties: [String] = []
    @Flag(name: .customShort("q"), help: "Be quiet (logcat prints nothing but errors on stderr anyway).")
    var quiet = false

    func validate() throws {
        guard [self.produce, self.consume, self.list, self.group != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of -P, -C, -L and -G")
        }
        if self.group != nil && self.groupTopics.isEmpty { throw ValidationError("-G GROUP needs at least one TOPIC") }
        if (self.produce || self.consume) && self.topic == nil { throw ValidationError("-t TOPIC is required") }
        if self.key != nil && self.keyDelimiter != nil && self.produce {
            throw ValidationError("-k and -K cannot be used together")
        }
        do {
            _ = try ClientProperties(self.properties)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        do {
            let properties = try ClientProperties(self.properties)
            let client = try LogBrokerClient(
                bootstrapServers: self.brokers ?? properties["bootstrap.servers"] ?? "localhost:9092",
                clientID: properties["client.id"] ?? "logcat"
            )
            if self.produce {
                try await self.runProducer(client, properties)
            } else if self.consume {
                try await self.runConsumer(client)
            } else if let group = self.group {
                try await self.runGroupConsumer(client, group: group, properties)
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

    // MARK: Produce

    func runProducer(_ client: LogBrokerClient, _ properties: ClientProperties) async throws {
        let topic = self.topic ?? ""
        var configuration = Producer.Configuration()
        let codecName = self.codec == "none" ? properties["compression.type"] ?? "none" : self.codec
        guard let codec = CompressionCodec.allCases.first(where: { "\($0)" == codecName }) else {
            throw ValidationError("unknown codec \(codecName): none, gzip, snappy, lz4 or zstd")
        }
        configuration.compression = codec
        if let acks = properties["acks"], let value = Int16(acks == "all" ? "-1" : acks) {
            configuration.acks = value
            configuration.enableIdempotence = value == -1
        }
        if let value = properties["enable.idempotence"] { configuration.enableIdempotence = value == "true" }
        if let value = properties["linger.ms"].flatMap(Int64.init) { configuration.lingerMs = value }
        if let value = properties["batch.size"].flatMap(Int.init) { configuration.batchSize = value }
        if let value = properties["buffer.memory"].flatMap(Int.init) { configuration.bufferMemory = value }
        if let value = properties["max.in.flight.requests.per.connection"].flatMap(Int.init) {
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

    /// kcat's balanced consumer: the group's share of the topics, the offsets of the printed records committed after
    /// every batch and at the end, the group left at the end. SIGINT and SIGTERM end it the same way: what was
    /// printed is committed and the group is left at once, so its partitions move without waiting for the session
    /// timeout.
    func runGroupConsumer(_ client: LogBrokerClient, group: String, _ properties: ClientProperties) async throws {
        var configuration = GroupConsumer.Configuration()
        let reset = properties["auto.offset.reset"] ?? (self.offset == "end" ? "end" : "beginning")
        configuration.autoOffsetReset = ["end", "latest", "largest"].contains(reset) ? .end : .beginning
        let consumer = GroupConsumer(
            client: client,
            groupID: group,
            topics: self.groupTopics,
            configuration: configuration
        )
        let (formatter, count, exitAtEnd) = (try self.formatter(), self.count, self.exitAtEnd)
        let loop = Task {
            try await Self.consumeAsMember(consumer, formatter: formatter, count: count, exitAtEnd: exitAtEnd)
        }
        let signals = StopSignals { _ in loop.cancel() }
        defer { signals.cancel() }
        try await loop.value
    }

    /// The group consumer's loop, until `count` records, the end (`exitAtEnd`), a failure or cancellation (a stop
    /// signal); then the offsets are committed up to the printed records and the group is left.
    static func consumeAsMember(
        _ consumer: GroupConsumer,
        formatter: MessageFormatter,
        count: Int?,
        exitAtEnd: Bool
    ) async throws {
        let output = Output()
        var received = 0
        // The first record returned but not printed, per partition (cut short by -c, or fetched when a stop signal
        // came): its partition is committed up to there, not to where the fetch left it.
        var unprinted: [TopicPartition: Int64] = [:]
        var failure: (any Error)?
        do {
            while count.map({ received < $0 }) ?? true, !Task.isCancelled {
                let records = try await consumer.poll()
                let stopping = Task.isCancelled
                let room = stopping ? 0 : count.map { $0 - received } ?? records.count
                for record in records.dropFirst(room) {
                    let partition = TopicPartition(record.topic, record.partition)
                    unprinted[partition] = min(unprinted[partition] ?? .max, record.offset)
                }
                if stopping { break }
                if exitAtEnd, records.isEmpty, await consumer.isAtEnd { break }
                for record in records.prefix(room) {
                    try output.write(formatter.format(record))
                    received += 1
                }
                try output.flush()
                try output.checkOpen()
                guard !records.isEmpty, unprinted.isEmpty else { continue }
                // A refusal because the group is rebalancing is dropped: the partitions' next owners read these
                // records again, as at-least-once delivery allows.
                try await consumer.commit()
            }
        } catch {
            // A stop signal may surface as whatever the call it interrupted throws: still a stop, not a failure.
            if !(error is CancellationError), !Task.isCancelled { failure = error }
        }
        // A task of its own, not cancelled with this one, so that a stop signal does not cut the commit and the
        // LeaveGroup short.
        let (held, failed) = (unprinted, failure != nil)
        await Task {
            if !failed {
                let offsets = await consumer.positions.merging(held) { _, firstUnprinted in firstUnprinted }
                _ = try? await consumer.commit(offsets)
            }
            await consumer.close()
        }.value
        if let failure { throw failure }
    }

    /// The consumer output format: `-f`, else the value with `-K`'s key prefix and `-D`'s delimiter.
    func formatter() throws -> MessageFormatter {
        try MessageFormatter(
            format: self.format,
            json: self.json,
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
