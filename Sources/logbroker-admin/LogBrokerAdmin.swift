import ArgumentParser
import Foundation
import KafkaWire
import LogBrokerCLI
import LogBrokerClient

/// `logbroker-admin`, Kafka's admin tools' habits on the LogBroker client library: topics, configs, the cluster,
/// records deletion and consumer groups. Tables for people, `--json` for scripts. Exit status: 0 done, 1 the broker
/// refused (the line on stderr names the resource and Kafka's error) or could not be reached, 64 a usage error.
@main
struct LogBrokerAdmin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logbroker-admin",
        abstract: "Topics, configs, the cluster, records deletion and consumer groups.",
        discussion: """
            Every command takes -b/--bootstrap-server HOST:PORT (default localhost:9092), before or after the \
            subcommand, and --json to print JSON instead of a table.
            """,
        subcommands: [Topics.self, Configs.self, Cluster.self, Records.self, Groups.self]
    )

    static func main() async {
        await Self.main(Self.movingConnectionOptions(Array(CommandLine.arguments.dropFirst())))
    }

    /// The arguments with the connection options given before the subcommand (`logbroker-admin -b HOST:PORT topics
    /// list`, as Kafka's tools take them anywhere) moved after it, where the subcommand's `Connection` reads them.
    static func movingConnectionOptions(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var rest = arguments[...]
        while let first = rest.first, first.hasPrefix("-") {
            if ["-b", "--bootstrap-server"].contains(first), rest.count >= 2 {
                leading += rest.prefix(2)
                rest = rest.dropFirst(2)
            } else if first.hasPrefix("--bootstrap-server=") || first.hasPrefix("-b") || first == "--json" {
                leading.append(first)
                rest = rest.dropFirst()
            } else {
                break  // --help and the like stay the root command's
            }
        }
        guard !leading.isEmpty, !rest.isEmpty else { return arguments }
        // Before a "--", after which every word is a positional argument.
        let end = rest.firstIndex(of: "--") ?? rest.endIndex
        return Array(rest[..<end]) + leading + Array(rest[end...])
    }
}

/// The options every command takes.
struct Connection: ParsableArguments {
    @Option(name: [.customShort("b"), .customLong("bootstrap-server")], help: "host:port[,host:port...]")
    var bootstrapServer = "localhost:9092"

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func client() throws -> LogBrokerClient {
        try LogBrokerClient(bootstrapServers: self.bootstrapServer, clientID: "logbroker-admin")
    }

    /// Runs `body`; a client error is printed on one line and exits 1.
    func run(_ body: (Admin) async throws -> Void) async throws {
        do {
            try await body(Admin(client: try self.client()))
        } catch let error as ClientError {
            FileHandle.standardError.write(Data("logbroker-admin: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Prints `value` as JSON (sorted keys, one line).
    func printJSON(_ value: Any) throws {
        let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

/// `key=value` pairs from repeated options.
func pairs(_ entries: [String], option: String) throws -> [String: String] {
    var result: [String: String] = [:]
    for entry in entries {
        guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
            throw ValidationError("\(option) \(entry): expected key=value")
        }
        result[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
    }
    return result
}

/// Prints rows under a header, each column as wide as its widest cell.
func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    for row in [header] + rows {
        let cells = row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }
        print(cells.joined(separator: "  "))
    }
}

// MARK: Topics

struct Topics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list, describe, alter and delete topics.",
        subcommands: [Create.self, List.self, Describe.self, Alter.self, Delete.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a topic.")
        @OptionGroup var connection: Connection
        @Argument(help: "The topic's name.") var topic: String
        @Option(help: "Partitions (default: the broker's num.partitions).") var partitions: Int32?
        @Option(help: "Replicas per partition (default: the broker's default.replication.factor).")
        var replicationFactor: Int16?
        @Option(name: .customLong("config"), help: "A topic config key=value (repeatable).") var configs: [String] = []
        @Flag(help: "Check only; create nothing.") var validateOnly = false

        func run() async throws {
            let configs = try pairs(self.configs, option: "--config")
            try await self.connection.run { admin in
                try await admin.createTopic(
                    self.topic,
                    partitions: self.partitions ?? -1,
                    replicationFactor: self.replicationFactor ?? -1,
                    configs: configs,
                    validateOnly: self.validateOnly
                )
                if self.connection.json {
                    try self.connection.printJSON(["topic": self.topic, "created": !self.validateOnly])
                } else {
                    print(self.validateOnly ? "Topic \(self.topic) would be created." : "Created topic \(self.topic).")
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the topics.")
        @OptionGroup var connection: Connection

        func run() async throws {
            try await self.connection.run { admin in
                let topics = try await admin.describeTopics().topics.map(\.name)
                if self.connection.json { try self.connection.printJSON(topics) } else { topics.forEach { print($0) } }
            }
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Partitions, leaders, replicas and ISR, and the configs that are not defaults."
        )
        @OptionGroup var connection: Connection
        @Argument(help: "Topics (default: all).") var topics: [String] = []

        func run() async throws {
            try await self.connection.run { admin in
                let metadata = try await admin.describeTopics(self.topics.isEmpty ? nil : self.topics)
                // As kafka-topics.sh: every config whose source is not the built-in default (the topic's own, and
                // broker settings that feed topic defaults).
                var configs: [String: [ConfigEntry]] = [:]
                for (resource, entries) in try await admin.describeConfigs(metadata.topics.map { .topic($0.name) }) {
                    guard case .topic(let name) = resource else { continue }
                    configs[name] = entries.filter { $0.source != "DEFAULT_CONFIG" && !$0.isSensitive && $0.value != nil }
                }
                if self.connection.json {
                    try self.connection.printJSON(
                        metadata.topics.map { topic in
                            [
                                "topic": topic.name,
                                "topic_id": "\(topic.id)",
                                "configs": Dictionary(
                                    (configs[topic.name] ?? []).map { ($0.name, $0.value ?? "") },
                                    uniquingKeysWith: { $1 }
                                ),
                                "partitions": topic.partitions.map {
                                    ["partition": $0.partition, "leader": $0.leader, "replicas": $0.replicas, "isr": $0.isr]
                                },
                            ] as [String: Any]
                        }
                    )
                    return
                }
                for topic in metadata.topics {
                    let replication = topic.partitions.first?.replicas.count ?? 0
                    let overrides = (configs[topic.name] ?? []).map { "\($0.name)=\($0.value ?? "")" }
                    print("Topic: \(topic.name)  TopicId: \(topic.id)  PartitionCount: \(topic.partitions.count)  "
                        + "ReplicationFactor: \(replication)  Configs: \(overrides.joined(separator: ","))")
                    printTable(
                        ["  Partition", "Leader", "Replicas", "Isr"],
                        topic.partitions.map {
                            ["  \($0.partition)", "\($0.leader)", $0.replicas.map(String.init).joined(separator: ","),
                             $0.isr.map(String.init).joined(separator: ",")]
                        }
                    )
                }
            }
        }
    }

    struct Alter: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add partitions to a topic.")
        @OptionGroup var connection: Connection
        @Argument(help: "The topic.") var topic: String
        @Option(help: "The new partition count (it can only grow).") var partitions: Int32

        func run() async throws {
            try await self.connection.run { admin in
                try await admin.createPartitions(self.topic, count: self.partitions)
                if self.connection.json {
                    try self.connection.printJSON(["topic": self.topic, "partitions": self.partitions])
                } else {
                    print("Topic \(self.topic) has \(self.partitions) partitions.")
                }
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a topic.")
        @OptionGroup var connection: Connection
        @Argument(help: "The topic.") var topic: String

        func run() async throws {
            try await self.connection.run { admin in
                try await admin.deleteTopic(self.topic)
                if self.connection.json {
                    try self.connection.printJSON(["topic": self.topic, "deleted": true])
                } else {
                    print("Deleted topic \(self.topic).")
                }
            }
        }
    }
}

// MARK: Configs

/// Which config resource a configs command means.
struct ResourceOptions: ParsableArguments {
    @Option(help: "A topic.") var topic: String?
    @Option(help: "A broker's node id.") var broker: String?
    @Flag(help: "The cluster-wide broker defaults.") var brokerDefaults = false

    func resource() throws -> ConfigResource {
        switch (self.topic, self.broker, self.brokerDefaults) {
        case (let topic?, nil, false): .topic(topic)
        case (nil, let broker?, false): .broker(broker)
        case (nil, nil, true): .broker("")
        default: throw ValidationError("give exactly one of --topic, --broker and --broker-defaults")
        }
    }
}

struct Configs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe and alter topic and broker configs.",
        subcommands: [Describe.self, Alter.self]
    )

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every config, its value and its source.")
        @OptionGroup var connection: Connection
        @OptionGroup var resource: ResourceOptions

        func run() async throws {
            let resource = try self.resource.resource()
            try await self.connection.run { admin in
                let entries = try await admin.describeConfigs(resource)
                if self.connection.json {
                    try self.connection.printJSON(
                        entries.map {
                            ["name": $0.name, "value": $0.value ?? NSNull(), "source": $0.source,
                             "read_only": $0.isReadOnly, "sensitive": $0.isSensitive] as [String: Any]
                        }
                    )
                } else {
                    printTable(
                        ["NAME", "VALUE", "SOURCE"],
                        entries.map { [$0.name, $0.isSensitive ? "(sensitive)" : $0.value ?? "null", $0.source] }
                    )
                }
            }
        }
    }

    struct Alter: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set and delete dynamic configs.")
        @OptionGroup var connection: Connection
        @OptionGroup var resource: ResourceOptions
        @Option(name: .customLong("set"), help: "key=value to set (repeatable).") var sets: [String] = []
        @Option(name: .customLong("delete"), help: "A key to return to its default (repeatable).")
        var deletes: [String] = []

        func run() async throws {
            let resource = try self.resource.resource()
            let set = try pairs(self.sets, option: "--set")
            guard !set.isEmpty || !self.deletes.isEmpty else { throw ValidationError("nothing to change: --set or --delete") }
            try await self.connection.run { admin in
                try await admin.alterConfigs(resource, set: set, delete: self.deletes)
                if self.connection.json {
                    try self.connection.printJSON(["resource": "\(resource)", "set": set, "deleted": self.deletes])
                } else {
                    print("Altered the configs of \(resource).")
                }
            }
        }
    }
}

// MARK: Cluster and records

struct Cluster: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe the cluster: its id, controller and brokers.",
        subcommands: [Describe.self]
    )

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cluster id, the active controller and its epoch, the image revision, and the brokers.",
            discussion: """
                Brokers are listed with their endpoint, rack, whether they are fenced, their last heartbeat and \
                the image revision they have applied. DescribeCluster names the unfenced brokers with their \
                endpoints; the active controller's DescribeQuorum names every registered broker, so a broker only \
                the latter names is fenced (its endpoint is not reported). Without DescribeQuorum's answer the \
                unfenced brokers are listed and the controller is unknown.
                """
        )
        @OptionGroup var connection: Connection

        func run() async throws {
            try await self.connection.run { admin in
                let cluster = try await admin.describeCluster()
                var quorum: QuorumDescription?
                var quorumError: ClientError?
                do {
                    quorum = try await admin.describeQuorum()
                } catch let error as ClientError {
                    quorumError = error
                }
                let rows = Self.brokers(cluster: cluster, quorum: quorum)
                if self.connection.json {
                    try self.connection.printJSON(
                        [
                            "cluster_id": cluster.clusterID,
                            // Without DescribeQuorum the active controller is unknown: DescribeCluster's
                            // controller id may be a broker that forwards to it.
                            "controller": quorum.map { $0.leaderID as Any } ?? NSNull(),
                            "controller_epoch": quorum.map { $0.leaderEpoch as Any } ?? NSNull(),
                            "image_revision": quorum.map { $0.highWatermark as Any } ?? NSNull(),
                            "brokers": rows.map { row in
                                [
                                    "id": row.id,
                                    "host": row.address?.host ?? NSNull(),
                                    "port": row.address?.port ?? NSNull(),
                                    "rack": row.address?.rack ?? NSNull(),
                                    "fenced": row.fenced,
                                    "last_heartbeat_ms": row.quorum?.lastContactMs ?? NSNull(),
                                    "applied_revision": row.quorum?.appliedRevision ?? NSNull(),
                                ] as [String: Any]
                            },
                        ] as [String: Any]
                    )
                } else {
                    print("Cluster id: \(cluster.clusterID)")
                    if let quorum {
                        print("Controller: \(quorum.leaderID) (epoch \(quorum.leaderEpoch))")
                        print("Image revision: \(quorum.highWatermark)")
                    } else {
                        print("Controller: unknown")
                    }
                    let now = Int64(Date().timeIntervalSince1970 * 1000)
                    printTable(
                        ["BROKER", "ENDPOINT", "RACK", "FENCED", "LAST-HEARTBEAT", "REVISION"],
                        rows.map { row in
                            [
                                "\(row.id)",
                                row.address.map { "\($0.host):\($0.port)" } ?? "-",
                                row.address?.rack ?? "-",
                                row.fenced ? "yes" : "no",
                                row.quorum?.lastContactMs.map { Self.age(now - $0) } ?? "-",
                                row.quorum?.appliedRevision.map { "\($0)" } ?? "-",
                            ]
                        }
                    )
                }
                if let quorumError {
                    FileHandle.standardError.write(
                        Data("logbroker-admin: no controller quorum details (\(quorumError))\n".utf8)
                    )
                }
            }
        }

        /// One broker of the table: its address when DescribeCluster named it (it is unfenced), its quorum entry
        /// when the active controller has it registered.
        struct Row {
            var id: Int32
            var address: BrokerAddress?
            var quorum: QuorumReplica?
            /// Registered with the active controller but not among the unfenced brokers.
            var fenced: Bool { self.address == nil && self.quorum != nil }
        }

        static func brokers(cluster: ClusterDescription, quorum: QuorumDescription?) -> [Row] {
            var rows: [Int32: Row] = [:]
            for broker in cluster.brokers { rows[broker.nodeID] = Row(id: broker.nodeID, address: broker) }
            for observer in quorum?.observers ?? [] {
                rows[observer.nodeID, default: Row(id: observer.nodeID)].quorum = observer
            }
            return rows.values.sorted { $0.id < $1.id }
        }

        /// "0.4s ago", "12s ago", "3m20s ago".
        static func age(_ milliseconds: Int64) -> String {
            let clamped = max(0, milliseconds)
            if clamped < 10_000 { return String(format: "%.1fs ago", Double(clamped) / 1000) }
            let seconds = clamped / 1000
            return seconds < 120 ? "\(seconds)s ago" : "\(seconds / 60)m\(seconds % 60)s ago"
        }
    }
}

struct Records: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete records: move a partition's start offset.",
        subcommands: [Delete.self]
    )

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a partition's records below an offset.")
        @OptionGroup var connection: Connection
        @Option(help: "The topic.") var topic: String
        @Option(help: "The partition.") var partition: Int32
        @Option(help: "Delete the records below this offset (-1: all of them).") var before: Int64

        func run() async throws {
            try await self.connection.run { admin in
                let low = try await admin.deleteRecords(TopicPartition(self.topic, self.partition), before: self.before)
                if self.connection.json {
                    try self.connection.printJSON(
                        ["topic": self.topic, "partition": self.partition, "low_watermark": low] as [String: Any]
                    )
                } else {
                    print("\(self.topic)-\(self.partition) now starts at offset \(low).")
                }
            }
        }
    }
}

// MARK: Groups

struct Groups: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, describe, reset and delete consumer groups.",
        subcommands: [List.self, Describe.self, ResetOffsets.self, Delete.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every group and its state.")
        @OptionGroup var connection: Connection

        func run() async throws {
            try await self.connection.run { admin in
                let groups = try await admin.listGroups()
                if self.connection.json {
                    try self.connection.printJSON(groups.map { ["group": $0.groupID, "state": $0.state] })
                } else {
                    printTable(["GROUP", "STATE"], groups.map { [$0.groupID, $0.state] })
                }
            }
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "State, members, and per partition the committed offset, log end offset and lag."
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The group id.") var group: String

        func run() async throws {
            try await self.connection.run { admin in
                let description = try await admin.describeGroup(self.group)
                // DescribeGroups answers an unknown group as "Dead", as Kafka does.
                guard description.state != "Dead" else {
                    throw ClientError("Consumer group '\(self.group)' does not exist.")
                }
                let committed = try await admin.committedOffsets(self.group)
                var owners: [TopicPartition: GroupDescription.Member] = [:]
                for member in description.members { for partition in member.assignment { owners[partition] = member } }
                let partitions = Set(committed.keys).union(owners.keys).sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
                let ends = try await admin.offsets(partitions, at: .end)
                let rows = partitions.map { partition -> [String: Any] in
                    let offset = committed[partition]
                    let end = ends[partition] ?? -1
                    return [
                        "topic": partition.topic, "partition": partition.partition,
                        "committed_offset": offset ?? NSNull(), "log_end_offset": end,
                        "lag": offset.map { max(0, end - $0) } ?? NSNull(),
                        "member": owners[partition]?.memberID ?? NSNull(),
                    ]
                }
                if self.connection.json {
                    try self.connection.printJSON(
                        [
                            "group": self.group, "state": description.state, "protocol": description.protocolName,
                            "members": description.members.map {
                                ["member_id": $0.memberID, "client_id": $0.clientID, "host": $0.host,
                                 "assignment": $0.assignment.map(\.description)] as [String: Any]
                            },
                            "partitions": rows,
                        ] as [String: Any]
                    )
                    return
                }
                print("Group \(self.group): \(description.state), \(description.members.count) members")
                if committed.isEmpty { print("Consumer group '\(self.group)' has no committed offsets.") }
                guard !partitions.isEmpty else { return }
                printTable(
                    ["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER", "CLIENT", "HOST"],
                    partitions.map { partition in
                        let offset = committed[partition]
                        let end = ends[partition] ?? -1
                        let owner = owners[partition]
                        return [partition.topic, "\(partition.partition)", offset.map(String.init) ?? "-", "\(end)",
                                offset.map { "\(max(0, end - $0))" } ?? "-", owner?.memberID ?? "-",
                                owner?.clientID ?? "-", owner?.host ?? "-"]
                    }
                )
            }
        }
    }

    struct ResetOffsets: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset-offsets",
            abstract: "Move a stopped group's committed offsets of a topic (a dry run unless --execute)."
        )
        @OptionGroup var connection: Connection
        @Argument(help: "The group id.") var group: String
        @Option(help: "The topic whose partitions move.") var topic: String
        @Flag(help: "To each partition's first offset.") var toEarliest = false
        @Flag(help: "To each partition's end.") var toLatest = false
        @Option(help: "To the first record at or after an ISO 8601 date and time, e.g. 2026-11-29T10:00:00Z.")
        var toDatetime: String?
        @Option(help: "To this offset (kept within each partition's first offset and end).") var toOffset: Int64?
        @Option(help: "By this many records from the committed offset (negative: back).") var shiftBy: Int64?
        @Flag(help: "Commit the new offsets (otherwise only print them).") var execute = false

        func run() async throws {
            let chosen = [self.toEarliest, self.toLatest, self.toDatetime != nil, self.toOffset != nil, self.shiftBy != nil]
            guard chosen.filter({ $0 }).count == 1 else {
                throw ValidationError("give one of --to-earliest, --to-latest, --to-datetime, --to-offset, --shift-by")
            }
            var timestamp: Int64?
            if let text = self.toDatetime {
                guard let date = ISO8601DateFormatter().date(from: text) else {
                    throw ValidationError("--to-datetime \(text): not an ISO 8601 date and time")
                }
                timestamp = Int64(date.timeIntervalSince1970 * 1000)
            }
            try await self.connection.run { admin in
                let description = try await admin.describeGroup(self.group)
                guard description.members.isEmpty else {
                    throw ClientError("group \(self.group) has \(description.members.count) members: stop them first")
                }
                let metadata = try await admin.describeTopics([self.topic])
                let partitions = (metadata.topics.first?.partitions ?? []).map { TopicPartition(self.topic, $0.partition) }
                let earliest = try await admin.offsets(partitions, at: .beginning)
                let latest = try await admin.offsets(partitions, at: .end)
                let committed = try await admin.committedOffsets(self.group)
                var targets: [TopicPartition: Int64] = [:]
                for partition in partitions {
                    let low = earliest[partition] ?? 0
                    let high = latest[partition] ?? 0
                    let wanted: Int64
                    if self.toEarliest {
                        wanted = low
                    } else if self.toLatest {
                        wanted = high
                    } else if let timestamp {
                        let found = try await admin.offsets([partition], at: .timestamp(timestamp))[partition] ?? -1
                        wanted = found < 0 ? high : found
                    } else if let offset = self.toOffset {
                        wanted = offset
                    } else {
                        wanted = (committed[partition] ?? low) + (self.shiftBy ?? 0)
                    }
                    targets[partition] = min(max(wanted, low), high)
                }
                if self.execute { try await admin.commitOffsets(self.group, targets) }
                let sorted = targets.sorted { $0.key.partition < $1.key.partition }
                if self.connection.json {
                    try self.connection.printJSON(
                        [
                            "group": self.group, "executed": self.execute,
                            "offsets": sorted.map { ["topic": $0.key.topic, "partition": $0.key.partition, "offset": $0.value] },
                        ] as [String: Any]
                    )
                } else {
                    printTable(["TOPIC", "PARTITION", "NEW-OFFSET"], sorted.map { [$0.key.topic, "\($0.key.partition)", "\($0.value)"] })
                    if !self.execute { print("Dry run: add --execute to commit these offsets.") }
                }
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a group without members, offsets and all.")
        @OptionGroup var connection: Connection
        @Argument(help: "The group id.") var group: String

        func run() async throws {
            try await self.connection.run { admin in
                try await admin.deleteGroup(self.group)
                if self.connection.json {
                    try self.connection.printJSON(["group": self.group, "deleted": true])
                } else {
                    print("Deleted group \(self.group).")
                }
            }
        }
    }
}
