import KafkaProperties

/// The per-log settings, with Kafka's topic-level names and defaults (`LogConfig.java`), declared as a
/// `SettingsTable` so topic configs are parsed and refused as Kafka does.
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
    /// `cleanup.policy` includes `delete`: retention by time and size applies (compaction comes later).
    public var deletesOldSegments: Bool

    public static let table = SettingsTable([
        SettingDefinition("segment.bytes", .int, default: .int(1 << 30), validator: .atLeast(14)),
        SettingDefinition("segment.ms", .long, default: .long(604_800_000), validator: .atLeast(1)),
        SettingDefinition("segment.index.bytes", .int, default: .int(10 << 20), validator: .atLeast(4)),
        SettingDefinition("index.interval.bytes", .int, default: .int(4096), validator: .atLeast(0)),
        SettingDefinition("retention.ms", .long, default: .long(604_800_000), validator: .atLeast(-1)),
        SettingDefinition("retention.bytes", .long, default: .long(-1)),
        SettingDefinition(
            "message.timestamp.type", .string, default: .string("CreateTime"),
            validator: .oneOf(["CreateTime", "LogAppendTime"])
        ),
        SettingDefinition("file.delete.delay.ms", .long, default: .long(60_000), validator: .atLeast(0)),
        SettingDefinition("flush.messages", .long, default: .long(Int64.max), validator: .atLeast(1)),
        SettingDefinition("flush.ms", .long, default: .long(Int64.max), validator: .atLeast(0)),
        SettingDefinition("max.message.bytes", .int, default: .int(1_048_588), validator: .atLeast(0)),
        SettingDefinition(
            "cleanup.policy", .list, default: .list(["delete"]), validator: .oneOf(["compact", "delete"])
        ),
        SettingDefinition("preallocate", .boolean, default: .boolean(false)),
    ])

    /// Kafka's defaults.
    public init() {
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
    }
}
