import KafkaProperties

/// The per-log settings, with Kafka's topic-level names and defaults (`LogConfig.java`), declared as a
/// `SettingsTable` so topic configs are parsed and refused as Kafka does. The single definition of topic settings:
/// the broker's defaults for them come from `brokerSynonyms`. Some settings are validated and kept without an
/// effect yet: `compression.type` (only `producer`: batches are stored as produced, never recompressed),
/// and `leader.replication.throttled.replicas` / `follower.replication.throttled.replicas` (replication throttling
/// is not implemented). `unclean.leader.election.enable` is read by the controller's elections from the image, not
/// from here.
///
/// A value type; thread-safe.
public struct LogConfig: Hashable, Sendable {
    /// `segment.bytes`: a segment rolls before it would grow past this.
    public var segmentBytes: Int
    /// `segment.ms`: a segment rolls once its first batch is this much older than a new batch.
    public var segmentMs: Int64
    /// `segment.index.bytes`: the preallocated size of each index file.
    public var segmentIndexBytes: Int
    /// `index.interval.bytes`: bytes appended between two index entries.
    public var indexIntervalBytes: Int
    /// `retention.ms`: -1 keeps segments forever.
    public var retentionMs: Int64
    /// `retention.bytes`: -1 means no size limit.
    public var retentionBytes: Int64
    /// `message.timestamp.type`: `LogAppendTime` makes the broker stamp every batch with its clock.
    public var logAppendTime: Bool
    /// `file.delete.delay.ms`: how long a deleted segment stays as `.deleted` before it is unlinked.
    public var fileDeleteDelayMs: Int64
    /// `flush.messages`: fsync after this many messages (Long.MAX_VALUE: never; the OS flushes).
    public var flushMessages: Int64
    /// `flush.ms`: fsync when the last one is this old (Long.MAX_VALUE: never).
    public var flushMs: Int64
    /// `max.message.bytes`: the largest batch accepted.
    public var maxMessageBytes: Int
    /// `cleanup.policy` includes `delete`: retention by time and size applies.
    public var deletesOldSegments: Bool
    /// `cleanup.policy` includes `compact`: every record needs a key and the log cleaner keeps each key's latest
    /// value.
    public var compacts: Bool
    /// `message.timestamp.before.max.ms` (KIP-937): how far behind the broker's clock a CreateTime record may be.
    public var timestampBeforeMaxMs: Int64
    /// `message.timestamp.after.max.ms` (KIP-937): how far ahead of the broker's clock a CreateTime record may be.
    public var timestampAfterMaxMs: Int64
    /// `min.insync.replicas`: the fewest in-sync replicas an acks=all produce needs; kept, not enforced yet.
    public var minInSyncReplicas: Int32
    /// `delete.retention.ms`: how long the log cleaner keeps a tombstone after the segment holding it was cleaned.
    public var deleteRetentionMs: Int64
    /// `min.compaction.lag.ms`: a record younger than this is never compacted.
    public var minCompactionLagMs: Int64
    /// `max.compaction.lag.ms`: a log with records dirty for longer is cleaned whatever its dirty ratio.
    public var maxCompactionLagMs: Int64
    /// `min.cleanable.dirty.ratio`: the dirty share of a compacted log above which the cleaner picks it.
    public var minCleanableDirtyRatio: Double
    /// `unclean.leader.election.enable`: kept; the controller reads the topic's value from the image.
    public var uncleanLeaderElection: Bool
    /// `message.downconversion.enable`: whether consumers fetching with Fetch v0–3 get the records converted to
    /// message format v0/v1, or UNSUPPORTED_VERSION (Kafka 3.x; deprecated there, gone in 4.0 with the conversion).
    public var downConversionEnabled: Bool

    public static let table = SettingsTable([
        SettingDefinition("segment.bytes", .int, default: .int(1 << 30), validator: .atLeast(14)),
        SettingDefinition("segment.ms", .long, default: .long(604_800_000), validator: .atLeast(1)),
        SettingDefinition("segment.index.bytes", .int, default: .int(10 << 20), validator: .atLeast(4)),
        SettingDefinition("index.interval.bytes", .int, default: .int(4096), validator: .atLeast(0)),
        SettingDefinition("retention.ms", .long, default: .long(604_800_000), validator: .atLeast(-1)),
        SettingDefinition("retention.bytes", .long, default: .long(-1)),
        SettingDefinition(
            "message.timestamp.type",
            .string,
            default: .string("CreateTime"),
            validator: .oneOf(["CreateTime", "LogAppendTime"])
        ),
        SettingDefinition("file.delete.delay.ms", .long, default: .long(60_000), validator: .atLeast(0)),
        SettingDefinition("flush.messages", .long, default: .long(Int64.max), validator: .atLeast(1)),
        SettingDefinition("flush.ms", .long, default: .long(Int64.max), validator: .atLeast(0)),
        SettingDefinition("max.message.bytes", .int, default: .int(1_048_588), validator: .atLeast(0)),
        SettingDefinition(
            "cleanup.policy",
            .list,
            default: .list(["delete"]),
            validator: .oneOf(["compact", "delete"])
        ),
        SettingDefinition("preallocate", .boolean, default: .boolean(false)),
        SettingDefinition(
            "message.timestamp.before.max.ms",
            .long,
            default: .long(Int64.max),
            validator: .atLeast(0)
        ),
        SettingDefinition("message.timestamp.after.max.ms", .long, default: .long(3_600_000), validator: .atLeast(0)),
        SettingDefinition("min.insync.replicas", .int, default: .int(1), validator: .atLeast(1)),
        SettingDefinition("delete.retention.ms", .long, default: .long(86_400_000), validator: .atLeast(0)),
        SettingDefinition("min.compaction.lag.ms", .long, default: .long(0), validator: .atLeast(0)),
        SettingDefinition("max.compaction.lag.ms", .long, default: .long(Int64.max), validator: .atLeast(1)),
        SettingDefinition("min.cleanable.dirty.ratio", .double, default: .double(0.5), validator: .between(0, 1)),
        SettingDefinition("unclean.leader.election.enable", .boolean, default: .boolean(false)),
        SettingDefinition("message.downconversion.enable", .boolean, default: .boolean(true)),
        Self.compressionType,
        // Replication throttles: validated and kept, not applied (replication throttling is not implemented).
        SettingDefinition("leader.replication.throttled.replicas", .list, default: .list([]), validator: .replicaList),
        SettingDefinition(
            "follower.replication.throttled.replicas",
            .list,
            default: .list([]),
            validator: .replicaList
        ),
    ])

    /// `compression.type`, the same setting for topics and brokers: only `producer` until recompression exists.
    public static let compressionType = SettingDefinition(
        "compression.type",
        .string,
        default: .string("producer"),
        validator: .oneOf(["producer"]),
        documentation: "Only producer: batches are stored as the producer compressed them (no recompression yet)."
    )

    /// For each topic setting, the broker settings that supply its default, in Kafka's precedence
    /// (`ServerTopicConfigSynonyms`). `log.roll.hours`, `log.retention.hours` and `log.retention.minutes` are in
    /// other units than the topic setting: the caller converts.
    public static let brokerSynonyms: [String: [String]] = [
        "segment.bytes": ["log.segment.bytes"],
        "segment.ms": ["log.roll.ms", "log.roll.hours"],
        "segment.index.bytes": ["log.index.size.max.bytes"],
        "index.interval.bytes": ["log.index.interval.bytes"],
        "retention.ms": ["log.retention.ms", "log.retention.minutes", "log.retention.hours"],
        "retention.bytes": ["log.retention.bytes"],
        "message.timestamp.type": ["log.message.timestamp.type"],
        "message.timestamp.before.max.ms": ["log.message.timestamp.before.max.ms"],
        "message.timestamp.after.max.ms": ["log.message.timestamp.after.max.ms"],
        "file.delete.delay.ms": ["log.segment.delete.delay.ms"],
        "flush.messages": ["log.flush.interval.messages"],
        "flush.ms": ["log.flush.interval.ms"],
        "max.message.bytes": ["message.max.bytes"],
        "cleanup.policy": ["log.cleanup.policy"],
        "preallocate": ["log.preallocate"],
        "delete.retention.ms": ["log.cleaner.delete.retention.ms"],
        "min.compaction.lag.ms": ["log.cleaner.min.compaction.lag.ms"],
        "max.compaction.lag.ms": ["log.cleaner.max.compaction.lag.ms"],
        "min.cleanable.dirty.ratio": ["log.cleaner.min.cleanable.ratio"],
        "min.insync.replicas": ["min.insync.replicas"],
        "compression.type": ["compression.type"],
        "unclean.leader.election.enable": ["unclean.leader.election.enable"],
        "message.downconversion.enable": ["log.message.downconversion.enable"],
    ]

    /// Kafka's defaults.
    public init() {
        // Cannot throw: every default passes its own validator (the table's tests resolve empty properties).
        try! self.init(Properties())
    }

    /// The settings in `properties` (topic config overrides), defaults for the rest.
    /// - Throws: `StorageError.invalidConfig` naming the setting, for a bad value or an unknown key.
    public init(_ properties: Properties) throws(StorageError) {
        let settings: Settings
        do {
            settings = try Self.table.resolve(properties)
        } catch {
            throw .invalidConfig(error)
        }
        self.segmentBytes = Int(settings.int("segment.bytes"))
        self.segmentMs = settings.long("segment.ms")
        self.segmentIndexBytes = Int(settings.int("segment.index.bytes"))
        self.indexIntervalBytes = Int(settings.int("index.interval.bytes"))
        self.retentionMs = settings.long("retention.ms")
        self.retentionBytes = settings.long("retention.bytes")
        self.logAppendTime = settings.string("message.timestamp.type") == "LogAppendTime"
        self.fileDeleteDelayMs = settings.long("file.delete.delay.ms")
        self.flushMessages = settings.long("flush.messages")
        self.flushMs = settings.long("flush.ms")
        self.maxMessageBytes = Int(settings.int("max.message.bytes"))
        self.deletesOldSegments = settings.list("cleanup.policy").contains("delete")
        self.compacts = settings.list("cleanup.policy").contains("compact")
        self.timestampBeforeMaxMs = settings.long("message.timestamp.before.max.ms")
        self.timestampAfterMaxMs = settings.long("message.timestamp.after.max.ms")
        self.minInSyncReplicas = settings.int("min.insync.replicas")
        self.deleteRetentionMs = settings.long("delete.retention.ms")
        self.minCompactionLagMs = settings.long("min.compaction.lag.ms")
        self.maxCompactionLagMs = settings.long("max.compaction.lag.ms")
        self.minCleanableDirtyRatio = settings.double("min.cleanable.dirty.ratio")
        self.uncleanLeaderElection = settings.bool("unclean.leader.election.enable")
        self.downConversionEnabled = settings.bool("message.downconversion.enable")
    }
}

extension SettingValidator {
    /// Kafka's `ThrottledReplicaListValidator`: `*`, or `partition:broker` pairs of non-negative integers.
    static let replicaList = SettingValidator(description: "[partitionId]:[brokerId],... or *") { value in
        guard case .list(let items) = value else { return nil }
        let valid =
            items == ["*"]
            || items.allSatisfy { item in
                let parts = item.split(separator: ":", omittingEmptySubsequences: false)
                // Digits only, as Kafka's `[0-9]+`: `UInt32("+1")` alone would let a sign through.
                return parts.count == 2
                    && parts.allSatisfy {
                        !$0.isEmpty && $0.allSatisfy { ("0"..."9").contains($0) } && UInt32($0) != nil
                    }
            }
        return valid ? nil : "must be the literal '*' or a list of replicas in the form [partitionId]:[brokerId]"
    }
}
