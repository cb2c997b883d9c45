import KafkaWire

/// The active controller's view of which brokers are alive, as KRaft's `BrokerHeartbeatManager` and the
/// registration checks of `ClusterControlManager`: a pure state machine over registrations, heartbeats, closed
/// heartbeat connections and the passing of time. Instants are given by the caller (any clock), so tests need no
/// sleeps; the caller commits the fencing and unfencing it decides to the image.
///
/// Rules:
/// - A broker registers with an incarnation id (new at every process start). A registration with another
///   incarnation while the registered one still has a live session is refused (DUPLICATE_BROKER_REGISTRATION):
///   two processes claim one node id. The same incarnation registering again (a retried request) is accepted.
/// - A registration starts fenced; its broker epoch is the store revision that recorded it. The broker is unfenced
///   by a heartbeat that carries that epoch, does not ask to stay fenced, and has applied the image at least up to
///   its own registration (it is caught up, as Kafka's metadata offset check).
/// - A broker is fenced when no heartbeat came for the session timeout, or at once when its heartbeat connection
///   closed (beyond Kafka: a crashed process closes its sockets, and nobody should wait for it).
///
/// Lost on a controller change by design: a new active controller starts every registered broker's session at its
/// own start, as Kafka does.
public struct BrokerLiveness<Instant: InstantProtocol>: Sendable where Instant.Duration == Swift.Duration {
    /// What the controller knows of one registered broker.
    public struct Session: Hashable, Sendable {
        public var incarnationID: KafkaUUID
        /// The store revision at which the registration was recorded: Kafka's broker epoch.
        public var brokerEpoch: Int64
        public var fenced: Bool
        /// The broker asked for a controlled shutdown.
        public var wantsShutDown: Bool
        public var lastContact: Instant
        /// The image revision the broker said it had applied in its last heartbeat.
        public var appliedRevision: Int64
    }

    /// The answer to a heartbeat, before the controller acts on it.
    public struct HeartbeatOutcome: Hashable, Sendable {
        /// The broker has applied the image up to its registration.
        public var caughtUp: Bool
        /// Whether the broker stays or becomes fenced after this heartbeat.
        public var fenced: Bool
        /// True when this heartbeat unfenced it: the controller records that in the image.
        public var unfenced: Bool
    }

    public let sessionTimeout: Duration
    public private(set) var sessions: [Int32: Session] = [:]

    public init(sessionTimeout: Duration) {
        self.sessionTimeout = sessionTimeout
    }

    /// The brokers not fenced: where replicas may be placed and leaders elected.
    public var unfenced: Set<Int32> { Set(self.sessions.filter { !$0.value.fenced }.keys) }

    /// Whether `nodeID`'s registered process may still be alive: not fenced, or fenced by a shutdown it asked for
    /// while its session has not lapsed.
    public func hasLiveSession(_ nodeID: Int32, at now: Instant) -> Bool {
        guard let session = self.sessions[nodeID] else { return false }
        return session.lastContact.advanced(by: self.sessionTimeout) > now && (!session.fenced || session.wantsShutDown)
    }

    /// Checks a registration before the controller records it.
    /// - Throws: `duplicateBrokerRegistration` when another incarnation of the node still has a live session.
    public func checkRegistration(
        nodeID: Int32,
        incarnationID: KafkaUUID,
        at now: Instant
    ) throws(ClusterControlError) {
        guard let session = self.sessions[nodeID], session.incarnationID != incarnationID,
            self.hasLiveSession(nodeID, at: now)
        else { return }
        throw .duplicateBrokerRegistration(nodeID)
    }

    /// Records a registration committed at store revision `brokerEpoch`: the broker starts fenced.
    public mutating func registered(nodeID: Int32, incarnationID: KafkaUUID, brokerEpoch: Int64, at now: Instant) {
        self.sessions[nodeID] = Session(
            incarnationID: incarnationID,
            brokerEpoch: brokerEpoch,
            fenced: true,
            wantsShutDown: false,
            lastContact: now,
            appliedRevision: 0
        )
    }

    /// Takes over a registration recorded by an earlier controller, fenced or not as the image says: its session
    /// starts at `now`, as Kafka's new controller starts every broker's.
    public mutating func resumed(
        nodeID: Int32,
        incarnationID: KafkaUUID,
        brokerEpoch: Int64,
        fenced: Bool,
        at now: Instant
    ) {
        self.registered(nodeID: nodeID, incarnationID: incarnationID, brokerEpoch: brokerEpoch, at: now)
        self.sessions[nodeID]?.fenced = fenced
    }

    /// A heartbeat from `nodeID` at `brokerEpoch` that has applied the image up to `appliedRevision`.
    /// - Throws: `brokerNotRegistered` for an unknown node, `staleBrokerEpoch` for another epoch (an older
    ///   incarnation, or a registration the controller has not seen).
    public mutating func heartbeat(
        nodeID: Int32,
        brokerEpoch: Int64,
        appliedRevision: Int64,
        wantFence: Bool,
        wantShutDown: Bool,
        at now: Instant
    ) throws(ClusterControlError) -> HeartbeatOutcome {
        guard var session = self.sessions[nodeID] else { throw .brokerNotRegistered(nodeID) }
        guard session.brokerEpoch == brokerEpoch else {
            throw .staleBrokerEpoch(nodeID, epoch: brokerEpoch, current: session.brokerEpoch)
        }
        session.lastContact = now
        session.appliedRevision = appliedRevision
        session.wantsShutDown = session.wantsShutDown || wantShutDown
        let caughtUp = appliedRevision >= session.brokerEpoch
        let wasFenced = session.fenced
        if wantFence || session.wantsShutDown {
            session.fenced = true
        } else if caughtUp {
            session.fenced = false
        }
        self.sessions[nodeID] = session
        return HeartbeatOutcome(caughtUp: caughtUp, fenced: session.fenced, unfenced: wasFenced && !session.fenced)
    }

    /// The heartbeat connection of `nodeID` at `brokerEpoch` closed: it is fenced at once, and its process counts as
    /// gone (a broker that stopped after a controlled shutdown may be started again at once).
    /// - Returns: whether that fenced it (it was registered at that epoch and unfenced).
    public mutating func connectionClosed(nodeID: Int32, brokerEpoch: Int64) -> Bool {
        guard var session = self.sessions[nodeID], session.brokerEpoch == brokerEpoch else { return false }
        let wasFenced = session.fenced
        session.fenced = true
        session.wantsShutDown = false
        self.sessions[nodeID] = session
        return !wasFenced
    }

    /// Fences every unfenced broker whose last heartbeat is older than the session timeout.
    /// - Returns: the brokers this fenced, in id order.
    public mutating func fenceExpired(at now: Instant) -> [Int32] {
        let expired = self.sessions
            .filter { !$0.value.fenced && $0.value.lastContact.advanced(by: self.sessionTimeout) <= now }
            .keys.sorted()
        for nodeID in expired { self.sessions[nodeID]?.fenced = true }
        return expired
    }

    /// When the next session may lapse: the caller's timer for `fenceExpired`; nil when no broker is unfenced.
    public var nextExpiry: Instant? {
        self.sessions.values.filter { !$0.fenced }.map { $0.lastContact.advanced(by: self.sessionTimeout) }.min()
    }
}
