import KafkaWire
import Logging
import MetadataStore

/// The in-process controller of the standalone broker (`process.roles=broker,controller`): the only writer of the
/// cluster image, which it keeps in a `MetadataStore` under `cluster/id`, `brokers/<node id>` and
/// `topics/<name>`, each written with compare-and-set on the version it last read, so a concurrent writer (a second
/// controller on the same store, or an interleaved call here) can never be overwritten; on a conflict it re-reads.
///
/// `start` loads the image (or creates the cluster id), registers this broker with its endpoints, and re-elects
/// every partition it replicates, in one transaction: leader epochs are persisted, never go backwards, and grow on
/// every restart. Topic creation (auto-create; CreateTopics later) goes through `createTopic`.
///
/// In the local controller the only live broker is this one. Lease election, heartbeats and watches come with the
/// cluster issue, behind the same store protocol.
///
/// Thread safety: an actor. Leadership listeners are called on it and must return quickly.
public actor Controller {
    public typealias LeadershipListener = @Sendable (PartitionLeadership) async -> Void

    private let store: any MetadataStore
    private let nodeID: Int32
    private let logger: Logger
    private var current: ClusterImage?
    /// The `modRevision` of each key as last read or written.
    private var versions: [String: Int64] = [:]
    private var live: Set<Int32> = []
    private var listeners: [LeadershipListener] = []

    static let clusterIDKey = "cluster/id"
    static func brokerKey(_ id: Int32) -> String { "brokers/\(id)" }
    static func topicKey(_ name: String) -> String { "topics/\(name)" }

    public init(store: any MetadataStore, nodeID: Int32, logger: Logger) {
        self.store = store
        self.nodeID = nodeID
        self.logger = logger
    }

    /// The current image. - Throws: `notStarted` before `start`.
    public func image() throws(ClusterControlError) -> ClusterImage {
        guard let current = self.current else { throw .notStarted }
        return current
    }

    /// The brokers considered live (this one, once started).
    public var liveBrokers: Set<Int32> { self.live }

    /// Calls `listener` now for every partition this broker leads, then for every later election or new partition
    /// it wins (with the new leader epoch).
    public func addLeadershipListener(_ listener: @escaping LeadershipListener) async {
        self.listeners.append(listener)
        for leadership in self.current?.leaderships(of: self.nodeID) ?? [] { await listener(leadership) }
    }

    /// Loads the image, creates the cluster id on first start, registers `registration` and re-elects its
    /// partitions (bumping each leader epoch), all persisted before it returns.
    @discardableResult
    public func start(registration: BrokerRegistration) async throws(ClusterControlError) -> ClusterImage {
        precondition(registration.nodeID == self.nodeID, "registering another node")
        try await self.reload()
        if self.current == nil {
            let clusterID = Self.randomUUID().description
            let result = try await self.commit([
                MetadataWrite(key: Self.clusterIDKey, value: Array(clusterID.utf8), expectedVersion: 0)
            ])
            if case .conflict = result { try await self.reload() }
            if self.current == nil { try await self.reload() }
            self.logger.info("created cluster", metadata: ["cluster.id": "\(self.current?.clusterID ?? "?")"])
        }
        self.live.insert(self.nodeID)
        for _ in 0..<100 {
            let image = try self.image()
            let topics = image.reelecting(after: self.nodeID, live: self.live)
            var writes = [
                MetadataWrite(
                    key: Self.brokerKey(self.nodeID),
                    value: ImageCodec.encode(registration),
                    expectedVersion: self.versions[Self.brokerKey(self.nodeID)] ?? 0
                )
            ]
            writes += topics.map {
                MetadataWrite(
                    key: Self.topicKey($0.name),
                    value: ImageCodec.encode($0),
                    expectedVersion: self.versions[Self.topicKey($0.name)] ?? 0
                )
            }
            switch try await self.commit(writes) {
            case .committed(let revision):
                var next = image
                next.brokers[self.nodeID] = registration
                for topic in topics { next.topics[topic.name] = topic }
                next.revision = revision
                self.current = next
                for write in writes { self.versions[write.key] = revision }
                self.logger.info(
                    "registered broker and re-elected its partitions",
                    metadata: ["node.id": "\(self.nodeID)", "topics": "\(topics.count)", "revision": "\(revision)"]
                )
                await self.notify(next.leaderships(of: self.nodeID))
                return next
            case .conflict:
                try await self.reload()
            }
        }
        throw .store(.invalidWrite("registration kept conflicting"))
    }

    /// Creates `name` with `partitions` partitions of `replicationFactor` replicas on the live brokers, persisted
    /// before it returns. Concurrent creations of one name give one topic: the others get `topicAlreadyExists`.
    /// - Throws: `invalidTopic`, `topicAlreadyExists`, `invalidPartitions`, `invalidReplicationFactor`, `store`.
    public func createTopic(
        _ name: String,
        partitions: Int32,
        replicationFactor: Int16
    ) async throws(ClusterControlError) -> TopicImage {
        let image = try self.image()
        let topic = try image.creatingTopic(
            name,
            id: Self.randomUUID(),
            partitions: partitions,
            replicationFactor: replicationFactor,
            live: self.live
        )
        let key = Self.topicKey(name)
        switch try await self.commit([MetadataWrite(key: key, value: ImageCodec.encode(topic), expectedVersion: 0)]) {
        case .committed(let revision):
            self.versions[key] = revision
            if var next = self.current {
                next.topics[name] = topic
                next.revision = max(next.revision, revision)
                self.current = next
            }
            self.logger.info(
                "created topic",
                metadata: ["topic": "\(name)", "id": "\(topic.id)", "partitions": "\(partitions)"]
            )
            await self.notify(
                ClusterImage(clusterID: image.clusterID, topics: [name: topic]).leaderships(of: self.nodeID)
            )
            return topic
        case .conflict(_, let existing):
            if let existing {
                let topic = try ImageCodec.decodeTopic(existing.value, key: key)
                self.current?.topics[name] = topic
                self.versions[key] = existing.modRevision
            }
            throw .topicAlreadyExists(name)
        }
    }

    /// Awaits every listener, so a topic's partitions are ready on this broker before `createTopic` returns (and a
    /// Metadata answer naming the leader is true when a client acts on it).
    private func notify(_ leaderships: [PartitionLeadership]) async {
        for leadership in leaderships {
            for listener in self.listeners { await listener(leadership) }
        }
    }

    private func commit(_ writes: [MetadataWrite]) async throws(ClusterControlError) -> MetadataCommit {
        do {
            return try await self.store.commit(writes)
        } catch {
            throw .store(error)
        }
    }

    /// Reads the whole image from the store; `current` stays nil while there is no cluster id.
    private func reload() async throws(ClusterControlError) {
        let range: MetadataRange
        do {
            range = try await self.store.range(prefix: "")
        } catch {
            throw .store(error)
        }
        var image: ClusterImage?
        var brokers: [Int32: BrokerRegistration] = [:]
        var topics: [String: TopicImage] = [:]
        var versions: [String: Int64] = [:]
        for entry in range.entries {
            versions[entry.key] = entry.modRevision
            if entry.key == Self.clusterIDKey {
                image = ClusterImage(clusterID: String(decoding: entry.value, as: UTF8.self))
            } else if entry.key.hasPrefix("brokers/") {
                let broker = try ImageCodec.decodeBroker(entry.value, key: entry.key)
                brokers[broker.nodeID] = broker
            } else if entry.key.hasPrefix("topics/") {
                let topic = try ImageCodec.decodeTopic(entry.value, key: entry.key)
                topics[topic.name] = topic
            }
        }
        image?.brokers = brokers
        image?.topics = topics
        image?.revision = range.revision
        self.current = image
        self.versions = versions
    }

    /// A random version-4 UUID (topic ids and the cluster id), never the zero or reserved ids.
    static func randomUUID() -> KafkaUUID {
        var generator = SystemRandomNumberGenerator()
        let most = (generator.next() as UInt64) & ~0xF000 | 0x4000
        let least = (generator.next() as UInt64) & ~(0xC000_0000_0000_0000 as UInt64) | 0x8000_0000_0000_0000
        return KafkaUUID(mostSignificantBits: most, leastSignificantBits: least)
    }
}
