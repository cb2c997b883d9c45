import KafkaNIO
import KafkaWire
import Logging
import MetadataStore
import NIOPosix

/// The controller role of a process (DESIGN.md "Cluster"): it campaigns for the lease-backed election key, and the
/// winner is the active controller, the only writer of the image. A standby waits for the key to go and campaigns
/// again.
///
/// - **Election.** A transaction `absent(controller)` → put(`controller`, node id and CONTROLLER endpoint, lease).
///   The winner's epoch is the key's `createRevision`. It keeps the lease alive every TTL/3; a lapsed lease, a keep-
///   alive failing for a whole TTL, or the key going from the image makes it step down and campaign again.
/// - **Fencing.** Every write is a transaction that also compares `createRevision(controller) == epoch`, so a
///   controller that lost its lease (paused, partitioned) can never write again: the compare fails, it steps down
///   and answers `notController`.
/// - **Decisions** are pure functions of the image (`ControllerDecisions`) computed on the follower's image at its
///   revision R, and committed with `modRevision` compares on the keys they write. On a conflict the controller
///   waits until its follower has applied the conflicting revision and decides again. Before its first decision a
///   new active controller waits until its follower has applied its own election: its state is the follower's image
///   (time proportional to the keys, not to the bytes of the logs).
/// - **Splitting.** A change over the store's limits (`maxOperationsPerTransaction`, one compare of which is the
///   election key's, and `maxTransactionBytes`) goes as several fenced transactions (`transactions(fencedBy:_:)`)
///   in `ImageKeys.writes`'s order, each valid on its own (one topic is one key, so a batch of topics splits
///   between keys). Should one of them conflict, the decision is made again on the newer image, which holds the
///   parts already committed.
///
/// Thread safety: an actor. Writes run one at a time, in call order (KRaft's controller event queue), and each
/// returns once the follower has applied it.
public actor ActiveController: ConditionWaiting {
    /// Where this controller stands.
    public enum Role: Hashable, Sendable {
        /// Not started, or stopped.
        case stopped
        /// Trying to win the election key.
        case campaigning
        /// Another controller holds the key (`leader`, when its value could be read); waiting for it to go.
        case standby(leader: ControllerLeader?)
        /// This controller holds the key since revision `epoch`.
        case active(epoch: Int64)
    }

    /// The lease TTL of the election key when none is given: how long a paused or partitioned controller keeps the
    /// role before a standby takes over.
    public static let defaultLeaseTTLSeconds: Int64 = 10
    private let store: any MetadataStore
    /// The image follower of this process: the state every decision is made on.
    public nonisolated let follower: ImageFollower
    public nonisolated let nodeID: Int32
    public nonisolated let leaseTTLSeconds: Int64
    let logger: Logger
    private var endpoint: BrokerEndpoint?
    public private(set) var role: Role = .stopped
    private var lease: MetadataLease?
    private var campaignTask: Task<Void, Never>?
    private var keepAliveTask: Task<Void, Never>?
    private var monitorTask: Task<Void, Never>?
    var waiters = ConditionWaiters<Role>()
    /// The sessions of brokers registered by RPC (`ActiveController+Brokers`), valid for term `sessionsEpoch`.
    var liveness: BrokerLiveness<ContinuousClock.Instant>
    var sessionsEpoch: Int64?
    /// Per broker in a controlled shutdown, the revision that moved its last leaderships away: it may stop once it
    /// has applied that revision (Kafka's controlled shutdown offset). Valid for term `sessionsEpoch`.
    var shutdownRevisions: [Int32: Int64] = [:]
    /// Where elections read `unclean.leader.election.enable`.
    public nonisolated let uncleanPolicy: UncleanElectionPolicy
    private var sessionTask: Task<Void, Never>?
    private var writing = false
    private var writeQueue: [CheckedContinuation<Void, Never>] = []

    /// - Parameters:
    ///   - follower: this process's image follower, started before this controller.
    ///   - leaseTTLSeconds: the election key's lease TTL.
    ///   - brokerSessionTimeout: a registered broker without a heartbeat this long is fenced
    ///     (`broker.session.timeout.ms`).
    ///   - uncleanLeaderElection: this process's static `unclean.leader.election.enable`, which elections fall back
    ///     to when neither the topic nor the dynamic broker configs set it.
    public init(
        store: any MetadataStore,
        follower: ImageFollower,
        nodeID: Int32,
        leaseTTLSeconds: Int64 = ActiveController.defaultLeaseTTLSeconds,
        brokerSessionTimeout: Duration = ActiveController.defaultBrokerSessionTimeout,
        uncleanLeaderElection: Bool = false,
        logger: Logger
    ) {
        self.uncleanPolicy = UncleanElectionPolicy(nodeID: nodeID, staticValue: uncleanLeaderElection)
        precondition(leaseTTLSeconds > 0, "a lease lasts at least a second")
        self.store = store
        self.follower = follower
        self.nodeID = nodeID
        self.leaseTTLSeconds = leaseTTLSeconds
        self.liveness = BrokerLiveness(sessionTimeout: brokerSessionTimeout)
        self.logger = logger
    }

    /// Kafka's `broker.session.timeout.ms` default.
    public static let defaultBrokerSessionTimeout = Duration.milliseconds(9000)

    /// The epoch while active, else nil.
    public var epoch: Int64? {
        if case .active(let epoch) = self.role { return epoch }
        return nil
    }

    /// Starts campaigning; the election key will name `endpoint` (this process's CONTROLLER listener, if any).
    public func start(endpoint: BrokerEndpoint? = nil) {
        guard case .stopped = self.role else { return }
        self.endpoint = endpoint
        self.setRole(.campaigning)
        self.campaignTask = Task { await self.campaign() }
    }

    /// Stops campaigning and resigns: an active controller revokes its lease, so its key goes at once and a
    /// standby takes over without waiting out the TTL.
    public func stop() async {
        self.campaignTask?.cancel()
        self.endTermTasks()
        self.campaignTask = nil
        let lease = self.lease
        self.lease = nil
        self.setRole(.stopped)
        self.waiters.cancelAll()
        if let lease { try? await self.store.revoke(lease) }
    }

    /// Waits until `condition` holds for the role, at most `timeout` when given.
    /// - Returns: false when cancelled or out of time first.
    @discardableResult
    public func waitUntil(timeout: Duration? = nil, _ condition: @escaping @Sendable (Role) -> Bool) async -> Bool {
        if condition(self.role) { return true }
        return await self.suspend(timeout: timeout, until: condition)
    }

    /// Waits until this controller is active, at most `timeout` when given. - Returns: whether it is.
    @discardableResult
    public func waitUntilActive(timeout: Duration? = nil) async -> Bool {
        await self.waitUntil(timeout: timeout) { role in
            if case .active = role { return true }
            return false
        }
    }

    private func setRole(_ role: Role) {
        self.role = role
        self.waiters.resume(with: role)
    }

    // MARK: Election

    /// Campaigns until this controller wins or the task is cancelled; a loser waits (as a standby) until its
    /// follower sees the election key gone, then tries again. After `pause` (a controller that just lost its term)
    /// the standbys get the first chance.
    private func campaign(after pause: Duration = .zero) async {
        if pause > .zero {
            do {
                try await Task.sleep(for: pause)
            } catch {
                return
            }
        }
        var delay = Duration.milliseconds(100)
        var reported = false
        while !Task.isCancelled {
            do {
                let lease = try await self.store.grantLease(ttlSeconds: self.leaseTTLSeconds)
                let value = ImageCodec.encode(controllerNodeID: self.nodeID, endpoint: self.endpoint)
                let outcome = try await self.store.commit(
                    MetadataTransaction(
                        compares: [.absent(ImageKeys.controller)],
                        operations: [.put(key: ImageKeys.controller, value: value, leaseID: lease.id)]
                    )
                )
                reported = false
                delay = .milliseconds(100)
                guard !Task.isCancelled else {
                    try? await self.store.revoke(lease)
                    return
                }
                switch outcome {
                case .committed(let revision):
                    self.becomeActive(epoch: revision, lease: lease)
                    return
                case .conflict(_, let current):
                    try? await self.store.revoke(lease)
                    let leader = current.flatMap { entry in
                        try? ImageCodec.decodeController(entry.value, key: entry.key, epoch: entry.createRevision)
                    }
                    self.setRole(.standby(leader: leader))
                    self.logger.info(
                        "Standing by: another controller is active",
                        metadata: [
                            "controller": "\(leader.map { "\($0.nodeID)" } ?? "?")",
                            "epoch": "\(leader.map { "\($0.epoch)" } ?? "?")",
                        ]
                    )
                    let seen = current?.modRevision ?? 0
                    let gone = await self.follower.waitUntil { $0.revision >= seen && $0.controller == nil }
                    guard gone, !Task.isCancelled else { return }
                    self.setRole(.campaigning)
                }
            } catch {
                if !reported {
                    reported = true
                    self.logger.warning(
                        "Cannot campaign for the controller role; retrying",
                        metadata: ["error": "\(error)"]
                    )
                }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    private func becomeActive(epoch: Int64, lease: MetadataLease) {
        self.lease = lease
        self.setRole(.active(epoch: epoch))
        self.logger.info(
            "This process is the active controller",
            metadata: ["node.id": "\(self.nodeID)", "controller.epoch": "\(epoch)"]
        )
        let interval = Duration.seconds(self.leaseTTLSeconds) / 3
        let ttl = Duration.seconds(self.leaseTTLSeconds)
        let store = self.store
        // On a thread of their own, not Swift's cooperative pool nor the event loops that serve connections: a
        // process whose pool or loops were busy (seen: the test suite beside in-process controllers, then its
        // connections' handlers) delayed keep-alives past the TTL and lost the term.
        self.keepAliveTask = Task(executorPreference: Self.keepAliveExecutor) { [weak self] in
            var lastRenewal = ContinuousClock.now
            while true {
                do {
                    try await Task.sleep(for: interval)
                } catch {
                    return
                }
                do throws(MetadataStoreError) {
                    _ = try await store.keepAlive(lease)
                    lastRenewal = .now
                } catch {
                    // A lapsed lease ends the term at once; another failure only once the TTL has passed without a
                    // renewal, since the lease (and the key) may still be there.
                    guard error.isLeaseNotFound || ContinuousClock.now - lastRenewal >= ttl else { continue }
                    await self?.stepDown(epoch: epoch, reason: "its lease could not be kept alive: \(error)")
                    return
                }
            }
        }
        let sessionCheck = min(Duration.milliseconds(250), self.liveness.sessionTimeout / 4)
        // Fencing on silence runs on the event loop too: a starved pool must not fence live brokers late or early.
        self.sessionTask = Task(executorPreference: Self.keepAliveExecutor) { [weak self] in
            guard await self?.follower.waitUntilApplied(epoch) == true else { return }
            while !Task.isCancelled {
                await self?.fenceExpiredSessions(epoch: epoch)
                do {
                    try await Task.sleep(for: sessionCheck)
                } catch {
                    return
                }
            }
        }
        let follower = self.follower
        self.monitorTask = Task { [weak self] in
            let lost = await follower.waitUntil { $0.revision >= epoch && $0.controller?.epoch != epoch }
            guard lost, !Task.isCancelled else { return }
            await self?.stepDown(epoch: epoch, reason: "its election key left the store")
        }
    }

    /// Where the keep-alives and session checks of every term run: one event loop thread of their own, for the
    /// life of the process.
    private static let keepAliveExecutor = EventLoopTaskExecutor(
        MultiThreadedEventLoopGroup(numberOfThreads: 1).next()
    )

    /// Ends the term of `epoch` (if it is still the current one) and campaigns again.
    private func stepDown(epoch: Int64, reason: String) {
        guard case .active(let current) = self.role, current == epoch else { return }
        self.endTermTasks()
        if let lease = self.lease {
            // Its key, if it is still there, goes at once, so the next election need not wait out the TTL.
            let store = self.store
            Task { try? await store.revoke(lease) }
        }
        self.lease = nil
        self.logger.warning(
            "This process is no longer the active controller",
            metadata: ["controller.epoch": "\(epoch)", "reason": "\(reason)"]
        )
        self.setRole(.campaigning)
        // A controller that lost its term may be the unhealthy one (paused, cut off): a standby wins first if
        // there is one; alone, it wins again after a keep-alive interval.
        let pause = Duration.seconds(self.leaseTTLSeconds) / 3
        self.campaignTask = Task { await self.campaign(after: pause) }
    }

    /// As a process stopped with SIGSTOP: no keep-alives and no watching of the election key; the role stays as
    /// it is until a write finds out. For tests of fencing.
    func pause() {
        self.endTermTasks()
        self.campaignTask?.cancel()
        self.campaignTask = nil
    }

    /// Cancels what runs for a term: keep-alives, the election key's monitor and the broker session checks.
    private func endTermTasks() {
        self.keepAliveTask?.cancel()
        self.monitorTask?.cancel()
        self.sessionTask?.cancel()
        (self.keepAliveTask, self.monitorTask, self.sessionTask) = (nil, nil, nil)
    }

    // MARK: Writing

    /// Records `registration`, made in-process by this process's own broker (unfenced, no session), and re-elects
    /// the partitions it replicates (`ControllerDecisions.registeringBroker`).
    /// - Returns: the topics re-elected and the revision written.
    @discardableResult
    public func registerBroker(
        _ registration: BrokerRegistration
    ) async throws(ClusterControlError) -> (topics: Int, revision: Int64) {
        var recorded = registration
        (recorded.incarnationID, recorded.fenced, recorded.brokerEpoch) = (.zero, false, 0)
        let registering = recorded
        let policy = self.uncleanPolicy
        let (topics, revision) = try await self.perform { image, live in
            ControllerDecisions.registeringBroker(
                image,
                registering,
                live: live.union([registering.nodeID]),
                policy: policy
            )
        }
        return (topics, revision)
    }

    /// Leaders' ISR changes (Kafka's AlterPartition; see `ControllerDecisions.alteringPartitions`), committed
    /// before the answer.
    /// - Returns: one outcome per change, in order: the refusal, or the partition as committed.
    /// - Throws: `notController` when this controller is not active, `store`.
    public func alterPartition(_ changes: [ISRChange]) async throws(ClusterControlError) -> [ISRChangeOutcome] {
        let (outcomes, _) = try await self.perform { image, _ in
            ControllerDecisions.alteringPartitions(image, changes)
        }
        for outcome in outcomes where outcome.error == nil {
            self.logger.debug(
                "Altered an ISR",
                metadata: [
                    "topic.id": "\(outcome.topicID)", "partition": "\(outcome.partition)",
                    "isr": "\(outcome.state?.isr ?? [])", "partition.epoch": "\(outcome.state?.partitionEpoch ?? -1)",
                ]
            )
        }
        return outcomes
    }

    /// Decides on the follower's image with the live brokers, commits the writes fenced by the epoch, and answers
    /// once the follower has applied them.
    /// - Returns: the decision's answer and the revision of its last write (the image's revision when it wrote
    ///   nothing).
    /// - Throws: `notController` when this controller is not (or no longer) active, what `decide` throws, `store`
    ///   when the store fails.
    public func perform<Answer: Sendable>(
        _ decide: @Sendable (ClusterImage, Set<Int32>) throws(ClusterControlError) -> ControllerResult<Answer>
    ) async throws(ClusterControlError) -> (answer: Answer, revision: Int64) {
        await self.acquireWriteTurn()
        defer { self.releaseWriteTurn() }
        for _ in 0..<100 {
            let epoch = try await self.caughtUpEpoch()
            let followed = await self.follower.followed
            guard self.epoch == epoch else { throw await self.notController() }
            let result = try decide(followed.image, Self.liveBrokers(in: followed.image))
            guard !result.writes.isEmpty else { return (result.answer, followed.revision) }
            switch try await self.commit(result.writes, on: followed, epoch: epoch) {
            case .committed(let revision):
                guard await self.follower.waitUntilApplied(revision) else { throw await self.notController() }
                return (result.answer, revision)
            case .conflict(let revision):
                guard await self.follower.waitUntilApplied(revision) else { throw await self.notController() }
            }
        }
        throw .store(.invalidWrite("the metadata store kept conflicting"))
    }

    private enum Outcome {
        case committed(revision: Int64)
        /// A key had moved on: the follower must apply `revision` before deciding again.
        case conflict(revision: Int64)
    }

    /// Commits `writes` in fenced transactions within the store's limits; stops at the first conflict.
    private func commit(
        _ writes: [ImageWrite],
        on followed: FollowedImage,
        epoch: Int64
    ) async throws(ClusterControlError) -> Outcome {
        var revision = followed.revision
        let transactions: [MetadataTransaction]
        do {
            transactions = try self.store.transactions(
                fencedBy: [.createRevision(of: ImageKeys.controller, equals: epoch)],
                writes.map { write in
                    GuardedOperation(
                        write.value.map { .put(key: write.key, value: $0) } ?? .delete(key: write.key),
                        compare: .modRevision(of: write.key, equals: followed.modRevisions[write.key] ?? 0)
                    )
                }
            )
        } catch {
            throw .store(error)
        }
        for transaction in transactions {
            let outcome: MetadataCommit
            do {
                outcome = try await self.store.commit(transaction)
            } catch {
                throw .store(error)
            }
            switch outcome {
            case .committed(let committed):
                revision = committed
            case .conflict(let key, _) where key == ImageKeys.controller:
                self.stepDown(epoch: epoch, reason: "a write was refused: the election key is no longer its own")
                throw await self.notController()
            case .conflict(let key, let current):
                self.logger.debug("A controller write conflicted; deciding again", metadata: ["key": "\(key)"])
                if let current { return .conflict(revision: current.modRevision) }
                do {
                    return .conflict(revision: try await self.store.revision())
                } catch {
                    throw .store(error)
                }
            }
        }
        return .committed(revision: revision)
    }

    /// The brokers decisions place replicas on and elect leaders among: the unfenced ones. On the standalone broker
    /// that is itself.
    public static func liveBrokers(in image: ClusterImage) -> Set<Int32> {
        Set(image.brokers.values.filter { !$0.fenced }.map(\.nodeID))
    }

    /// The epoch, once the follower has applied the election that started it.
    func caughtUpEpoch() async throws(ClusterControlError) -> Int64 {
        guard let epoch = self.epoch else { throw await self.notController() }
        guard await self.follower.waitUntilApplied(epoch), self.epoch == epoch else { throw await self.notController() }
        return epoch
    }

    /// The refusal a request gets when this controller is not active, naming the active one when known.
    private func notController() async -> ClusterControlError {
        .notController(activeNodeID: await self.follower.followed.controller?.nodeID)
    }

    private func acquireWriteTurn() async {
        guard self.writing else {
            self.writing = true
            return
        }
        await withCheckedContinuation { self.writeQueue.append($0) }
    }

    private func releaseWriteTurn() {
        if self.writeQueue.isEmpty {
            self.writing = false
        } else {
            self.writeQueue.removeFirst().resume()
        }
    }
}
