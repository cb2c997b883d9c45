import KafkaWire
import Logging

/// A broker's heartbeat, as BrokerHeartbeat carries it. A plain value; thread-safe.
public struct BrokerHeartbeat: Hashable, Sendable {
    public var nodeID: Int32
    public var brokerEpoch: Int64
    /// The image revision the broker has applied (Kafka's `CurrentMetadataOffset`).
    public var appliedRevision: Int64
    public var wantFence: Bool
    public var wantShutDown: Bool

    public init(nodeID: Int32, brokerEpoch: Int64, appliedRevision: Int64, wantFence: Bool, wantShutDown: Bool) {
        self.nodeID = nodeID
        self.brokerEpoch = brokerEpoch
        self.appliedRevision = appliedRevision
        self.wantFence = wantFence
        self.wantShutDown = wantShutDown
    }
}

/// The controller's answer to a heartbeat, as BrokerHeartbeatResponse carries it. A plain value; thread-safe.
public struct BrokerHeartbeatAnswer: Hashable, Sendable {
    /// The broker has applied the image up to its own registration.
    public var isCaughtUp: Bool
    public var isFenced: Bool
    /// The controlled shutdown the broker asked for is done: it may stop.
    public var shouldShutDown: Bool
}

/// What the active controller knows of one broker's session, for operators (DescribeQuorum, `cluster describe`).
/// A plain value; thread-safe.
public struct BrokerSessionInfo: Hashable, Sendable {
    public var incarnationID: KafkaUUID
    public var brokerEpoch: Int64
    public var fenced: Bool
    public var wantsShutDown: Bool
    public var millisecondsSinceLastContact: Int64
    /// The image revision the broker said it had applied in its last heartbeat.
    public var appliedRevision: Int64
}

/// Broker registration and liveness (KRaft's `ClusterControlManager` and `BrokerHeartbeatManager`): the rules are
/// `BrokerLiveness`'s; this commits what it decides. Sessions live in the active controller's memory only: a new
/// active controller starts every registered broker's session at the moment it has applied its own election.
///
/// A registration made in-process by the broker's own controller (the standalone broker: `isInProcess`) has no
/// session and is never fenced for silence: the process is its own controller, and it cannot go quiet while the
/// controller is alive.
extension ActiveController {
    /// Records `registration` from a broker process, fenced, and moves away the leaderships it held
    /// (`ControllerDecisions.registeringBroker` among the live brokers but it): the partitions it alone can lead
    /// wait for its unfencing, which elects it with a new leader epoch.
    /// - Returns: the broker epoch, the revision that recorded the registration.
    /// - Throws: `notController` when not active, `duplicateBrokerRegistration` when another incarnation of the
    ///   node still has a live session, `store`.
    public func register(_ registration: BrokerRegistration) async throws(ClusterControlError) -> Int64 {
        let epoch = try await self.caughtUpEpoch()
        await self.resumeSessions(epoch: epoch)
        try self.liveness.checkRegistration(
            nodeID: registration.nodeID,
            incarnationID: registration.incarnationID,
            at: .now
        )
        var recorded = registration
        recorded.fenced = true
        recorded.brokerEpoch = 0
        let registering = recorded
        let policy = self.uncleanPolicy
        let (_, revision) = try await self.perform { image, live in
            ControllerDecisions.registeringBroker(
                image,
                registering,
                live: live.subtracting([registering.nodeID]),
                policy: policy
            )
        }
        self.shutdownRevisions[recorded.nodeID] = nil
        // The registration is the decision's first write; a later one of the same incarnation has its own epoch.
        let stored = await self.follower.followed.image.brokers[recorded.nodeID]
        let brokerEpoch = stored?.incarnationID == recorded.incarnationID ? stored?.brokerEpoch ?? revision : revision
        self.liveness.registered(
            nodeID: recorded.nodeID,
            incarnationID: recorded.incarnationID,
            brokerEpoch: brokerEpoch,
            at: .now
        )
        self.logger.info(
            "Registered broker",
            metadata: [
                "node.id": "\(recorded.nodeID)", "incarnation": "\(recorded.incarnationID)",
                "broker.epoch": "\(brokerEpoch)",
            ]
        )
        return brokerEpoch
    }

    /// A heartbeat: the session is renewed, and a caught-up broker unfenced (or a broker asking for it fenced),
    /// committed to the image before the answer, with the elections that follow (`ControllerDecisions.fencingBroker`).
    ///
    /// A controlled shutdown (WantShutDown) fences the broker in the image at once, as a fencing does: its
    /// leaderships move to the next live ISR member and it leaves the ISRs, while its session stays alive. The
    /// answer says it may stop (ShouldShutDown) once it leads no partition that has another live ISR member and it
    /// has applied the revision that moved its leaderships away (Kafka's controlled shutdown offset), so it knows it
    /// leads nothing before it stops.
    /// - Throws: `notController`, `brokerNotRegistered`, `staleBrokerEpoch`, `store`.
    public func heartbeat(_ heartbeat: BrokerHeartbeat) async throws(ClusterControlError) -> BrokerHeartbeatAnswer {
        let epoch = try await self.caughtUpEpoch()
        await self.resumeSessions(epoch: epoch)
        let outcome = try self.liveness.heartbeat(
            nodeID: heartbeat.nodeID,
            brokerEpoch: heartbeat.brokerEpoch,
            appliedRevision: heartbeat.appliedRevision,
            wantFence: heartbeat.wantFence,
            wantShutDown: heartbeat.wantShutDown,
            at: .now
        )
        let wantsShutDown = self.liveness.sessions[heartbeat.nodeID]?.wantsShutDown ?? false
        let reason =
            wantsShutDown
            ? "it asked for a controlled shutdown" : outcome.fenced ? "it asked to be fenced" : "it has caught up"
        let pass = try await self.recordFencing(
            heartbeat.nodeID,
            brokerEpoch: heartbeat.brokerEpoch,
            fenced: outcome.fenced,
            reason: reason
        )
        guard wantsShutDown && outcome.fenced else {
            return BrokerHeartbeatAnswer(isCaughtUp: outcome.caughtUp, isFenced: outcome.fenced, shouldShutDown: false)
        }
        if let pass, pass.summary.leadersMoved > 0 {
            self.shutdownRevisions[heartbeat.nodeID] = max(self.shutdownRevisions[heartbeat.nodeID] ?? 0, pass.revision)
        }
        let image = await self.follower.followed.image
        let done =
            !image.leadsMovablePartitions(heartbeat.nodeID, live: Self.liveBrokers(in: image))
            && heartbeat.appliedRevision >= self.shutdownRevisions[heartbeat.nodeID] ?? 0
        return BrokerHeartbeatAnswer(isCaughtUp: outcome.caughtUp, isFenced: true, shouldShutDown: done)
    }

    /// The connection broker `nodeID` heartbeats on closed: a crashed process closes its sockets, so it is fenced at
    /// once rather than after its session timeout.
    public func heartbeatConnectionClosed(nodeID: Int32, brokerEpoch: Int64) async {
        guard let epoch = self.epoch, self.sessionsEpoch == epoch,
            self.liveness.connectionClosed(nodeID: nodeID, brokerEpoch: brokerEpoch)
        else { return }
        try? await self.recordFencing(
            nodeID,
            brokerEpoch: brokerEpoch,
            fenced: true,
            reason: "its heartbeat connection closed"
        )
    }

    /// The sessions of the brokers registered by RPC, while this controller is active; empty otherwise.
    public func brokerSessions() -> [Int32: BrokerSessionInfo] {
        guard let epoch = self.epoch, self.sessionsEpoch == epoch else { return [:] }
        let now = ContinuousClock.now
        return self.liveness.sessions.mapValues { session in
            let (seconds, attoseconds) = (now - session.lastContact).components
            return BrokerSessionInfo(
                incarnationID: session.incarnationID,
                brokerEpoch: session.brokerEpoch,
                fenced: session.fenced,
                wantsShutDown: session.wantsShutDown,
                millisecondsSinceLastContact: seconds * 1000 + attoseconds / 1_000_000_000_000_000,
                appliedRevision: session.appliedRevision
            )
        }
    }

    /// Starts the sessions of term `epoch` from the image (once the follower has applied the election), if not yet.
    func resumeSessions(epoch: Int64) async {
        guard self.sessionsEpoch != epoch else { return }
        let brokers = await self.follower.followed.image.brokers
        guard self.sessionsEpoch != epoch else { return }
        self.sessionsEpoch = epoch
        self.shutdownRevisions = [:]
        self.liveness = BrokerLiveness(sessionTimeout: self.liveness.sessionTimeout)
        let now = ContinuousClock.now
        for broker in brokers.values where !broker.isInProcess {
            self.liveness.resumed(
                nodeID: broker.nodeID,
                incarnationID: broker.incarnationID,
                brokerEpoch: broker.brokerEpoch,
                fenced: broker.fenced,
                at: now
            )
        }
    }

    /// Fences the brokers of term `epoch` whose session lapsed.
    func fenceExpiredSessions(epoch: Int64) async {
        guard self.epoch == epoch else { return }
        await self.resumeSessions(epoch: epoch)
        for nodeID in self.liveness.fenceExpired(at: .now) {
            guard let session = self.liveness.sessions[nodeID] else { continue }
            try? await self.recordFencing(
                nodeID,
                brokerEpoch: session.brokerEpoch,
                fenced: true,
                reason: "no heartbeat within broker.session.timeout.ms (\(self.liveness.sessionTimeout))"
            )
        }
    }

    /// Commits broker `nodeID` (at `brokerEpoch`) fenced or unfenced with the elections that follow, unless the
    /// image already says so (a fenced broker that still leads, or is in an ISR with others, is passed over again:
    /// a pass cut short by a conflict or a change of controller is completed).
    /// - Returns: what the pass did and the revision it committed; nil when it wrote nothing.
    @discardableResult
    func recordFencing(
        _ nodeID: Int32,
        brokerEpoch: Int64,
        fenced: Bool,
        reason: String
    ) async throws(ClusterControlError) -> (summary: ElectionSummary, revision: Int64)? {
        let image = await self.follower.followed.image
        guard let current = image.brokers[nodeID], current.brokerEpoch == brokerEpoch else { return nil }
        guard current.fenced != fenced || (fenced && image.holdsPartitions(nodeID)) else { return nil }
        let policy = self.uncleanPolicy
        let started = ContinuousClock.now
        do {
            let (summary, revision) = try await self.perform { image, _ in
                ControllerDecisions.fencingBroker(
                    image,
                    nodeID,
                    brokerEpoch: brokerEpoch,
                    fenced: fenced,
                    policy: policy
                )
            }
            guard let summary else { return nil }
            let (seconds, attoseconds) = (ContinuousClock.now - started).components
            self.logger.info(
                fenced ? "Fenced broker" : "Unfenced broker",
                metadata: [
                    "node.id": "\(nodeID)", "broker.epoch": "\(brokerEpoch)", "reason": "\(reason)",
                    "partitions.changed": "\(summary.changed)", "leaders.moved": "\(summary.leadersMoved)",
                    "partitions.offline": "\(summary.offline)", "revision": "\(revision)",
                    "commit.ms": "\(seconds * 1000 + attoseconds / 1_000_000_000_000_000)",
                ]
            )
            return (summary, revision)
        } catch {
            self.logger.warning(
                "Could not record a broker's fencing",
                metadata: ["node.id": "\(nodeID)", "fenced": "\(fenced)", "error": "\(error)"]
            )
            throw error
        }
    }
}
