import KafkaWire
import Logging
import MetadataStore

/// What a broker following the controller is told, in the order it must apply it: deleted topics first (a new topic
/// of the same name must not lose its logs to the old one's deletion), then broker configs, then each topic's
/// configs before its partitions' leaderships (a new log opens with the topic's config).
public enum MetadataChange: Hashable, Sendable {
    /// The dynamic config set of a broker resource ("" is the cluster-wide default) replaced.
    case brokerConfigs(resource: String, configs: [String: String])
    /// A topic's dynamic configs, on creation and on every change.
    case topicConfigs(topic: String, configs: [String: String])
    /// This broker now leads the partition at a new leader epoch.
    case leadership(PartitionLeadership)
    /// The topic left the image: its logs go.
    case topicDeleted(TopicImage)
}

/// The in-process controller of the standalone broker (`process.roles=broker,controller`): the only writer of the
/// cluster image, which it keeps in a `MetadataStore` under `cluster/id`, `brokers/<node id>`, `topics/<name>`,
/// `configs/broker/<resource>` and `producer-ids`, each written with compare-and-set on the version it last read, so a concurrent
/// writer (a second controller on the same store, or an interleaved call here while an earlier one awaits the
/// store) can never be overwritten: on a conflict it re-reads the image and computes the change again.
///
/// `start` loads the image (or creates the cluster id), registers this broker with its endpoints, and re-elects
/// every partition it replicates, in one transaction: leader epochs are persisted, never go backwards, and grow on
/// every restart. Admin changes (topics, partitions, configs, elections) go through the same path.
///
/// In the local controller the only live broker is this one. Lease election, heartbeats and watches come with the
/// cluster issue, behind the same store protocol.
///
/// Thread safety: an actor. Listeners are called on it, in commit order, and must return quickly.
public actor Controller {
    public typealias Listener = @Sendable (MetadataChange) async -> Void
    /// Hears each commit's changes as one list, in order, so it can apply many in one go (the elections of a start).
    public typealias BatchListener = @Sendable ([MetadataChange]) async -> Void

    private let store: any MetadataStore
    private let nodeID: Int32
    private let logger: Logger
    private var current: ClusterImage?
    /// The `modRevision` of each key as last read or written.
    private var versions: [String: Int64] = [:]
    private var live: Set<Int32> = []
    private var listeners: [BatchListener] = []

    static let clusterIDKey = "cluster/id"
    static func brokerKey(_ id: Int32) -> String { "brokers/\(id)" }
    static func topicKey(_ name: String) -> String { "topics/\(name)" }
    static let producerIDsKey = "producer-ids"
    static let brokerConfigsPrefix = "configs/broker/"
    static func brokerConfigsKey(_ resource: String) -> String { Self.brokerConfigsPrefix + resource }

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

    /// Calls `listener` now with the whole image as changes (broker configs, then each topic's configs, then the
    /// partitions this broker leads), then with every later change.
    public func addListener(_ listener: @escaping Listener) async {
        await self.addListener(batches: { changes in
            for change in changes { await listener(change) }
        })
    }

    /// `addListener`, with each commit's changes (and the whole image now) given as one list.
    public func addListener(batches listener: @escaping BatchListener) async {
        self.listeners.append(listener)
        guard let image = self.current else { return }
        let changes = Self.changes(from: ClusterImage(clusterID: image.clusterID), to: image, node: self.nodeID)
        if !changes.isEmpty { await listener(changes) }
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
        let nodeID = self.nodeID
        let live = self.live
        let topics = try await self.apply(replayingAll: true) { image throws(ClusterControlError) in
            var next = image
            next.brokers[nodeID] = registration
            let topics = image.reelecting(after: nodeID, live: live)
            for topic in topics { next.topics[topic.name] = topic }
            return (next, topics.count)
        }
        let image = try self.image()
        self.logger.info(
            "registered broker and re-elected its partitions",
            metadata: ["node.id": "\(self.nodeID)", "topics": "\(topics)", "revision": "\(image.revision)"]
        )
        return image
    }

    /// Creates `name` with `partitions` partitions of `replicationFactor` replicas on the live brokers (or on
    /// `assignment`) and `configs` as its dynamic configs, persisted and applied by the listeners before it returns.
    /// With `validateOnly` the checks run and nothing is written. Concurrent creations of one name give one topic:
    /// the others get `topicAlreadyExists`.
    /// - Throws: `invalidTopic`, `topicAlreadyExists`, `invalidPartitions`, `invalidReplicationFactor`,
    ///   `invalidReplicaAssignment`, `store`.
    @discardableResult
    public func createTopic(
        _ name: String,
        partitions: Int32,
        replicationFactor: Int16,
        assignment: [[Int32]]? = nil,
        configs: [String: String] = [:],
        validateOnly: Bool = false
    ) async throws(ClusterControlError) -> TopicImage {
        let id = Self.randomUUID()
        let live = self.live
        let topic = try await self.apply { image throws(ClusterControlError) in
            let topic = try image.creatingTopic(
                name,
                id: id,
                partitions: partitions,
                replicationFactor: replicationFactor,
                assignment: assignment,
                configs: configs,
                live: live
            )
            var next = image
            if !validateOnly { next.topics[name] = topic }
            return (next, topic)
        }
        if !validateOnly {
            self.logger.info(
                "created topic",
                metadata: ["topic": "\(name)", "id": "\(topic.id)", "partitions": "\(topic.partitions.count)"]
            )
        }
        return topic
    }

    /// Deletes the topic named `name`, or with id `id` when `name` is nil; its logs go once the listeners hear of
    /// it, and the name is free at once.
    /// - Throws: `unknownTopic`, `unknownTopicID`, `invalidRequest` for an internal topic.
    @discardableResult
    public func deleteTopic(named name: String?, id: KafkaUUID? = nil) async throws(ClusterControlError) -> TopicImage {
        let topic = try await self.apply { image throws(ClusterControlError) in
            let found: TopicImage?
            if let name {
                found = image.topics[name]
                guard found != nil else { throw .unknownTopic(name) }
            } else {
                found = image.topics.values.first { $0.id == id }
                guard found != nil else { throw .unknownTopicID(id ?? .zero) }
            }
            guard let topic = found, !topic.isInternal else {
                throw .invalidRequest("'\(found?.name ?? "")' is a Kafka internal topic and cannot be deleted")
            }
            var next = image
            next.topics[topic.name] = nil
            return (next, topic)
        }
        self.logger.info("deleted topic", metadata: ["topic": "\(topic.name)", "id": "\(topic.id)"])
        return topic
    }

    /// Grows `name` to `count` partitions (see `ClusterImage.addingPartitions`); with `validateOnly` nothing is
    /// written.
    @discardableResult
    public func createPartitions(
        _ name: String,
        count: Int32,
        assignment: [[Int32]]?,
        validateOnly: Bool = false
    ) async throws(ClusterControlError) -> TopicImage {
        let live = self.live
        return try await self.apply { image throws(ClusterControlError) in
            let topic = try image.addingPartitions(to: name, count: count, assignment: assignment, live: live)
            var next = image
            if !validateOnly { next.topics[name] = topic }
            return (next, topic)
        }
    }

    /// Replaces the dynamic configs of topic `name` with what `change` makes of the current ones. `change` may run
    /// more than once (after a conflicting write it sees the newer set), so it must be a pure function.
    /// - Throws: `unknownTopic`, or what `change` throws.
    @discardableResult
    public func alterTopicConfigs(
        _ name: String,
        validateOnly: Bool = false,
        _ change: @Sendable ([String: String]) throws(ClusterControlError) -> [String: String]
    ) async throws(ClusterControlError) -> [String: String] {
        try await self.apply { image throws(ClusterControlError) in
            guard var topic = image.topics[name] else { throw .unknownTopic(name) }
            topic.configs = try change(topic.configs)
            var next = image
            if !validateOnly { next.topics[name] = topic }
            return (next, topic.configs)
        }
    }

    /// Replaces the dynamic configs of broker resource `resource` (a node id, or "" for the cluster default) with
    /// what `change` makes of the current ones; a pure function, as in `alterTopicConfigs`.
    @discardableResult
    public func alterBrokerConfigs(
        _ resource: String,
        validateOnly: Bool = false,
        _ change: @Sendable ([String: String]) throws(ClusterControlError) -> [String: String]
    ) async throws(ClusterControlError) -> [String: String] {
        try await self.apply { image throws(ClusterControlError) in
            let configs = try change(image.brokerConfigs[resource] ?? [:])
            var next = image
            if !validateOnly { next.brokerConfigs[resource] = configs.isEmpty ? nil : configs }
            return (next, configs)
        }
    }

    /// Preferred leader election for `partitions` of `topic` (see `ClusterImage.electingPreferredLeaders`).
    public func electPreferredLeaders(
        of topic: String,
        partitions: [Int32]
    ) async throws(ClusterControlError) -> [(partition: Int32, error: ClusterControlError?)] {
        let live = self.live
        return try await self.apply { image throws(ClusterControlError) in
            let (elected, results) = try image.electingPreferredLeaders(of: topic, partitions: partitions, live: live)
            var next = image
            next.topics[topic] = elected
            return (next, results)
        }
    }

    /// Kafka's producer id block size (`ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
    public static let producerIDBlockSize: Int64 = 1000

    /// A block of `producerIDBlockSize` producer ids for this broker, recorded in the image before it returns, so
    /// no id of it is ever handed out again (Kafka's AllocateProducerIds).
    public func allocateProducerIDBlock() async throws(ClusterControlError) -> Range<Int64> {
        try await self.apply { image throws(ClusterControlError) in
            var next = image
            let first = image.nextProducerID
            let (end, overflow) = first.addingReportingOverflow(Self.producerIDBlockSize)
            guard !overflow else { throw .invalidRequest("producer ids are exhausted") }
            next.nextProducerID = end
            return (next, first..<end)
        }
    }

    // MARK: Committing

    /// Computes the next image with `transition` from the current one and commits the keys that differ with
    /// compare-and-set; on a conflict re-reads the image and computes again. Once committed, the listeners hear
    /// of the changes before it returns; with `replayingAll` (at start, when the broker's logs were opened without
    /// the image) of the whole new image.
    private func apply<Result>(
        replayingAll: Bool = false,
        _ transition: (ClusterImage) throws(ClusterControlError) -> (ClusterImage, Result)
    ) async throws(ClusterControlError) -> Result {
        for _ in 0..<100 {
            let image = try self.image()
            let (next, result) = try transition(image)
            let base = replayingAll ? ClusterImage(clusterID: image.clusterID) : image
            let writes = self.writes(from: image, to: next)
            guard !writes.isEmpty else {
                await self.notify(Self.changes(from: base, to: next, node: self.nodeID))
                return result
            }
            switch try await self.commit(writes) {
            case .committed(let revision):
                // Another call may have committed while this one awaited the store: it touched other keys (or this
                // commit would have conflicted), so its changes are merged onto the newest image.
                var merged = self.current ?? next
                merged.brokers = Self.merging(merged.brokers, image.brokers, next.brokers)
                merged.topics = Self.merging(merged.topics, image.topics, next.topics)
                merged.brokerConfigs = Self.merging(merged.brokerConfigs, image.brokerConfigs, next.brokerConfigs)
                if next.nextProducerID != image.nextProducerID { merged.nextProducerID = next.nextProducerID }
                merged.revision = max(merged.revision, revision)
                self.current = merged
                for write in writes {
                    if write.value == nil { self.versions[write.key] = nil } else { self.versions[write.key] = revision }
                }
                await self.notify(Self.changes(from: base, to: next, node: self.nodeID))
                return result
            case .conflict:
                try await self.reload()
            }
        }
        throw .store(.invalidWrite("the metadata store kept conflicting"))
    }

    private func notify(_ changes: [MetadataChange]) async {
        guard !changes.isEmpty else { return }
        for listener in self.listeners { await listener(changes) }
    }

    /// `newest` with the entries `next` changed relative to `base` (added, replaced or removed).
    private static func merging<Key: Hashable, Value: Equatable>(
        _ newest: [Key: Value],
        _ base: [Key: Value],
        _ next: [Key: Value]
    ) -> [Key: Value] {
        var merged = newest
        for key in Set(base.keys).union(next.keys) where base[key] != next[key] { merged[key] = next[key] }
        return merged
    }

    /// The compare-and-set writes that turn `image` into `next`.
    private func writes(from image: ClusterImage, to next: ClusterImage) -> [MetadataWrite] {
        var writes: [MetadataWrite] = []
        func write(_ key: String, _ value: [UInt8]?) {
            writes.append(MetadataWrite(key: key, value: value, expectedVersion: self.versions[key] ?? 0))
        }
        for (id, broker) in next.brokers where image.brokers[id] != broker {
            write(Self.brokerKey(id), ImageCodec.encode(broker))
        }
        for name in Set(image.topics.keys).union(next.topics.keys).sorted() where image.topics[name] != next.topics[name] {
            write(Self.topicKey(name), next.topics[name].map(ImageCodec.encode))
        }
        for resource in Set(image.brokerConfigs.keys).union(next.brokerConfigs.keys).sorted()
        where image.brokerConfigs[resource] != next.brokerConfigs[resource] {
            write(Self.brokerConfigsKey(resource), next.brokerConfigs[resource].map { ImageCodec.encode(configs: $0) })
        }
        if next.nextProducerID != image.nextProducerID {
            write(Self.producerIDsKey, ImageCodec.encode(nextProducerID: next.nextProducerID))
        }
        return writes
    }

    /// What a follower of `node` must apply to go from `image` to `next`, in `MetadataChange`'s order.
    static func changes(from image: ClusterImage, to next: ClusterImage, node: Int32) -> [MetadataChange] {
        var changes: [MetadataChange] = []
        for topic in image.topics.values.sorted(by: { $0.name < $1.name }) where next.topics[topic.name]?.id != topic.id {
            changes.append(.topicDeleted(topic))
        }
        for resource in Set(image.brokerConfigs.keys).union(next.brokerConfigs.keys).sorted()
        where image.brokerConfigs[resource] != next.brokerConfigs[resource] {
            changes.append(.brokerConfigs(resource: resource, configs: next.brokerConfigs[resource] ?? [:]))
        }
        for topic in next.topics.values.sorted(by: { $0.name < $1.name }) {
            let old = image.topics[topic.name].flatMap { $0.id == topic.id ? $0 : nil }
            if old?.configs != topic.configs || old == nil {
                changes.append(.topicConfigs(topic: topic.name, configs: topic.configs))
            }
            for (index, state) in topic.partitions.enumerated() where state.leader == node {
                let before = old.flatMap { index < $0.partitions.count ? $0.partitions[index] : nil }
                guard before?.leader != node || before?.leaderEpoch != state.leaderEpoch else { continue }
                changes.append(
                    .leadership(
                        PartitionLeadership(
                            topic: topic.name,
                            topicID: topic.id,
                            partition: Int32(index),
                            leaderEpoch: state.leaderEpoch,
                            isr: state.isr
                        )
                    )
                )
            }
        }
        return changes
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
        var brokerConfigs: [String: [String: String]] = [:]
        var nextProducerID: Int64 = 0
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
            } else if entry.key == Self.producerIDsKey {
                nextProducerID = try ImageCodec.decodeNextProducerID(entry.value, key: entry.key)
            } else if entry.key.hasPrefix(Self.brokerConfigsPrefix) {
                let resource = String(entry.key.dropFirst(Self.brokerConfigsPrefix.count))
                brokerConfigs[resource] = try ImageCodec.decodeConfigs(entry.value, key: entry.key)
            }
        }
        image?.brokers = brokers
        image?.topics = topics
        image?.brokerConfigs = brokerConfigs
        image?.nextProducerID = nextProducerID
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
