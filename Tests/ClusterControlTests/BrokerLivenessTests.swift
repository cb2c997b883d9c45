import ClusterControl
import KafkaWire
import Testing

/// `BrokerLiveness` on a test clock: instants are plain durations since an origin, so no test sleeps.
@Suite struct BrokerLivenessTests {
    struct TestInstant: InstantProtocol {
        var sinceOrigin: Duration
        func advanced(by duration: Duration) -> Self { Self(sinceOrigin: self.sinceOrigin + duration) }
        func duration(to other: Self) -> Duration { other.sinceOrigin - self.sinceOrigin }
        static func < (lhs: Self, rhs: Self) -> Bool { lhs.sinceOrigin < rhs.sinceOrigin }
    }

    static func at(_ seconds: Double) -> TestInstant { TestInstant(sinceOrigin: .milliseconds(Int64(seconds * 1000))) }
    static let first = KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 1)
    static let second = KafkaUUID(mostSignificantBits: 2, leastSignificantBits: 2)
    static let third = KafkaUUID(mostSignificantBits: 3, leastSignificantBits: 3)

    @Test func aBrokerStartsFencedAndIsUnfencedOnceCaughtUp() throws {
        var liveness = BrokerLiveness<TestInstant>(sessionTimeout: .seconds(9))
        liveness.registered(nodeID: 1, incarnationID: Self.first, brokerEpoch: 40, at: Self.at(0))
        #expect(liveness.unfenced.isEmpty)
        let behind = try liveness.heartbeat(nodeID: 1, brokerEpoch: 40, appliedRevision: 39, wantFence: false,
                                            wantShutDown: false, at: Self.at(1))
        #expect(!behind.caughtUp && behind.fenced && !behind.unfenced)
        let asksFence = try liveness.heartbeat(nodeID: 1, brokerEpoch: 40, appliedRevision: 40, wantFence: true,
                                               wantShutDown: false, at: Self.at(2))
        #expect(asksFence.caughtUp && asksFence.fenced)
        let ready = try liveness.heartbeat(nodeID: 1, brokerEpoch: 40, appliedRevision: 41, wantFence: false,
                                           wantShutDown: false, at: Self.at(3))
        #expect(ready.unfenced && !ready.fenced)
        #expect(liveness.unfenced == [1])
        let again = try liveness.heartbeat(nodeID: 1, brokerEpoch: 40, appliedRevision: 41, wantFence: false,
                                           wantShutDown: false, at: Self.at(4))
        #expect(!again.unfenced && !again.fenced, "unfenced once, not at every heartbeat")
    }

    @Test func silenceForTheSessionTimeoutFencesAndAClosedConnectionFencesAtOnce() throws {
        var liveness = BrokerLiveness<TestInstant>(sessionTimeout: .seconds(9))
        for node: Int32 in [1, 2] {
            liveness.registered(nodeID: node, incarnationID: Self.first, brokerEpoch: Int64(node), at: Self.at(0))
            _ = try liveness.heartbeat(nodeID: node, brokerEpoch: Int64(node), appliedRevision: 5, wantFence: false,
                                       wantShutDown: false, at: Self.at(1))
        }
        _ = try liveness.heartbeat(nodeID: 2, brokerEpoch: 2, appliedRevision: 5, wantFence: false,
                                   wantShutDown: false, at: Self.at(5))
        #expect(liveness.nextExpiry == Self.at(10))
        let early = liveness.fenceExpired(at: Self.at(9.999))
        #expect(early.isEmpty)
        let lapsed = liveness.fenceExpired(at: Self.at(10))
        #expect(lapsed == [1])
        #expect(liveness.unfenced == [2])
        let stale = liveness.connectionClosed(nodeID: 2, brokerEpoch: 1)
        #expect(!stale, "a stale connection of an older epoch")
        let closed = liveness.connectionClosed(nodeID: 2, brokerEpoch: 2)
        #expect(closed)
        #expect(liveness.unfenced.isEmpty && liveness.nextExpiry == nil)
    }

    @Test func anotherIncarnationIsRefusedWhileTheFirstIsAlive() throws {
        var liveness = BrokerLiveness<TestInstant>(sessionTimeout: .seconds(9))
        liveness.registered(nodeID: 1, incarnationID: Self.first, brokerEpoch: 7, at: Self.at(0))
        _ = try liveness.heartbeat(nodeID: 1, brokerEpoch: 7, appliedRevision: 7, wantFence: false,
                                   wantShutDown: false, at: Self.at(1))
        #expect(throws: ClusterControlError.duplicateBrokerRegistration(1)) {
            try liveness.checkRegistration(nodeID: 1, incarnationID: Self.second, at: Self.at(2))
        }
        #expect(ClusterControlError.duplicateBrokerRegistration(1).kafkaErrorCode == .duplicateBrokerRegistration)
        // The same incarnation retrying its registration is fine.
        try liveness.checkRegistration(nodeID: 1, incarnationID: Self.first, at: Self.at(2))
        // Once its session lapsed (or it was fenced by a closed connection), a new incarnation may register.
        try liveness.checkRegistration(nodeID: 1, incarnationID: Self.second, at: Self.at(10))
        let closed = liveness.connectionClosed(nodeID: 1, brokerEpoch: 7)
        #expect(closed)
        try liveness.checkRegistration(nodeID: 1, incarnationID: Self.second, at: Self.at(3))
        liveness.registered(nodeID: 1, incarnationID: Self.second, brokerEpoch: 12, at: Self.at(3))
        func heartbeat(_ nodeID: Int32, epoch: Int64) throws(ClusterControlError) {
            _ = try liveness.heartbeat(nodeID: nodeID, brokerEpoch: epoch, appliedRevision: 12, wantFence: false,
                                       wantShutDown: false, at: Self.at(4))
        }
        #expect(throws: ClusterControlError.staleBrokerEpoch(1, epoch: 7, current: 12)) { try heartbeat(1, epoch: 7) }
        // A controlled shutdown keeps the node id until the stopped process's connection closes.
        try heartbeat(1, epoch: 12)
        _ = try liveness.heartbeat(nodeID: 1, brokerEpoch: 12, appliedRevision: 12, wantFence: false,
                                   wantShutDown: true, at: Self.at(5))
        #expect(throws: ClusterControlError.duplicateBrokerRegistration(1)) {
            try liveness.checkRegistration(nodeID: 1, incarnationID: Self.third, at: Self.at(6))
        }
        let gone = liveness.connectionClosed(nodeID: 1, brokerEpoch: 12)
        #expect(!gone, "already fenced by its shutdown")
        try liveness.checkRegistration(nodeID: 1, incarnationID: Self.third, at: Self.at(6))
        #expect(throws: ClusterControlError.brokerNotRegistered(3)) { try heartbeat(3, epoch: 1) }
    }

    @Test func aControlledShutdownFencesAndKeepsTheSessionUntilItLapses() throws {
        var liveness = BrokerLiveness<TestInstant>(sessionTimeout: .seconds(9))
        liveness.registered(nodeID: 1, incarnationID: Self.first, brokerEpoch: 3, at: Self.at(0))
        _ = try liveness.heartbeat(nodeID: 1, brokerEpoch: 3, appliedRevision: 3, wantFence: false,
                                   wantShutDown: false, at: Self.at(1))
        let stopping = try liveness.heartbeat(nodeID: 1, brokerEpoch: 3, appliedRevision: 3, wantFence: false,
                                              wantShutDown: true, at: Self.at(2))
        #expect(stopping.fenced && liveness.unfenced.isEmpty)
        #expect(liveness.sessions[1]?.wantsShutDown == true)
        // The stopping process is still alive: another incarnation must wait for it.
        #expect(liveness.hasLiveSession(1, at: Self.at(3)))
        #expect(!liveness.hasLiveSession(1, at: Self.at(11)))
    }
}
