import GroupCoordinator
import KafkaProperties
import LogStorage
import NIOCore
import Replication

/// The broker's settings, read from `server.properties` and `--override` arguments with Kafka's property names,
/// types, defaults and validation (`KafkaConfig`), so a Kafka operator's file means the same here.
///
/// Three kinds of key: one in `table` is parsed and validated, and a bad value stops start-up with a message that
/// names the key, the value and what is allowed; a real Kafka broker key that LogBroker does not implement is a
/// warning (operators paste their Kafka files); any other key stops start-up with the nearest known name
/// suggested. Time settings with several spellings take Kafka's precedence (`log.retention.ms` over `.minutes`
/// over `.hours`; `log.roll.ms` over `.hours`).
///
/// A value type, built once at start-up; thread-safe.
public struct BrokerConfiguration: Sendable {
    /// One entry of `listeners` or `advertised.listeners`: `NAME://host:port`.
    public struct Listener: Hashable, Sendable, CustomStringConvertible {
        /// The listener name (`PLAINTEXT`, or any name mapped in `listener.security.protocol.map`).
        public var name: String
        /// The host to bind or advertise; "" binds every interface, as in Kafka.
        public var host: String
        /// The port; 0 binds an ephemeral port (for tests).
        public var port: Int
        /// The security protocol the name maps to; only `PLAINTEXT` is served so far.
        public var securityProtocol: String

        public init(name: String, host: String, port: Int, securityProtocol: String) {
            self.name = name
            self.host = host
            self.port = port
            self.securityProtocol = securityProtocol
        }

        public var description: String {
            let host = self.host.contains(":") ? "[\(self.host)]" : self.host
            return "\(self.name)://\(host):\(self.port)"
        }
    }

    /// The log manager's broker-wide schedule. The `log.*` settings that are topic defaults reach the logs through
    /// `ConfigLayers` and `LogConfig`, not through here.
    public struct LogSchedule: Hashable, Sendable {
        /// `log.retention.check.interval.ms`.
        public var retentionCheckIntervalMs: Int64
        /// `log.flush.interval.messages`; Long.MAX_VALUE (the default) never fsyncs by count.
        public var flushIntervalMessages: Int64
        /// `log.flush.interval.ms`; Long.MAX_VALUE (the default) never fsyncs by time.
        public var flushIntervalMs: Int64
        /// `log.flush.offset.checkpoint.interval.ms`: the recovery-point (and high-watermark) checkpoint's period.
        public var offsetCheckpointIntervalMs: Int64
        /// `log.flush.start.offset.checkpoint.interval.ms`: the log-start-offset checkpoint's period.
        public var startOffsetCheckpointIntervalMs: Int64
        /// `log.cleaner.enable`, `.threads`, `.dedupe.buffer.size` and `.backoff.ms`.
        public var cleaner: LogCleaner.Configuration
    }

    /// How many connections the broker keeps and for how long (Kafka's `max.connections*` and
    /// `connections.max.idle.ms`).
    public struct ConnectionLimits: Hashable, Sendable {
        /// `max.connections`: connections across all listeners. Default Int.MAX_VALUE; the descriptor split
        /// (`FileHandleBudget.split`) may lower it further.
        public var maxConnections: Int
        /// `listener.name.NAME.max.connections`, by listener name (as written in `listeners`).
        public var perListener: [String: Int]
        /// `max.connections.per.ip`: connections from one address. Default Int.MAX_VALUE.
        public var maxConnectionsPerIP: Int
        /// `max.connections.per.ip.overrides` (`host:count,…`), by IP address (host names resolved at start).
        public var perIPOverrides: [String: Int]
        /// `connections.max.idle.ms`: a connection that reads and writes nothing this long is closed; nil (a
        /// negative value) never. Default 600,000.
        public var idleTimeoutMs: Int64?

        /// The most connections `address` may hold.
        public func limit(forIP address: String) -> Int {
            self.perIPOverrides[address] ?? self.maxConnectionsPerIP
        }
    }

    /// A role of `process.roles`.
    public enum ProcessRole: String, Hashable, Sendable, CaseIterable {
        case broker
        case controller
    }

    /// Where the cluster metadata lives (`metadata.store`).
    public enum MetadataStoreKind: String, Hashable, Sendable {
        /// A file in the first log directory: one process is the whole cluster.
        case local
        /// etcd v3, shared by every process of the cluster.
        case etcd
    }

    /// One entry of `metadata.etcd.endpoints`: `http://host:port`.
    public struct EtcdEndpoint: Hashable, Sendable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// The endpoint as an URL, `http://host:port` (`[::1]` for an IPv6 address).
        public var description: String {
            "http://\(self.host.contains(":") ? "[\(self.host)]" : self.host):\(self.port)"
        }
    }

    /// The metadata store and where to reach it.
    public struct MetadataStoreSettings: Hashable, Sendable {
        /// `metadata.store`: `local` (the default) or `etcd`.
        public var kind: MetadataStoreKind
        /// `metadata.etcd.endpoints`: the etcd members to reach (comma-separated `http://host:port`); needed with
        /// `etcd`.
        public var etcdEndpoints: [EtcdEndpoint]
        /// `metadata.etcd.prefix`: the key prefix of this cluster in etcd, so several clusters can share one etcd as
        /// ZooKeeper chroots did. Starts with `/`. Default `/logbroker`.
        public var etcdPrefix: String
    }

    /// `listeners` without the controller listeners: where Kafka clients connect. Default
    /// `PLAINTEXT://127.0.0.1:9092`.
    public var listeners: [Listener]
    /// The entries of `listeners` named in `controller.listener.names` (`CONTROLLER://host:port`, as KRaft configs
    /// write them): where the controller would take the KRaft RPCs. Kafka clients are never served there.
    public var controllerListeners: [Listener]
    /// `controller.listener.names`: the listener names the controller is reached on (the first is the one brokers
    /// use). Default none.
    public var controllerListenerNames: [String]
    /// `advertised.listeners`: what Metadata tells clients; `listeners` (without the controller listeners) when
    /// not set.
    public var advertisedListeners: [Listener]
    /// `node.id`: this node's id; required, as in Kafka's KRaft mode.
    public var nodeID: Int32
    /// `process.roles`: `broker`, `controller`, or both (the default). Only both runs so far (with the local store).
    public var processRoles: Set<ProcessRole>
    /// `metadata.store`, `metadata.etcd.endpoints` and `metadata.etcd.prefix`.
    public var metadataStore: MetadataStoreSettings
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats to the controller. Default 2,000.
    public var brokerHeartbeatIntervalMs: Int32
    /// `broker.session.timeout.ms`: a broker that sent no heartbeat this long is fenced. Default 9,000; more than
    /// the heartbeat interval.
    public var brokerSessionTimeoutMs: Int32
    /// `unclean.leader.election.enable`: whether a partition whose ISR has no live member may elect a live replica
    /// out of it (losing what only the ISR had). Default false. The controller's elections read the topic's config,
    /// then the dynamic broker configs, then this.
    public var uncleanLeaderElectionEnable: Bool
    /// `broker.rack`: the rack this broker is in, for rack-aware replica assignment; nil (the default, empty) for
    /// none.
    public var brokerRack: String?
    /// `log.dirs`, else `log.dir` (default `/tmp/kafka-logs`).
    public var logDirs: [String]
    /// `num.partitions`: partitions of a topic created without a count. Default 1.
    public var numPartitions: Int32
    /// `default.replication.factor`: replicas of an auto-created topic. Default 1.
    public var defaultReplicationFactor: Int16
    /// `auto.create.topics.enable`. Default true.
    public var autoCreateTopicsEnable: Bool
    /// `socket.request.max.bytes`: the largest request frame read from a socket. Default 104,857,600.
    public var socketRequestMaxBytes: Int32
    /// `max.incremental.fetch.session.cache.slots`. Default 1000.
    public var maxIncrementalFetchSessionCacheSlots: Int32
    /// `max.connections`, `max.connections.per.ip(.overrides)`, `listener.name.NAME.max.connections`,
    /// `connections.max.idle.ms`.
    public var connections: ConnectionLimits
    /// `queued.max.request.bytes`: the memory all request frames being read or served may take; ≤ 0 (Kafka's
    /// default -1) is unbounded.
    public var queuedMaxRequestBytes: Int64
    /// `socket.request.read.timeout.ms` (LogBroker's own; Kafka has none): once a frame's size has arrived, its
    /// bytes must arrive within this, or the connection is closed; -1 never. Default 30,000.
    public var socketRequestReadTimeoutMs: Int64
    /// The log manager's schedule.
    public var log: LogSchedule
    /// `group.*` and `offset.metadata.max.bytes`.
    public var groupCoordinator: GroupCoordinator.Configuration
    /// Every setting of `table`, resolved (for the group coordinator's `offsets.*` and `group.*`, and for
    /// DescribeConfigs).
    public let settings: Settings
    /// `num.replica.fetchers`, `replica.fetch.*` and `replica.socket.timeout.ms`: the followers' fetchers.
    public var replicaFetchers: ReplicaFetcherConfiguration

    static let securityProtocols = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

    /// The settings LogBroker implements, with Kafka's names, types, defaults and validators.
    public static let table = SettingsTable([
        SettingDefinition(
            "listeners",
            .string,
            default: .string("PLAINTEXT://127.0.0.1:9092"),
            documentation: "Comma-separated NAME://host:port listeners to accept clients on."
        ),
        SettingDefinition(
            "advertised.listeners",
            .string,
            default: .string(""),
            documentation: "Listeners handed to clients in Metadata; the listeners when empty."
        ),
        SettingDefinition(
            "listener.security.protocol.map",
            .string,
            default: .string("PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
            documentation: "Listener name to security protocol."
        ),
        SettingDefinition("node.id", .int, default: nil, validator: .atLeast(0), documentation: "This node's id."),
        SettingDefinition(
            "process.roles",
            .list,
            default: .list(["broker", "controller"]),
            validator: .oneOf(["broker", "controller"]),
            documentation: "broker, controller, or both."
        ),
        SettingDefinition(
            "controller.listener.names",
            .list,
            default: .list([]),
            documentation: "Names of the listeners the controller is reached on; not served to Kafka clients."
        ),
        SettingDefinition(
            "metadata.store",
            .string,
            default: .string("local"),
            validator: .oneOf(["local", "etcd"]),
            documentation: "Where the cluster metadata lives: local (a file in the first log directory) or etcd."
        ),
        SettingDefinition(
            "metadata.etcd.endpoints",
            .list,
            default: .list([]),
            documentation: "Comma-separated http://host:port of the etcd members, with metadata.store=etcd."
        ),
        SettingDefinition(
            "metadata.etcd.prefix",
            .string,
            default: .string("/logbroker"),
            documentation: "The prefix of this cluster's keys in etcd, so several clusters can share one etcd."
        ),
        SettingDefinition(
            "broker.heartbeat.interval.ms",
            .int,
            default: .int(2000),
            validator: .atLeast(1),
            documentation: "Milliseconds between a broker's heartbeats to the controller."
        ),
        SettingDefinition(
            "broker.session.timeout.ms",
            .int,
            default: .int(9000),
            validator: .atLeast(1),
            documentation: "A broker without a heartbeat for this many milliseconds is fenced."
        ),
        SettingDefinition(
            "broker.rack",
            .string,
            default: .string(""),
            documentation: "The rack of this broker, for rack-aware replica assignment; empty for none."
        ),
        SettingDefinition("log.dir", .string, default: .string("/tmp/kafka-logs")),
        SettingDefinition("log.dirs", .list, default: .list([])),
        SettingDefinition("num.partitions", .int, default: .int(1), validator: .atLeast(1)),
        SettingDefinition("default.replication.factor", .int, default: .int(1), validator: .between(1, 32767)),
        SettingDefinition("auto.create.topics.enable", .boolean, default: .boolean(true)),
        SettingDefinition("message.max.bytes", .int, default: .int(1_048_588), validator: .atLeast(0)),
        SettingDefinition("socket.request.max.bytes", .int, default: .int(104_857_600), validator: .atLeast(1)),
        SettingDefinition(
            "max.incremental.fetch.session.cache.slots",
            .int,
            default: .int(1000),
            validator: .atLeast(0)
        ),
        SettingDefinition(
            "max.connections",
            .int,
            default: .int(Int32.max),
            validator: .atLeast(0),
            documentation: "Connections the broker accepts across all listeners; more are closed at accept."
        ),
        SettingDefinition(
            "max.connections.per.ip",
            .int,
            default: .int(Int32.max),
            validator: .atLeast(0),
            documentation: "Connections accepted from one IP address; more are closed at accept."
        ),
        SettingDefinition(
            "max.connections.per.ip.overrides",
            .string,
            default: .string(""),
            documentation: "Per-IP or hostname limits overriding max.connections.per.ip: host:count,host:count."
        ),
        SettingDefinition(
            "connections.max.idle.ms",
            .long,
            default: .long(600_000),
            documentation: "Idle connections are closed after this many milliseconds; -1 never."
        ),
        SettingDefinition(
            "queued.max.request.bytes",
            .long,
            default: .long(-1),
            documentation: "Bytes of requests read and not yet handled, across connections; -1 unbounded."
        ),
        SettingDefinition(
            "socket.request.read.timeout.ms",
            .long,
            default: .long(30_000),
            validator: .atLeast(-1),
            documentation:
                "LogBroker's own: a request's bytes must arrive within this many milliseconds of its size; -1 never."
        ),
        SettingDefinition("log.segment.bytes", .int, default: .int(1 << 30), validator: .atLeast(14)),
        SettingDefinition("log.roll.ms", .long, default: .long(604_800_000), validator: .atLeast(1)),
        SettingDefinition("log.roll.hours", .int, default: .int(168), validator: .atLeast(1)),
        SettingDefinition("log.retention.ms", .long, default: .long(604_800_000), validator: .atLeast(-1)),
        SettingDefinition("log.retention.minutes", .int, default: .int(10_080), validator: .atLeast(-1)),
        SettingDefinition("log.retention.hours", .int, default: .int(168), validator: .atLeast(-1)),
        SettingDefinition("log.retention.bytes", .long, default: .long(-1)),
        SettingDefinition("log.retention.check.interval.ms", .long, default: .long(300_000), validator: .atLeast(1)),
        SettingDefinition("log.index.interval.bytes", .int, default: .int(4096), validator: .atLeast(0)),
        SettingDefinition("log.index.size.max.bytes", .int, default: .int(10 << 20), validator: .atLeast(4)),
        SettingDefinition("log.segment.delete.delay.ms", .long, default: .long(60_000), validator: .atLeast(0)),
        SettingDefinition("log.flush.interval.messages", .long, default: .long(Int64.max), validator: .atLeast(1)),
        SettingDefinition("log.flush.interval.ms", .long, default: .long(Int64.max), validator: .atLeast(0)),
        SettingDefinition(
            "log.flush.offset.checkpoint.interval.ms",
            .int,
            default: .int(60_000),
            validator: .atLeast(0)
        ),
        SettingDefinition(
            "log.flush.start.offset.checkpoint.interval.ms",
            .int,
            default: .int(60_000),
            validator: .atLeast(0)
        ),
        SettingDefinition(
            "log.cleanup.policy",
            .list,
            default: .list(["delete"]),
            validator: .oneOf(["compact", "delete"])
        ),
        SettingDefinition(
            "log.message.timestamp.type",
            .string,
            default: .string("CreateTime"),
            validator: .oneOf(["CreateTime", "LogAppendTime"])
        ),
        SettingDefinition(
            "log.message.timestamp.before.max.ms",
            .long,
            default: .long(Int64.max),
            validator: .atLeast(0)
        ),
        SettingDefinition(
            "log.message.timestamp.after.max.ms",
            .long,
            default: .long(3_600_000),
            validator: .atLeast(0)
        ),
        SettingDefinition("log.preallocate", .boolean, default: .boolean(false)),
        SettingDefinition("log.cleaner.enable", .boolean, default: .boolean(true)),
        SettingDefinition("log.cleaner.threads", .int, default: .int(1), validator: .atLeast(0)),
        SettingDefinition(
            "log.cleaner.dedupe.buffer.size",
            .long,
            default: .long(134_217_728),
            validator: .atLeast(1024 * 1024)
        ),
        SettingDefinition("log.cleaner.backoff.ms", .long, default: .long(15_000), validator: .atLeast(0)),
        SettingDefinition("log.cleaner.delete.retention.ms", .long, default: .long(86_400_000), validator: .atLeast(0)),
        SettingDefinition("log.cleaner.min.compaction.lag.ms", .long, default: .long(0), validator: .atLeast(0)),
        SettingDefinition(
            "log.cleaner.max.compaction.lag.ms",
            .long,
            default: .long(Int64.max),
            validator: .atLeast(1)
        ),
        SettingDefinition("log.cleaner.min.cleanable.ratio", .double, default: .double(0.5)),
        SettingDefinition("min.insync.replicas", .int, default: .int(1), validator: .atLeast(1)),
        SettingDefinition("unclean.leader.election.enable", .boolean, default: .boolean(false)),
        SettingDefinition("log.message.downconversion.enable", .boolean, default: .boolean(true)),
        LogConfig.compressionType,
        SettingDefinition("offsets.topic.replication.factor", .int, default: .int(3), validator: .between(1, 32767)),
        SettingDefinition("offsets.topic.num.partitions", .int, default: .int(50), validator: .atLeast(1)),
        SettingDefinition("offsets.topic.segment.bytes", .int, default: .int(104_857_600), validator: .atLeast(1)),
        SettingDefinition("offsets.retention.minutes", .int, default: .int(10_080), validator: .atLeast(1)),
        SettingDefinition(
            "offsets.retention.check.interval.ms",
            .long,
            default: .long(600_000),
            validator: .atLeast(1)
        ),
        SettingDefinition("group.min.session.timeout.ms", .int, default: .int(6000)),
        SettingDefinition("group.max.session.timeout.ms", .int, default: .int(1_800_000)),
        SettingDefinition("group.initial.rebalance.delay.ms", .int, default: .int(3000)),
        SettingDefinition("group.max.size", .int, default: .int(Int32.max), validator: .atLeast(1)),
        SettingDefinition("offset.metadata.max.bytes", .int, default: .int(4096), validator: .atLeast(0)),
        SettingDefinition(
            "num.replica.fetchers",
            .int,
            default: .int(1),
            validator: .atLeast(1),
            documentation: "Fetchers (connections) per leader that a follower copies partitions with."
        ),
        SettingDefinition("replica.fetch.max.bytes", .int, default: .int(1_048_576), validator: .atLeast(0)),
        SettingDefinition("replica.fetch.response.max.bytes", .int, default: .int(10_485_760), validator: .atLeast(0)),
        SettingDefinition("replica.fetch.wait.max.ms", .int, default: .int(500), validator: .atLeast(0)),
        SettingDefinition("replica.fetch.min.bytes", .int, default: .int(1), validator: .atLeast(0)),
        SettingDefinition("replica.fetch.backoff.ms", .int, default: .int(1000), validator: .atLeast(0)),
        SettingDefinition("replica.socket.timeout.ms", .int, default: .int(30_000), validator: .atLeast(1)),
    ])

    /// A table of the Kafka broker keys LogBroker does not implement, only for "did you mean" among them.
    private static let kafkaOnlyNames = SettingsTable(
        KafkaBrokerSettingNames.names.sorted().filter { Self.table[$0] == nil }.map {
            SettingDefinition($0, .string, default: .string(""))
        }
    )

    /// The configuration of `properties` (the file's pairs with the overrides already applied), and one warning
    /// per Kafka broker key it ignores.
    /// - Parameter source: where a key came from, for error messages (the file name, or "--override").
    /// - Throws: `LogBrokerServerError` for a bad value, a missing `node.id`, an unsupported listener or role, or
    ///   a key Kafka does not know either (with a suggestion).
    public static func resolve(
        _ properties: Properties,
        source: (String) -> String? = { _ in nil }
    ) throws(LogBrokerServerError) -> (configuration: BrokerConfiguration, warnings: [String]) {
        let settings: Settings
        do {
            settings = try Self.table.resolve(properties, unknownKeys: .collect)
        } catch {
            let located = error.settingName.flatMap(source).map { error.from($0) } ?? error
            throw .configuration(located)
        }
        var warnings: [String] = []
        for (key, _) in settings.unknown {
            if Self.listenerMaxConnectionsName(key) != nil { continue }  // parsed by init
            if KafkaBrokerSettingNames.contains(key) {
                let origin = source(key).map { "\($0): " } ?? ""
                warnings.append(
                    "\(origin)\(key) is an Apache Kafka broker setting that LogBroker does not implement; ignored."
                )
            } else {
                let suggestion = Self.table.suggestion(for: key) ?? Self.kafkaOnlyNames.suggestion(for: key)
                let error = PropertiesError.unknownSetting(key, suggestion: suggestion)
                throw .configuration(source(key).map { error.from($0) } ?? error)
            }
        }
        let configuration = try BrokerConfiguration(settings: settings, source: source)
        return (configuration, warnings)
    }

    /// The pairs of a properties file with `overrides` (`key=value` arguments, as kafka-server-start's
    /// `--override`) applied on top, and a function naming where each key came from.
    public static func merge(
        file: Properties,
        fileName: String,
        overrides: [String]
    ) throws(LogBrokerServerError) -> (properties: Properties, source: @Sendable (String) -> String?) {
        var merged = file
        var overridden: Set<String> = []
        for argument in overrides {
            guard let equals = argument.firstIndex(of: "="), equals != argument.startIndex else {
                throw .invalidOverride(argument)
            }
            let key = String(argument[..<equals])
            merged[key] = String(argument[argument.index(after: equals)...])
            overridden.insert(key)
        }
        let fileKeys = Set(file.dictionary.keys)
        let overriddenKeys = overridden
        return (
            merged,
            { key in overriddenKeys.contains(key) ? "--override" : fileKeys.contains(key) ? fileName : nil }
        )
    }

    private init(settings: Settings, source: (String) -> String?) throws(LogBrokerServerError) {
        self.settings = settings
        self.nodeID = settings.int("node.id")
        self.processRoles = try Self.parseProcessRoles(settings, source: source)
        self.metadataStore = try Self.parseMetadataStore(settings, roles: self.processRoles, source: source)
        self.controllerListenerNames = settings.list("controller.listener.names")
        var protocolMap = try Self.parseProtocolMap(settings.string("listener.security.protocol.map"), source: source)
        if !settings.isExplicit("listener.security.protocol.map") {
            // Kafka's KRaft rule: with the default map, a controller listener name is PLAINTEXT.
            for name in self.controllerListenerNames where protocolMap[name] == nil { protocolMap[name] = "PLAINTEXT" }
        }
        for name in self.controllerListenerNames where protocolMap[name] == nil {
            throw .invalidValue(
                self.controllerListenerNames.joined(separator: ","),
                for: "controller.listener.names",
                reason: "listener name \(name) is not in listener.security.protocol.map "
                    + "(\(protocolMap.keys.sorted().joined(separator: ", ")))",
                source: source("controller.listener.names")
            )
        }
        let allListeners = try Self.parseListeners(
            settings.string("listeners"),
            name: "listeners",
            protocols: protocolMap,
            source: source
        )
        guard !allListeners.isEmpty else {
            throw .invalidValue(
                "",
                for: "listeners",
                reason: "at least one listener is needed",
                source: source("listeners")
            )
        }
        for listener in allListeners where listener.securityProtocol != "PLAINTEXT" {
            throw .invalidValue(
                settings.string("listeners"),
                for: "listeners",
                reason: "listener \(listener.name) uses \(listener.securityProtocol); LogBroker serves only "
                    + "PLAINTEXT listeners so far",
                source: source("listeners")
            )
        }
        let controllerNames = Set(self.controllerListenerNames)
        self.listeners = allListeners.filter { !controllerNames.contains($0.name) }
        self.controllerListeners = allListeners.filter { controllerNames.contains($0.name) }
        try Self.checkControllerListeners(
            settings,
            roles: self.processRoles,
            store: self.metadataStore.kind,
            controllerListeners: self.controllerListeners,
            clientListeners: self.listeners,
            source: source
        )
        let advertised = settings.string("advertised.listeners")
        self.advertisedListeners =
            advertised.isEmpty
            ? self.listeners
            : try Self.parseListeners(advertised, name: "advertised.listeners", protocols: protocolMap, source: source)
        if self.processRoles.contains(.broker),
            let listener = self.advertisedListeners.first(where: { controllerNames.contains($0.name) })
        {
            // Kafka's rule: clients follow advertised listeners, and they never talk to a controller.
            throw .invalidValue(
                advertised,
                for: "advertised.listeners",
                reason: "\(listener.name) is a controller listener (controller.listener.names); Kafka clients are "
                    + "not served there",
                source: source("advertised.listeners")
            )
        }
        self.brokerHeartbeatIntervalMs = settings.int("broker.heartbeat.interval.ms")
        self.brokerSessionTimeoutMs = settings.int("broker.session.timeout.ms")
        self.uncleanLeaderElectionEnable = settings.bool("unclean.leader.election.enable")
        guard self.brokerHeartbeatIntervalMs < self.brokerSessionTimeoutMs else {
            throw .invalidValue(
                String(self.brokerHeartbeatIntervalMs),
                for: "broker.heartbeat.interval.ms",
                reason: "the heartbeat interval must be below broker.session.timeout.ms "
                    + "(\(self.brokerSessionTimeoutMs)), or a live broker is fenced between two heartbeats",
                source: source("broker.heartbeat.interval.ms")
            )
        }
        let rack = settings.string("broker.rack")
        self.brokerRack = rack.isEmpty ? nil : rack
        let logDirs = settings.list("log.dirs").filter { !$0.isEmpty }
        self.logDirs = logDirs.isEmpty ? [settings.string("log.dir")] : logDirs
        self.numPartitions = settings.int("num.partitions")
        self.defaultReplicationFactor = Int16(settings.int("default.replication.factor"))
        self.autoCreateTopicsEnable = settings.bool("auto.create.topics.enable")
        self.socketRequestMaxBytes = settings.int("socket.request.max.bytes")
        self.maxIncrementalFetchSessionCacheSlots = settings.int("max.incremental.fetch.session.cache.slots")
        self.connections = try Self.parseConnectionLimits(settings, listeners: allListeners, source: source)
        self.queuedMaxRequestBytes = settings.long("queued.max.request.bytes")
        self.socketRequestReadTimeoutMs = settings.long("socket.request.read.timeout.ms")

        var groups = GroupCoordinator.Configuration()
        groups.minSessionTimeoutMs = settings.int("group.min.session.timeout.ms")
        groups.maxSessionTimeoutMs = settings.int("group.max.session.timeout.ms")
        groups.initialRebalanceDelayMs = settings.int("group.initial.rebalance.delay.ms")
        groups.maxGroupSize = Int(settings.int("group.max.size"))
        groups.maxMetadataBytes = Int(settings.int("offset.metadata.max.bytes"))
        groups.offsetsRetentionMs = Int64(settings.int("offsets.retention.minutes")) * 60_000
        groups.offsetsRetentionCheckIntervalMs = settings.long("offsets.retention.check.interval.ms")
        self.groupCoordinator = groups
        var cleaner = LogCleaner.Configuration()
        cleaner.enabled = settings.bool("log.cleaner.enable")
        cleaner.threads = Int(settings.int("log.cleaner.threads"))
        cleaner.dedupeBufferBytes = Int(settings.long("log.cleaner.dedupe.buffer.size"))
        cleaner.backoffMs = settings.long("log.cleaner.backoff.ms")
        self.log = LogSchedule(
            retentionCheckIntervalMs: settings.long("log.retention.check.interval.ms"),
            flushIntervalMessages: settings.long("log.flush.interval.messages"),
            flushIntervalMs: settings.long("log.flush.interval.ms"),
            offsetCheckpointIntervalMs: Int64(settings.int("log.flush.offset.checkpoint.interval.ms")),
            startOffsetCheckpointIntervalMs: Int64(settings.int("log.flush.start.offset.checkpoint.interval.ms")),
            cleaner: cleaner
        )
        self.replicaFetchers = ReplicaFetcherConfiguration(
            brokerID: self.nodeID,
            fetchersPerLeader: Int(settings.int("num.replica.fetchers")),
            fetchMaxBytes: settings.int("replica.fetch.max.bytes"),
            fetchResponseMaxBytes: settings.int("replica.fetch.response.max.bytes"),
            fetchWaitMaxMs: settings.int("replica.fetch.wait.max.ms"),
            fetchMinBytes: settings.int("replica.fetch.min.bytes"),
            fetchBackoffMs: Int64(settings.int("replica.fetch.backoff.ms")),
            socketTimeoutMs: Int64(settings.int("replica.socket.timeout.ms"))
        )
        // Kafka's rule: a socket timeout below the fetch wait would drop every long-polled fetch.
        guard self.replicaFetchers.socketTimeoutMs >= Int64(self.replicaFetchers.fetchWaitMaxMs) else {
            throw .invalidValue(
                String(self.replicaFetchers.socketTimeoutMs),
                for: "replica.socket.timeout.ms",
                reason: "must be at least replica.fetch.wait.max.ms (\(self.replicaFetchers.fetchWaitMaxMs))",
                source: source("replica.socket.timeout.ms")
            )
        }
    }

    /// `process.roles`: broker, controller or both, each once (Kafka refuses duplicates and, in KRaft, none).
    private static func parseProcessRoles(
        _ settings: Settings,
        source: (String) -> String?
    ) throws(LogBrokerServerError) -> Set<ProcessRole> {
        let names = settings.list("process.roles")
        let roles = Set(names.compactMap(ProcessRole.init(rawValue:)))  // the table's validator refused others
        guard !roles.isEmpty, roles.count == names.count else {
            throw .invalidValue(
                names.joined(separator: ","),
                for: "process.roles",
                reason: names.isEmpty
                    ? "a process needs the broker role, the controller role, or both"
                    : "each role may appear once",
                source: source("process.roles")
            )
        }
        return roles
    }

    /// `metadata.store`, `metadata.etcd.endpoints` and `metadata.etcd.prefix`, with what each store allows:
    /// the local store is a file of one process, so it runs only a process with both roles; etcd needs endpoints.
    private static func parseMetadataStore(
        _ settings: Settings,
        roles: Set<ProcessRole>,
        source: (String) -> String?
    ) throws(LogBrokerServerError) -> MetadataStoreSettings {
        let kind = MetadataStoreKind(rawValue: settings.string("metadata.store")) ?? .local  // validated by the table
        if kind == .local, roles != [.broker, .controller] {
            throw .invalidValue(
                settings.list("process.roles").joined(separator: ","),
                for: "process.roles",
                reason: "with metadata.store=local (the default) a process must have both roles, broker,controller: "
                    + "a local metadata store cannot be shared by processes; set metadata.store=etcd",
                source: source("process.roles")
            )
        }
        let endpointsText = settings.list("metadata.etcd.endpoints")
        var endpoints: [EtcdEndpoint] = []
        for item in endpointsText {
            guard let endpoint = Self.parseEtcdEndpoint(item) else {
                throw .invalidValue(
                    endpointsText.joined(separator: ","),
                    for: "metadata.etcd.endpoints",
                    reason: "\(item) is not of the form http://host:port",
                    source: source("metadata.etcd.endpoints")
                )
            }
            endpoints.append(endpoint)
        }
        if kind == .etcd, endpoints.isEmpty {
            throw .invalidValue(
                "",
                for: "metadata.etcd.endpoints",
                reason: "metadata.store=etcd needs the etcd endpoints, comma-separated http://host:port",
                source: source("metadata.etcd.endpoints") ?? source("metadata.store")
            )
        }
        let prefix = settings.string("metadata.etcd.prefix")
        guard prefix.hasPrefix("/"), prefix.count > 1, !prefix.hasSuffix("/") else {
            throw .invalidValue(
                prefix,
                for: "metadata.etcd.prefix",
                reason: "the prefix must start with / and not end with one (as /logbroker), as a ZooKeeper chroot",
                source: source("metadata.etcd.prefix")
            )
        }
        return MetadataStoreSettings(kind: kind, etcdEndpoints: endpoints, etcdPrefix: prefix)
    }

    /// `http://host:port` (an IPv6 host in brackets, an optional final `/`), or nil for anything else.
    static func parseEtcdEndpoint(_ text: String) -> EtcdEndpoint? {
        let scheme = "http://"
        guard text.hasPrefix(scheme) else { return nil }
        var address = text.dropFirst(scheme.count)
        if address.hasSuffix("/") { address = address.dropLast() }
        guard let colon = address.lastIndex(of: ":"),
            let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port)
        else { return nil }
        var host = address[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") {
            host = host.dropFirst().dropLast()
        } else if host.contains(":") {
            return nil  // an IPv6 address needs its brackets
        }
        guard !host.isEmpty, !host.contains(where: { "/@?#[] ".contains($0) }) else { return nil }
        return EtcdEndpoint(host: String(host), port: port)
    }

    /// What `controller.listener.names` must name for the process's roles, as Kafka's KRaft checks: a controller
    /// serves on its controller listeners, so they are in `listeners`; a broker-only process connects to them, so
    /// it names them and does not listen on them; a broker keeps a listener for clients. The standalone process
    /// (both roles on the local store) runs its controller in-process and needs no controller listener.
    private static func checkControllerListeners(
        _ settings: Settings,
        roles: Set<ProcessRole>,
        store: MetadataStoreKind,
        controllerListeners: [Listener],
        clientListeners: [Listener],
        source: (String) -> String?
    ) throws(LogBrokerServerError) {
        let names = settings.list("controller.listener.names")
        func refuse(_ reason: String) -> LogBrokerServerError {
            .invalidValue(
                names.joined(separator: ","),
                for: "controller.listener.names",
                reason: reason,
                source: source("controller.listener.names")
            )
        }
        let bound = Set(controllerListeners.map(\.name))
        if roles.contains(.controller) {
            if names.isEmpty, store != .local {
                throw refuse(
                    "a controller in a cluster (metadata.store=\(store.rawValue)) needs a controller listener: name "
                        + "it here and give it a CONTROLLER://host:port entry in listeners"
                )
            }
            if let missing = names.first(where: { !bound.contains($0) }) {
                throw refuse(
                    "listener name \(missing) is not in listeners (\(settings.string("listeners"))); a controller "
                        + "listens on its controller listeners"
                )
            }
        } else {
            if names.isEmpty {
                throw refuse("a broker-only process needs the name of the controller listener it connects to")
            }
            if let listener = controllerListeners.first {
                throw refuse(
                    "\(listener.name) is in listeners; a broker-only process connects to the controller listener "
                        + "and does not listen on it"
                )
            }
        }
        if roles.contains(.broker), clientListeners.isEmpty {
            throw .invalidValue(
                settings.string("listeners"),
                for: "listeners",
                reason: "a broker needs a listener for Kafka clients, and every listener is a controller listener "
                    + "(controller.listener.names)",
                source: source("listeners")
            )
        }
        if roles == [.controller], let listener = clientListeners.first {
            throw .invalidValue(
                settings.string("listeners"),
                for: "listeners",
                reason: "with process.roles=controller, listeners holds only controller listeners "
                    + "(controller.listener.names); \(listener.name) is not one",
                source: source("listeners")
            )
        }
    }

    /// The listener name of a `listener.name.NAME.max.connections` key, or nil for any other key.
    static func listenerMaxConnectionsName(_ key: String) -> String? {
        let prefix = "listener.name.", suffix = ".max.connections"
        guard key.hasPrefix(prefix), key.hasSuffix(suffix), key.count > prefix.count + suffix.count else { return nil }
        let name = key.dropFirst(prefix.count).dropLast(suffix.count)
        return name.contains(".") ? nil : String(name)
    }

    /// `max.connections`, its per-listener form, `max.connections.per.ip` and its overrides, and
    /// `connections.max.idle.ms`, checked as Kafka does (a per-IP limit of 0 needs overrides).
    private static func parseConnectionLimits(
        _ settings: Settings,
        listeners: [Listener],
        source: (String) -> String?
    ) throws(LogBrokerServerError) -> ConnectionLimits {
        var perListener: [String: Int] = [:]
        for (key, value) in settings.unknown {
            guard let name = Self.listenerMaxConnectionsName(key) else { continue }
            // Kafka's per-listener prefixes use the listener name in lower case; either case is taken here.
            guard let listener = listeners.first(where: { $0.name.lowercased() == name.lowercased() }) else {
                throw .invalidValue(value, for: key, reason: "no listener is named \(name)", source: source(key))
            }
            guard let limit = Int32(value.trimmingCharacters(in: " \t")), limit >= 0 else {
                throw .invalidValue(value, for: key, reason: "expected a number from 0 up", source: source(key))
            }
            perListener[listener.name] = Int(limit)
        }
        let overridesText = settings.string("max.connections.per.ip.overrides")
        var overrides: [String: Int] = [:]
        let entries = overridesText.split(separator: ",").map { $0.trimmingCharacters(in: " \t") }
        for entry in entries where !entry.isEmpty {
            // The last colon splits, so IPv6 addresses work (Kafka's parseCsvMap does the same).
            guard let colon = entry.lastIndex(of: ":"),
                let count = Int32(entry[entry.index(after: colon)...].trimmingCharacters(in: " \t")), count >= 0
            else {
                throw .invalidValue(
                    overridesText,
                    for: "max.connections.per.ip.overrides",
                    reason: "\(entry) is not host:count",
                    source: source("max.connections.per.ip.overrides")
                )
            }
            var host = String(entry[..<colon]).trimmingCharacters(in: " \t")
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            // Host names are resolved once, at start, as Kafka's InetAddress.getByName does.
            guard let address = try? SocketAddress.makeAddressResolvingHost(host, port: 0), let ip = address.ipAddress
            else {
                throw .invalidValue(
                    overridesText,
                    for: "max.connections.per.ip.overrides",
                    reason: "\(host) is not an IP address or a host name that resolves",
                    source: source("max.connections.per.ip.overrides")
                )
            }
            overrides[ip] = Int(count)
        }
        let perIP = Int(settings.int("max.connections.per.ip"))
        if perIP == 0, overrides.isEmpty {
            throw .invalidValue(
                "0",
                for: "max.connections.per.ip",
                reason: "max.connections.per.ip can be set to zero only if max.connections.per.ip.overrides is set",
                source: source("max.connections.per.ip")
            )
        }
        let idle = settings.long("connections.max.idle.ms")
        return ConnectionLimits(
            maxConnections: Int(settings.int("max.connections")),
            perListener: perListener,
            maxConnectionsPerIP: perIP,
            perIPOverrides: overrides,
            idleTimeoutMs: idle < 0 ? nil : idle
        )
    }

    private static func parseProtocolMap(
        _ text: String,
        source: (String) -> String?
    ) throws(LogBrokerServerError) -> [String: String] {
        var map: [String: String] = [:]
        for entry in text.split(separator: ",") {
            let parts = entry.split(separator: ":", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: " \t")
            }
            guard parts.count == 2, !parts[0].isEmpty, Self.securityProtocols.contains(parts[1]) else {
                throw .invalidValue(
                    text,
                    for: "listener.security.protocol.map",
                    reason:
                        "expected NAME:PROTOCOL pairs with PROTOCOL one of \(Self.securityProtocols.joined(separator: ", "))",
                    source: source("listener.security.protocol.map")
                )
            }
            map[parts[0]] = parts[1]
        }
        return map
    }

    /// Parses `NAME://host:port[,NAME://host:port…]` as Kafka's `listeners` (`[::1]` for IPv6, an empty host for
    /// every interface); names must be unique and mapped to a security protocol.
    static func parseListeners(
        _ text: String,
        name: String,
        protocols: [String: String],
        source: (String) -> String? = { _ in nil }
    ) throws(LogBrokerServerError) -> [Listener] {
        func refuse(_ reason: String) -> LogBrokerServerError {
            .invalidValue(text, for: name, reason: reason, source: source(name))
        }
        var listeners: [Listener] = []
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: " \t") }) where !item.isEmpty {
            guard let schemeEnd = item.firstRange(of: "://") else {
                throw refuse("\(item) is not of the form NAME://host:port")
            }
            let listenerName = String(item[..<schemeEnd.lowerBound])
            let address = item[schemeEnd.upperBound...]
            guard let colon = address.lastIndex(of: ":") else {
                throw refuse("\(item) has no port; expected NAME://host:port")
            }
            var host = String(address[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard let port = Int(address[address.index(after: colon)...]), (0...65535).contains(port) else {
                throw refuse("\(item) has no valid port (0 to 65535)")
            }
            guard let securityProtocol = protocols[listenerName] else {
                throw refuse(
                    "listener name \(listenerName) is not in listener.security.protocol.map "
                        + "(\(protocols.keys.sorted().joined(separator: ", ")))"
                )
            }
            guard !listeners.contains(where: { $0.name == listenerName }) else {
                throw refuse("listener name \(listenerName) appears twice")
            }
            listeners.append(Listener(name: listenerName, host: host, port: port, securityProtocol: securityProtocol))
        }
        return listeners
    }
}

extension StringProtocol {
    /// Without leading and trailing characters among `characters`.
    fileprivate func trimmingCharacters(in characters: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, characters.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, characters.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
