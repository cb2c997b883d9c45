import ClusterControl
import KafkaMessages
import KafkaWire
import Logging

/// A broker's side of KRaft's broker lifecycle (Kafka's `BrokerLifecycleManager`), for brokers of a cluster: it
/// registers with the active controller over its CONTROLLER listener (`ControllerChannel`), then heartbeats every
/// `broker.heartbeat.interval.ms` with the revision its image follower has applied (its metadata offset), and asks
/// for a controlled shutdown when it stops.
///
/// - **Registration**: the node id, an incarnation id new at every process start, the advertised listeners, the
///   rack, the cluster id, and the features a Kafka 3.9 broker declares (`metadata.version` 1–21, `kraft.version`
///   0–1). The registration starts fenced; the controller unfences the broker on a heartbeat once its image has
///   caught up with its own registration, so heartbeats come quickly (every 50 ms) while it is fenced, as Kafka's
///   do while it starts.
/// - **Finding the controller again**: on NOT_CONTROLLER, a connection that fails, or an election key naming
///   another controller, the next heartbeat goes to the controller the key names then.
/// - **Registering again**: STALE_BROKER_EPOCH or BROKER_ID_NOT_REGISTERED (the registration was replaced or lost)
///   make it register again, with the same incarnation.
/// - **A duplicate node id**: DUPLICATE_BROKER_REGISTRATION means another live process holds this node id. As
///   Kafka's brokers do, it retries (the previous incarnation of a restarted broker may still hold a session), but
///   only for `broker.session.timeout.ms` (and a heartbeat interval) before the first registration succeeds: after that, start-up fails with
///   one line naming `node.id`.
///
/// Thread safety: an actor. `start` once; `waitUntilUnfenced` from the broker's start-up; `stop` once.
public actor BrokerLifecycle {
    /// What the controller last said about this broker.
    public struct Status: Hashable, Sendable {
        /// The broker epoch of the current registration; nil before it is registered (or while it registers again).
        public var brokerEpoch: Int64?
        public var fenced: Bool
        /// The controller agreed to the controlled shutdown this broker asked for.
        public var shutDownAllowed: Bool
    }

    /// This process's incarnation: new at every start, so the controller can tell a restarted broker from a
    /// second process claiming the same node id.
    public nonisolated let incarnationID: KafkaUUID
    private let nodeID: Int32
    private let rack: String?
    private var endpoints: [BrokerEndpoint] = []
    private let securityProtocols: [String: String]
    private let heartbeatInterval: Duration
    private let sessionTimeout: Duration
    private let follower: ImageFollower
    private let channel: ControllerChannel
    private let logger: Logger
    public private(set) var status = Status(brokerEpoch: nil, fenced: true, shutDownAllowed: false)
    private var wantShutDown = false
    private var everRegistered = false
    private var failure: LogBrokerServerError?
    private var task: Task<Void, Never>?
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// Kafka 3.9's feature ranges for a broker (`QuorumFeatures.defaultSupportedFeatureMap`): `metadata.version`
    /// from 3.0-IV1 (1) to 3.9-IV0 (21), and `kraft.version` 0–1; features whose newest production version is 0
    /// are not sent.
    static let supportedFeatures: [BrokerRegistrationRequest.Feature] = [
        .init(name: "metadata.version", minSupportedVersion: 1, maxSupportedVersion: 21),
        .init(name: "kraft.version", minSupportedVersion: 0, maxSupportedVersion: 1),
    ]
    /// The versions sent: the newest both ends speak (the controller is this program).
    static let registrationVersion: Int16 = 4
    static let heartbeatVersion: Int16 = 1
    /// The next heartbeat's delay while fenced: quick, so a caught-up broker is unfenced soon after it starts.
    static let fencedHeartbeatInterval = Duration.milliseconds(50)

    /// - Parameter follower: this process's image follower: the controller's endpoint, the cluster id and the
    ///   metadata offset come from it.
    public init(configuration: BrokerConfiguration, follower: ImageFollower, logger: Logger) {
        self.incarnationID = Self.randomUUID()
        self.nodeID = configuration.nodeID
        self.rack = configuration.brokerRack
        self.securityProtocols = Dictionary(
            configuration.advertisedListeners.map { ($0.name, $0.securityProtocol) },
            uniquingKeysWith: { first, _ in first }
        )
        self.heartbeatInterval = .milliseconds(configuration.brokerHeartbeatIntervalMs)
        self.sessionTimeout = .milliseconds(configuration.brokerSessionTimeoutMs)
        self.follower = follower
        self.channel = ControllerChannel(
            follower: follower,
            clientID: "broker-\(configuration.nodeID)-heartbeat",
            logger: logger
        )
        self.logger = logger
    }

    /// Starts registering and heartbeating in a task of its own.
    /// - Parameter endpoints: the advertised listeners, with the ports actually bound.
    public func start(endpoints: [BrokerEndpoint]) {
        guard self.task == nil else { return }
        self.endpoints = endpoints
        let started = ContinuousClock.now
        self.task = Task { await self.run(started: started) }
    }

    /// Returns once the controller has unfenced this broker (it is registered and caught up).
    /// - Throws: `LogBrokerServerError` naming `node.id` when another live process holds it (or the controller
    ///   belongs to another cluster); `CancellationError` when the task is cancelled first.
    public func waitUntilUnfenced() async throws {
        while true {
            if let failure = self.failure { throw failure }
            if self.status.brokerEpoch != nil && !self.status.fenced { return }
            try Task.checkCancellation()
            await withTaskCancellationHandler {
                await withCheckedContinuation { self.waiters.append($0) }
            } onCancel: {
                Task { await self.wakeWaiters() }
            }
        }
    }

    /// The broker epoch of the current registration, for requests that carry it (AllocateProducerIds).
    public var brokerEpoch: Int64? { self.status.brokerEpoch }

    /// Asks the controller for a controlled shutdown (heartbeats with WantShutDown until it agrees, at most
    /// `timeout`), then stops heartbeating and closes the connection (the controller fences the broker).
    public func stop(timeout: Duration) async {
        self.wantShutDown = true
        if self.status.brokerEpoch != nil && self.failure == nil {
            let deadline = ContinuousClock.now + timeout
            while !self.status.shutDownAllowed && ContinuousClock.now < deadline {
                await self.heartbeat(deadline: deadline)
                if !self.status.shutDownAllowed {
                    try? await Task.sleep(for: min(.milliseconds(100), max(deadline - .now, .zero)))
                }
            }
            if self.status.shutDownAllowed {
                self.logger.info(
                    "The controller agreed to a controlled shutdown",
                    metadata: ["node.id": "\(self.nodeID)"]
                )
            } else {
                self.logger.warning(
                    "No controlled shutdown within \(timeout); stopping anyway",
                    metadata: ["node.id": "\(self.nodeID)"]
                )
            }
        }
        self.task?.cancel()
        await self.task?.value
        self.task = nil
        await self.channel.close()
        self.wakeWaiters()
    }

    private func wakeWaiters() {
        let waiters = self.waiters
        self.waiters = []
        for waiter in waiters { waiter.resume() }
    }

    // MARK: The loop

    private func run(started: ContinuousClock.Instant) async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled && !self.wantShutDown {
            let controller = await self.channel.currentController
            let succeeded: Bool
            if self.status.brokerEpoch == nil {
                succeeded = await self.register(started: started)
                if self.failure != nil {
                    self.wakeWaiters()
                    return
                }
                if succeeded { continue }
            } else {
                succeeded = await self.heartbeat(deadline: .now + self.heartbeatInterval)
            }
            if !succeeded {
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, self.heartbeatInterval)
                continue
            }
            backoff = .milliseconds(100)
            if self.status.fenced && self.status.brokerEpoch != nil {
                try? await Task.sleep(for: min(Self.fencedHeartbeatInterval, self.heartbeatInterval))
            } else if self.status.brokerEpoch != nil {
                // The interval, or less when the election key names another controller meanwhile.
                let epoch = controller?.epoch
                _ = await self.follower.waitUntil(timeout: self.heartbeatInterval) { $0.controller?.epoch != epoch }
            }
        }
    }

    /// One registration attempt. - Returns: whether the broker is registered now.
    private func register(started: ContinuousClock.Instant) async -> Bool {
        guard await self.follower.waitUntil(timeout: self.heartbeatInterval, { $0.hasCluster }) else { return false }
        let request = BrokerRegistrationRequest(
            brokerID: self.nodeID,
            clusterID: await self.follower.followed.image.clusterID,
            incarnationID: self.incarnationID,
            listeners: self.endpoints.map {
                BrokerRegistrationRequest.Listener(
                    name: $0.listener,
                    host: $0.host,
                    port: UInt16(clamping: $0.port),
                    securityProtocol: Self.securityProtocolID(self.securityProtocols[$0.listener] ?? "PLAINTEXT")
                )
            },
            features: Self.supportedFeatures,
            rack: self.rack
        )
        let response: BrokerRegistrationResponse
        do {
            response = try await self.channel.send(
                request,
                version: Self.registrationVersion,
                deadline: .now + self.heartbeatInterval
            )
        } catch {
            self.logger.debug("Cannot register with the controller yet", metadata: ["error": "\(error)"])
            return false
        }
        switch ErrorCode(response.errorCode) {
        case .none:
            self.everRegistered = true
            self.status = Status(brokerEpoch: response.brokerEpoch, fenced: true, shutDownAllowed: false)
            self.logger.info(
                "Registered with the controller",
                metadata: [
                    "node.id": "\(self.nodeID)", "incarnation": "\(self.incarnationID)",
                    "broker.epoch": "\(response.brokerEpoch)",
                ]
            )
            return true
        case .notController:
            await self.channel.reset()
            return false
        case .duplicateBrokerRegistration where !self.everRegistered:
            // The previous incarnation's session lapses at most a session timeout after this process started;
            // a heartbeat interval more absorbs the time between the controller's check and this answer.
            if ContinuousClock.now - started >= self.sessionTimeout + self.heartbeatInterval {
                self.failure = .invalidValue(
                    "\(self.nodeID)",
                    for: "node.id",
                    reason: "another live process is registered with this node id (the controller answered "
                        + "DUPLICATE_BROKER_REGISTRATION for \(self.sessionTimeout)); stop it or give this broker "
                        + "another node.id"
                )
            } else {
                self.logger.info(
                    "The controller says another process holds this node id; retrying until its session lapses",
                    metadata: ["node.id": "\(self.nodeID)"]
                )
            }
            return false
        case .inconsistentClusterID:
            self.failure = .invalidValue(
                await self.follower.followed.image.clusterID,
                for: "metadata.etcd.prefix",
                reason: "the active controller belongs to another cluster (INCONSISTENT_CLUSTER_ID)"
            )
            return false
        default:
            self.logger.warning(
                "The controller refused the registration; retrying",
                metadata: ["node.id": "\(self.nodeID)", "error": "\(ErrorCode(response.errorCode))"]
            )
            return false
        }
    }

    /// One heartbeat. - Returns: whether the controller answered it without an error.
    @discardableResult
    private func heartbeat(deadline: ContinuousClock.Instant) async -> Bool {
        guard let brokerEpoch = self.status.brokerEpoch else { return false }
        let request = BrokerHeartbeatRequest(
            brokerID: self.nodeID,
            brokerEpoch: brokerEpoch,
            currentMetadataOffset: await self.follower.appliedRevision,
            wantFence: false,
            wantShutDown: self.wantShutDown
        )
        let response: BrokerHeartbeatResponse
        do {
            response = try await self.channel.send(request, version: Self.heartbeatVersion, deadline: deadline)
        } catch {
            self.logger.debug("No heartbeat answer from the controller", metadata: ["error": "\(error)"])
            return false
        }
        guard self.status.brokerEpoch == brokerEpoch else { return false }
        switch ErrorCode(response.errorCode) {
        case .none:
            let wasFenced = self.status.fenced
            self.status.fenced = response.isFenced
            self.status.shutDownAllowed = response.shouldShutDown
            if wasFenced && !response.isFenced {
                self.logger.info(
                    "The controller unfenced this broker",
                    metadata: ["node.id": "\(self.nodeID)", "broker.epoch": "\(brokerEpoch)"]
                )
                self.wakeWaiters()
            } else if !wasFenced && response.isFenced && !self.wantShutDown {
                self.logger.warning("The controller fenced this broker", metadata: ["node.id": "\(self.nodeID)"])
            }
            return true
        case .notController:
            await self.channel.reset()
            return false
        case .staleBrokerEpoch, .brokerIDNotRegistered:
            self.logger.warning(
                "The controller no longer knows this registration; registering again",
                metadata: [
                    "node.id": "\(self.nodeID)", "broker.epoch": "\(brokerEpoch)",
                    "error": "\(ErrorCode(response.errorCode))",
                ]
            )
            self.status = Status(brokerEpoch: nil, fenced: true, shutDownAllowed: false)
            return true
        default:
            self.logger.warning(
                "The controller refused a heartbeat",
                metadata: ["node.id": "\(self.nodeID)", "error": "\(ErrorCode(response.errorCode))"]
            )
            return false
        }
    }

    /// Kafka's `SecurityProtocol` ids.
    static func securityProtocolID(_ name: String) -> Int16 {
        switch name {
        case "SSL": return 1
        case "SASL_PLAINTEXT": return 2
        case "SASL_SSL": return 3
        default: return 0
        }
    }

    /// A random version-4 UUID, never the zero or reserved ids.
    static func randomUUID() -> KafkaUUID {
        var generator = SystemRandomNumberGenerator()
        let most = (generator.next() as UInt64) & ~0xF000 | 0x4000
        let least = (generator.next() as UInt64) & ~(0xC000_0000_0000_0000 as UInt64) | 0x8000_0000_0000_0000
        return KafkaUUID(mostSignificantBits: most, leastSignificantBits: least)
    }
}
