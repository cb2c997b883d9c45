import KafkaWire
import Logging
import MetadataStore

/// A node's view of the control plane, as the broker's handlers use it: an `ImageFollower` (every node) and, on a
/// process with the controller role, an `ActiveController` campaigning for the election key. Reads come from the
/// follower's image; changes go to the local controller while it is the active one (a standby answers
/// `notController`; forwarding to the active controller comes with the controller listener).
///
/// The standalone broker (`process.roles=broker,controller` on the local store) runs the same code paths as a
/// cluster, with one node: its follower watches the store's in-process watch and its controller wins the election
/// through the store's in-process lease.
///
/// `start` reads the image (creating the cluster id on first start), registers this broker and re-elects every
/// partition it replicates: leader epochs are persisted, never go backwards, and grow on every restart. Every
/// change returns once the listeners have heard it.
///
/// Thread safety: an actor. Listeners hear each committed transaction's changes as one batch, in revision order,
/// one at a time, and must return quickly.
public actor Controller {
    public typealias Listener = @Sendable (MetadataChange) async -> Void
    /// Hears each commit's changes as one list, in order, so it can apply many in one go (the elections of a start).
    public typealias BatchListener = ImageFollower.BatchListener

    public nonisolated let follower: ImageFollower
    /// This process's controller role; nil on a broker-only process.
    public nonisolated let activeController: ActiveController?
    private let nodeID: Int32
    private let logger: Logger
    private var started = false

    /// - Parameters:
    ///   - isController: whether this process has the controller role (campaigns for the election key).
    ///   - leaseTTLSeconds: the election key's lease TTL.
    ///   - brokerSessionTimeout: how long the active controller waits for a broker's heartbeat before fencing it.
    ///   - uncleanLeaderElection: the static `unclean.leader.election.enable` of this process, for the elections
    ///     of its controller role.
    public init(
        store: any MetadataStore,
        nodeID: Int32,
        logger: Logger,
        isController: Bool = true,
        leaseTTLSeconds: Int64 = ActiveController.defaultLeaseTTLSeconds,
        brokerSessionTimeout: Duration = ActiveController.defaultBrokerSessionTimeout,
        uncleanLeaderElection: Bool = false
    ) {
        let follower = ImageFollower(store: store, nodeID: nodeID, logger: logger)
        self.follower = follower
        self.activeController =
            isController
            ? ActiveController(
                store: store,
                follower: follower,
                nodeID: nodeID,
                leaseTTLSeconds: leaseTTLSeconds,
                brokerSessionTimeout: brokerSessionTimeout,
                uncleanLeaderElection: uncleanLeaderElection,
                logger: logger
            )
            : nil
        self.nodeID = nodeID
        self.logger = logger
    }

    /// The image this node has applied. - Throws: `notStarted` before `start`.
    public func image() async throws(ClusterControlError) -> ClusterImage {
        guard self.started, let image = await self.follower.image else { throw .notStarted }
        return image
    }

    /// The brokers considered live: those registered in the image (this one, once started; see
    /// `ActiveController.liveBrokers(in:)`).
    public var liveBrokers: Set<Int32> {
        get async { await self.follower.image.map(ActiveController.liveBrokers(in:)) ?? [] }
    }

    /// Calls `listener` now with the whole image as changes (broker configs, then each topic's configs, then the
    /// partitions this broker leads), then with every later change.
    public func addListener(_ listener: @escaping Listener) async {
        await self.follower.addListener(batches: { changes in
            for change in changes { await listener(change) }
        })
    }

    /// `addListener`, with each commit's changes (and the whole image now) given as one list.
    public func addListener(batches listener: @escaping BatchListener) async {
        await self.follower.addListener(batches: listener)
    }

    /// Reads the image, then, when this process's controller wins the election: creates the cluster id on first
    /// start and, given a `registration`, registers this process's broker in-process (unfenced, with no session:
    /// the standalone broker) and re-elects its partitions (bumping each leader epoch), all persisted and heard by
    /// the listeners (the whole image, as one batch) before it returns. In a cluster `registration` is nil: the
    /// broker registers with the active controller over its listener, wherever that runs.
    /// - Parameter controllerEndpoint: this process's CONTROLLER listener, named in the election key.
    @discardableResult
    public func start(
        registration: BrokerRegistration?,
        controllerEndpoint: BrokerEndpoint? = nil
    ) async throws(ClusterControlError) -> ClusterImage {
        precondition(registration == nil || registration?.nodeID == self.nodeID, "registering another node")
        try await self.follower.start(holdingChanges: true)
        if let active = self.activeController {
            await active.start(endpoint: controllerEndpoint)
            await active.waitUntil { role in
                switch role {
                case .active, .standby, .stopped: return true
                case .campaigning: return false
                }
            }
            if await active.epoch != nil {
                try await self.createClusterIfNeeded(on: active)
                if let registration {
                    let (topics, revision) = try await active.registerBroker(registration)
                    self.logger.info(
                        "registered broker and re-elected its partitions",
                        metadata: ["node.id": "\(self.nodeID)", "topics": "\(topics)", "revision": "\(revision)"]
                    )
                }
            } else {
                let leader = await self.follower.followed.controller
                self.logger.info(
                    "Another controller is active; this one stands by",
                    metadata: ["controller": "\(leader.map { "\($0.nodeID)" } ?? "?")"]
                )
            }
        }
        // A node whose controller is not the active one waits for the cluster the active one creates.
        await self.follower.waitUntil { $0.hasCluster }
        await self.follower.releaseChanges()
        self.started = true
        return try await self.image()
    }

    /// Resigns the controller role (a standby takes over at once) and stops following the store.
    public func stop() async {
        await self.activeController?.stop()
        await self.follower.stop()
    }

    private func createClusterIfNeeded(on active: ActiveController) async throws(ClusterControlError) {
        guard !(await self.follower.followed.hasCluster) else { return }
        let id = Self.randomUUID().description
        let (created, _) = try await active.perform { image, _ in ControllerDecisions.creatingCluster(image, id: id) }
        self.logger.info("created cluster", metadata: ["cluster.id": "\(created)"])
    }

    /// Creates `name` with `partitions` partitions of `replicationFactor` replicas on the live brokers (or on
    /// `assignment`) and `configs` as its dynamic configs, persisted and applied by the listeners before it returns.
    /// With `validateOnly` the checks run and nothing is written. Concurrent creations of one name give one topic:
    /// the others get `topicAlreadyExists`.
    /// - Throws: `invalidTopic`, `topicAlreadyExists`, `invalidPartitions`, `invalidReplicationFactor`,
    ///   `invalidReplicaAssignment`, `notController`, `store`.
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
        let topic = try await self.write { image, live throws(ClusterControlError) in
            try ControllerDecisions.creatingTopic(
                image,
                name,
                id: id,
                partitions: partitions,
                replicationFactor: replicationFactor,
                assignment: assignment,
                configs: configs,
                validateOnly: validateOnly,
                live: live
            )
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
        let topic = try await self.write { image, _ throws(ClusterControlError) in
            try ControllerDecisions.deletingTopic(image, named: name, id: id)
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
        try await self.write { image, live throws(ClusterControlError) in
            try ControllerDecisions.addingPartitions(
                image,
                to: name,
                count: count,
                assignment: assignment,
                validateOnly: validateOnly,
                live: live
            )
        }
    }

    /// Replaces the dynamic configs of topic `name` with what `change` makes of the current ones, and elects the
    /// topic's partitions without a leader where the new configs allow (`unclean.leader.election.enable`). `change`
    /// may run more than once (after a conflicting write it sees the newer set), so it must be a pure function.
    /// - Throws: `unknownTopic`, or what `change` throws.
    @discardableResult
    public func alterTopicConfigs(
        _ name: String,
        validateOnly: Bool = false,
        _ change: @escaping @Sendable ([String: String]) throws(ClusterControlError) -> [String: String]
    ) async throws(ClusterControlError) -> [String: String] {
        let policy = self.activeController?.uncleanPolicy
        return try await self.write { image, live throws(ClusterControlError) in
            try ControllerDecisions.alteringTopicConfigs(
                image,
                name,
                validateOnly: validateOnly,
                live: live,
                policy: policy,
                change
            )
        }
    }

    /// Replaces the dynamic configs of broker resource `resource` (a node id, or "" for the cluster default) with
    /// what `change` makes of the current ones; a pure function, as in `alterTopicConfigs`.
    @discardableResult
    public func alterBrokerConfigs(
        _ resource: String,
        validateOnly: Bool = false,
        _ change: @escaping @Sendable ([String: String]) throws(ClusterControlError) -> [String: String]
    ) async throws(ClusterControlError) -> [String: String] {
        let policy = self.activeController?.uncleanPolicy
        return try await self.write { image, live throws(ClusterControlError) in
            try ControllerDecisions.alteringBrokerConfigs(
                image,
                resource,
                validateOnly: validateOnly,
                live: live,
                policy: policy,
                change
            )
        }
    }

    /// Preferred leader election for `partitions` of `topic` (see `ClusterImage.electingPreferredLeaders`).
    public func electPreferredLeaders(
        of topic: String,
        partitions: [Int32]
    ) async throws(ClusterControlError) -> [(partition: Int32, error: ClusterControlError?)] {
        let outcomes = try await self.write { image, live throws(ClusterControlError) in
            try ControllerDecisions.electingPreferredLeaders(image, of: topic, partitions: partitions, live: live)
        }
        return outcomes.map { ($0.partition, $0.error) }
    }

    /// Leaders' ISR changes (Kafka's AlterPartition; see `ControllerDecisions.alteringPartitions`) through this
    /// process's controller while it is the active one, heard by the listeners before it returns. A broker whose
    /// process does not hold the active controller sends AlterPartition to the controller listener instead.
    /// - Returns: one outcome per change, in order: the refusal, or the partition as committed.
    /// - Throws: `notStarted`, `notController`, `store`.
    public func alterPartition(_ changes: [ISRChange]) async throws(ClusterControlError) -> [ISRChangeOutcome] {
        try await self.write { image, _ in ControllerDecisions.alteringPartitions(image, changes) }
    }

    /// Kafka's producer id block size (`ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
    public static let producerIDBlockSize = ControllerDecisions.producerIDBlockSize

    /// A block of `producerIDBlockSize` producer ids for this broker, recorded in the image before it returns, so
    /// no id of it is ever handed out again (Kafka's AllocateProducerIds).
    public func allocateProducerIDBlock() async throws(ClusterControlError) -> Range<Int64> {
        try await self.write { image, _ throws(ClusterControlError) in
            try ControllerDecisions.allocatingProducerIDBlock(image)
        }
    }

    // MARK: Committing

    /// Has the local active controller decide and commit, then waits until the listeners heard the change. When
    /// the local controller just lost its term (the process was paused past the lease TTL) and wins the election
    /// again, the change is tried once more.
    private func write<Answer: Sendable>(
        _ decide: @escaping @Sendable (ClusterImage, Set<Int32>) throws(ClusterControlError) -> ControllerResult<Answer>
    ) async throws(ClusterControlError) -> Answer {
        guard self.started else { throw .notStarted }
        guard let active = self.activeController else {
            throw .notController(activeNodeID: await self.follower.followed.controller?.nodeID)
        }
        var retried = false
        while true {
            do {
                let (answer, revision) = try await active.perform(decide)
                await self.follower.waitUntilPublished(revision)
                return answer
            } catch let error where error.kafkaErrorCode == .notController && !retried {
                retried = true
                guard case .campaigning = await active.role else { throw error }
                await active.waitUntil(timeout: .seconds(active.leaseTTLSeconds)) { role in
                    if case .campaigning = role { return false }
                    return true
                }
                guard await active.epoch != nil else { throw error }
            }
        }
    }

    /// What a follower of `node` must apply to go from `image` to `next` (see `MetadataChange.changes`).
    static func changes(from image: ClusterImage, to next: ClusterImage, node: Int32) -> [MetadataChange] {
        MetadataChange.changes(from: image, to: next, node: node)
    }

    /// A random version-4 UUID (topic ids and the cluster id), never the zero or reserved ids.
    static func randomUUID() -> KafkaUUID {
        var generator = SystemRandomNumberGenerator()
        let most = (generator.next() as UInt64) & ~0xF000 | 0x4000
        let least = (generator.next() as UInt64) & ~(0xC000_0000_0000_0000 as UInt64) | 0x8000_0000_0000_0000
        return KafkaUUID(mostSignificantBits: most, leastSignificantBits: least)
    }
}
