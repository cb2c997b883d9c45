import ClusterControl
import KafkaWire
import Replication
import Testing

/// The leader's replication rules on values, with the clock passed in: no broker, no sleeping.
@Suite struct LeaderReplicaStateTests {
    static let lag: Int64 = 30_000

    /// Leader 1 of replicas 1, 2, 3, all in the ISR, at time 1,000, its log ending at 100 with a high watermark
    /// of 80.
    static func leader(isr: [Int32] = [1, 2, 3], highWatermark: Int64 = 80, epochStart: Int64 = 100)
        -> LeaderReplicaState
    {
        LeaderReplicaState(
            leaderID: 1,
            leaderEpoch: 4,
            partitionEpoch: 7,
            replicas: [1, 2, 3],
            isr: isr,
            leaderEpochStartOffset: epochStart,
            highWatermark: highWatermark,
            nowMs: 1_000
        )
    }

    @Test func theHighWatermarkIsTheSmallestLogEndOverTheISRAndWaitsForEveryMemberToFetch() {
        var state = Self.leader()
        // Only one follower fetched: the other's log end is unknown, nothing moves.
        let moved5 = state.recordFetch(
            from: 2,
            fetchOffset: 100,
            brokerEpoch: 9,
            leaderLogEndOffset: 100,
            nowMs: 1_100
        )
        #expect(moved5 == false)
        #expect(state.highWatermark == 80)
        let moved2 = state.recordFetch(
            from: 3,
            fetchOffset: 90,
            brokerEpoch: 9,
            leaderLogEndOffset: 100,
            nowMs: 1_100
        )
        #expect(moved2 == true)
        #expect(state.highWatermark == 90)
        let moved3 = state.recordFetch(
            from: 3,
            fetchOffset: 100,
            brokerEpoch: 9,
            leaderLogEndOffset: 100,
            nowMs: 1_200
        )
        #expect(moved3 == true)
        #expect(state.highWatermark == 100)
        #expect(state.followers[2]?.brokerEpoch == 9)
    }

    @Test func theHighWatermarkNeverGoesBackwards() {
        var state = Self.leader()
        _ = state.recordFetch(from: 2, fetchOffset: 95, brokerEpoch: -1, leaderLogEndOffset: 100, nowMs: 1_100)
        _ = state.recordFetch(from: 3, fetchOffset: 95, brokerEpoch: -1, leaderLogEndOffset: 100, nowMs: 1_100)
        #expect(state.highWatermark == 95)
        // A follower that truncated and fetches from lower down holds the high watermark, never lowers it.
        let moved1 = state.recordFetch(
            from: 2,
            fetchOffset: 50,
            brokerEpoch: -1,
            leaderLogEndOffset: 100,
            nowMs: 1_200
        )
        #expect(moved1 == false)
        #expect(state.highWatermark == 95)
    }

    @Test func theISRAloneFollowsTheLeadersLogEnd() {
        var state = LeaderReplicaState(
            leaderID: 1,
            leaderEpoch: 0,
            partitionEpoch: 0,
            replicas: [1],
            isr: [1],
            leaderEpochStartOffset: 0,
            highWatermark: 0,
            nowMs: 0
        )
        let moved1b = state.updateHighWatermark(leaderLogEndOffset: 12)
        #expect(moved1b)
        #expect(state.highWatermark == 12)
        #expect(state.acknowledgement(of: 12, minInSyncReplicas: 2) == ErrorCode.none)
        #expect(!state.isUnderMinISR(2))
    }

    @Test func aFollowerIsCaughtUpAtAFetchThatReachedTheLeadersLogEndWhenItStarted() {
        var state = Self.leader()
        // At 5,000 the follower reached the log end of that moment (100).
        _ = state.recordFetch(from: 2, fetchOffset: 100, brokerEpoch: -1, leaderLogEndOffset: 100, nowMs: 5_000)
        #expect(state.followers[2]?.lastCaughtUpTimeMs == 5_000)
        // The leader appended meanwhile (log end 150); at 6,000 it fetches at 120: past the log end of its previous
        // fetch, so caught up as of that fetch (5,000), not as of now.
        _ = state.recordFetch(from: 2, fetchOffset: 120, brokerEpoch: -1, leaderLogEndOffset: 150, nowMs: 6_000)
        #expect(state.followers[2]?.lastCaughtUpTimeMs == 5_000)
        // At 7,000 it fetches at 140, short of 150: not caught up, the time stays.
        _ = state.recordFetch(from: 2, fetchOffset: 140, brokerEpoch: -1, leaderLogEndOffset: 200, nowMs: 7_000)
        #expect(state.followers[2]?.lastCaughtUpTimeMs == 5_000)
    }

    @Test func aFollowerNotCaughtUpForTheLagTimeShouldLeaveAndNoChangeIsProposedWhileOneIsInFlight() {
        var state = Self.leader()
        _ = state.recordFetch(from: 2, fetchOffset: 100, brokerEpoch: 11, leaderLogEndOffset: 100, nowMs: 2_000)
        _ = state.recordFetch(from: 3, fetchOffset: 60, brokerEpoch: 12, leaderLogEndOffset: 100, nowMs: 2_000)
        // Members count as caught up from the start of the leadership (1,000) for the lag time.
        #expect(state.outOfSyncReplicas(leaderLogEndOffset: 100, nowMs: 1_000 + Self.lag, maxLagMs: Self.lag) == [])
        #expect(state.outOfSyncReplicas(leaderLogEndOffset: 100, nowMs: 1_001 + Self.lag, maxLagMs: Self.lag) == [3])
        // Follower 2 is at the log end itself: never out of sync, whatever the time.
        #expect(
            state.proposedShrink(leaderLogEndOffset: 100, nowMs: 1_001 + Self.lag, maxLagMs: Self.lag)
                == [ISRMember(brokerID: 1), ISRMember(brokerID: 2, brokerEpoch: 11)]
        )
        state.markInFlight([1, 2], leaderLogEndOffset: 100)
        #expect(state.proposedShrink(leaderLogEndOffset: 100, nowMs: 1_001 + Self.lag, maxLagMs: Self.lag) == nil)
    }

    @Test func whileAShrinkIsInFlightTheHighWatermarkStillWaitsForTheLeavingMember() {
        var state = Self.leader()
        _ = state.recordFetch(from: 2, fetchOffset: 100, brokerEpoch: -1, leaderLogEndOffset: 100, nowMs: 2_000)
        _ = state.recordFetch(from: 3, fetchOffset: 85, brokerEpoch: -1, leaderLogEndOffset: 100, nowMs: 2_000)
        #expect(state.highWatermark == 85)
        state.markInFlight([1, 2], leaderLogEndOffset: 100)
        #expect(state.maximalISR == [1, 2, 3])
        let moved2b = state.updateHighWatermark(leaderLogEndOffset: 100)
        #expect(!moved2b)
        #expect(state.highWatermark == 85)
        // Committed: the ISR is 1 and 2, the high watermark moves to their smallest log end.
        let moved3b = state.commit(
            isr: [1, 2],
            partitionEpoch: 8,
            proposedAt: 7,
            leaderLogEndOffset: 100,
            nowMs: 3_000
        )
        #expect(moved3b)
        #expect(state.highWatermark == 100)
        #expect(state.isr == [1, 2])
        #expect(state.partitionEpoch == 8)
        #expect(state.inFlight == nil)
    }

    @Test func aFollowerRejoinsOnceItReachedTheHighWatermarkAndTheStartOfTheLeaderEpoch() {
        var state = Self.leader(isr: [1, 2], highWatermark: 80, epochStart: 100)
        _ = state.recordFetch(from: 2, fetchOffset: 120, brokerEpoch: -1, leaderLogEndOffset: 120, nowMs: 2_000)
        #expect(state.highWatermark == 120)
        // Follower 3 fetched below the high watermark: not yet.
        _ = state.recordFetch(from: 3, fetchOffset: 110, brokerEpoch: 21, leaderLogEndOffset: 120, nowMs: 2_000)
        #expect(!state.mayJoinISR(3))
        #expect(state.proposedExpansion(adding: 3) == nil)
        _ = state.recordFetch(from: 3, fetchOffset: 120, brokerEpoch: 21, leaderLogEndOffset: 120, nowMs: 2_100)
        #expect(state.mayJoinISR(3))
        #expect(
            state.proposedExpansion(adding: 3)
                == [ISRMember(brokerID: 1), ISRMember(brokerID: 2), ISRMember(brokerID: 3, brokerEpoch: 21)]
        )
        // A member is not proposed again, nor is the leader.
        #expect(state.proposedExpansion(adding: 2) == nil)
        #expect(state.proposedExpansion(adding: 1) == nil)
    }

    @Test func aFollowerBehindTheStartOfTheLeaderEpochMayNotRejoinEvenAtTheHighWatermark() {
        // A new leader whose high watermark lags its epoch's start (the old leader's followers had not told it).
        var state = Self.leader(isr: [1, 2], highWatermark: 50, epochStart: 100)
        _ = state.recordFetch(from: 3, fetchOffset: 60, brokerEpoch: -1, leaderLogEndOffset: 100, nowMs: 2_000)
        #expect(state.followers[3]?.logEndOffset == 60)
        #expect(!state.mayJoinISR(3))
    }

    @Test func whileAnExpansionIsInFlightTheHighWatermarkWaitsForTheJoiningMember() {
        var state = Self.leader(isr: [1, 2], highWatermark: 100, epochStart: 0)
        _ = state.recordFetch(from: 2, fetchOffset: 100, brokerEpoch: -1, leaderLogEndOffset: 100, nowMs: 2_000)
        _ = state.recordFetch(from: 3, fetchOffset: 100, brokerEpoch: -1, leaderLogEndOffset: 100, nowMs: 2_000)
        state.markInFlight([1, 2, 3], leaderLogEndOffset: 100)
        // The leader appended to 130; 2 fetched it all, 3 only up to 110: the maximal ISR holds the mark at 110.
        _ = state.recordFetch(from: 2, fetchOffset: 130, brokerEpoch: -1, leaderLogEndOffset: 130, nowMs: 3_000)
        _ = state.recordFetch(from: 3, fetchOffset: 110, brokerEpoch: -1, leaderLogEndOffset: 130, nowMs: 3_000)
        #expect(state.highWatermark == 110)
    }

    @Test func aRefusedChangeWaitsForTheImageWhichSettlesIt() {
        var state = Self.leader()
        state.markInFlight([1, 2], leaderLogEndOffset: 100)
        state.awaitImage(proposedAt: 7)
        #expect(state.inFlight?.awaitingImage == true)
        #expect(state.proposedShrink(leaderLogEndOffset: 100, nowMs: 1_000_000, maxLagMs: Self.lag) == nil)
        // An older or equal partition epoch settles nothing.
        let moved4b = state.update(partitionEpoch: 7, replicas: [1, 2, 3], isr: [1, 2, 3], nowMs: 2_000)
        #expect(!moved4b)
        #expect(state.inFlight != nil)
        let moved5b = state.update(partitionEpoch: 9, replicas: [1, 2, 3], isr: [1, 3], nowMs: 2_000)
        #expect(moved5b)
        #expect(state.inFlight == nil)
        #expect(state.isr == [1, 3])
        // The answer to the proposal made at 7, which the image overtook, leaves one made at 9 in flight.
        state.markInFlight([1], leaderLogEndOffset: 100)
        let stale = state.commit(isr: [1, 2], partitionEpoch: 9, proposedAt: 7, leaderLogEndOffset: 100, nowMs: 2_000)
        #expect(!stale)
        state.awaitImage(proposedAt: 7)
        #expect(state.inFlight?.proposedISR == [1])
        #expect(state.inFlight?.partitionEpoch == 9)
        #expect(state.inFlight?.awaitingImage == false)
        // A failed send is forgotten at once, so the next check proposes again.
        state.abandonInFlight(proposedAt: 9)
        #expect(state.inFlight == nil)
    }

    @Test func acksAllWaitsForTheHighWatermarkAndReportsAnISRThatShrankBelowTheMinimum() {
        var state = Self.leader(highWatermark: 80)
        #expect(state.acknowledgement(of: 100, minInSyncReplicas: 2) == nil)
        #expect(!state.isUnderMinISR(3))
        // min.insync.replicas above the replication factor counts as the replication factor (Kafka's effective
        // minimum).
        #expect(!state.isUnderMinISR(5))
        state.markInFlight([1], leaderLogEndOffset: 100)
        let moved6b = state.commit(isr: [1], partitionEpoch: 8, proposedAt: 7, leaderLogEndOffset: 100, nowMs: 2_000)
        #expect(moved6b)
        #expect(state.highWatermark == 100)
        #expect(state.isUnderMinISR(2))
        #expect(state.acknowledgement(of: 100, minInSyncReplicas: 2) == .notEnoughReplicasAfterAppend)
        #expect(state.acknowledgement(of: 100, minInSyncReplicas: 1) == ErrorCode.none)
    }

    @Test func aBrokerThatIsNotAReplicaHasNoStateAndChangesNothing() {
        var state = Self.leader()
        let before = state
        let moved4 = state.recordFetch(
            from: 9,
            fetchOffset: 100,
            brokerEpoch: 1,
            leaderLogEndOffset: 100,
            nowMs: 2_000
        )
        #expect(moved4 == nil)
        #expect(state == before)
    }
}
