import KafkaMessages
import KafkaRecords
import KafkaWire
import LogStorage
import NIOCore
import Replication
import Testing

/// The followers' decisions without a leader or a disk: truncation by leader epoch (Kafka's
/// `getOffsetTruncationState` cases), OFFSET_OUT_OF_RANGE, the offsets taken from an answer, the batches a follower
/// may append, the fetcher a partition goes to, version negotiation, and the client side of a fetch session.
@Suite struct ReplicaFetchDecisionsTests {
    // MARK: Truncation by leader epoch

    @Test func theSameEpochOnBothSidesTruncatesToWhereItEndsFirst() {
        // The leader's epoch 3 ended at 25, the follower wrote on to 30 in it: cut to 25.
        #expect(
            FollowerTruncation.step(
                leader: EpochEnd(epoch: 3, endOffset: 25),
                follower: EpochEnd(epoch: 3, endOffset: 30),
                logEndOffset: 30,
                highWatermark: 10
            ) == TruncationStep(offset: 25, isComplete: true)
        )
        // The follower's epoch 3 ends first (at 20, where its epoch 4 starts): KIP-279 keeps the leader's later
        // records of epoch 3 out of the follower's epoch-4 range by cutting at 20.
        #expect(
            FollowerTruncation.step(
                leader: EpochEnd(epoch: 3, endOffset: 25),
                follower: EpochEnd(epoch: 3, endOffset: 20),
                logEndOffset: 40,
                highWatermark: 10
            ) == TruncationStep(offset: 20, isComplete: true)
        )
        // The leader is ahead: nothing to cut (the step never passes the log end).
        #expect(
            FollowerTruncation.step(
                leader: EpochEnd(epoch: 3, endOffset: 90),
                follower: EpochEnd(epoch: 3, endOffset: 30),
                logEndOffset: 30,
                highWatermark: 30
            ) == TruncationStep(offset: 30, isComplete: true)
        )
    }

    @Test func anEpochTheFollowerLacksCutsToItsEarlierEpochAndAsksAgain() {
        // Follower epochs 0@0, 2@10, 5@20, end 30. The leader never had 5; asked for 5 it answers its largest
        // epoch below, 3, ending at 25. The follower has no 3: its largest below is 2, ending at 20.
        let first = FollowerTruncation.step(
            leader: EpochEnd(epoch: 3, endOffset: 25),
            follower: EpochEnd(epoch: 2, endOffset: 20),
            logEndOffset: 30,
            highWatermark: 5
        )
        #expect(first == TruncationStep(offset: 20, isComplete: false))
        // Asked again for 2 (its latest now), the leader says its epoch 2 ended at 15.
        let second = FollowerTruncation.step(
            leader: EpochEnd(epoch: 2, endOffset: 15),
            follower: EpochEnd(epoch: 2, endOffset: 20),
            logEndOffset: 20,
            highWatermark: 5
        )
        #expect(second == TruncationStep(offset: 15, isComplete: true))
    }

    @Test func undefinedAnswersAndLogsWithoutEpochsFallBackAsKafkaDoes() {
        // UNDEFINED_EPOCH_OFFSET: the high watermark.
        #expect(
            FollowerTruncation.step(leader: .undefined, follower: nil, logEndOffset: 50, highWatermark: 12)
                == TruncationStep(offset: 12, isComplete: true)
        )
        // An offset without an epoch (the old protocol): that offset, bounded by the log end.
        #expect(
            FollowerTruncation.step(
                leader: EpochEnd(epoch: -1, endOffset: 40),
                follower: nil,
                logEndOffset: 50,
                highWatermark: 12
            ) == TruncationStep(offset: 40, isComplete: true)
        )
        // An epoch below every one the follower tracks: the leader's offset.
        #expect(
            FollowerTruncation.step(
                leader: EpochEnd(epoch: 1, endOffset: 7),
                follower: nil,
                logEndOffset: 50,
                highWatermark: 12
            ) == TruncationStep(offset: 7, isComplete: true)
        )
        // No epochs at all: the high watermark; an empty log has nothing to cut.
        #expect(
            FollowerTruncation.withoutEpochs(logEndOffset: 50, highWatermark: 12)
                == TruncationStep(offset: 12, isComplete: true)
        )
        #expect(
            FollowerTruncation.withoutEpochs(logEndOffset: 0, highWatermark: 0)
                == TruncationStep(offset: 0, isComplete: true)
        )
    }

    @Test func theFollowerAsksForItsLatestEpochThatTheLeaderCanHave() {
        let entries = [EpochEntry(epoch: 1, startOffset: 0), EpochEntry(epoch: 4, startOffset: 10)]
        // As Kafka: the latest epoch, when the current leader's is at or above it.
        #expect(FollowerTruncation.epochToAsk(entries: entries, currentLeaderEpoch: 4) == 4)
        #expect(FollowerTruncation.epochToAsk(entries: entries, currentLeaderEpoch: 9) == 4)
        // Epoch 4 is above the leader's 3, so not on the leader: ask for 1, and the tail at 4 is cut.
        #expect(FollowerTruncation.epochToAsk(entries: entries, currentLeaderEpoch: 3) == 1)
        // Nothing at or below it, or no epochs: truncate without asking.
        #expect(FollowerTruncation.epochToAsk(entries: entries, currentLeaderEpoch: 0) == nil)
        #expect(FollowerTruncation.epochToAsk(entries: [], currentLeaderEpoch: 5) == nil)
    }

    /// The decision over a real epoch cache: a follower whose tail was written at an epoch the leader never had is
    /// cut back to where the leader's epoch ends, as the fetcher computes it (`PartitionLog.endOffset(forEpoch:)`
    /// for the leader's answer's epoch).
    @Test func aTailAtAnEpochTheLeaderNeverHadIsCutWhereTheLeadersEpochEnds() throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close() }
        let log = try fixture.logManager.getOrCreateLog(topic: "tail", partition: 0, config: LogConfig())
        _ = try log.appendAsLeader(TestBatches.make(count: 5), leaderEpoch: 1)
        _ = try log.appendAsLeader(TestBatches.make(count: 5), leaderEpoch: 1)
        _ = try log.appendAsLeader(TestBatches.make(count: 4), leaderEpoch: 7)
        let own = try log.withLog { (partitionLog) throws(StorageError) in partitionLog.endOffset(forEpoch: 1) }
        #expect(own.epoch == 1 && own.endOffset == 10)
        // The leader (epoch 1 still current there, 12 records) answers the follower's ask for epoch 1.
        let step = FollowerTruncation.step(
            leader: EpochEnd(epoch: 1, endOffset: 12),
            follower: EpochEnd(epoch: own.epoch, endOffset: own.endOffset),
            logEndOffset: log.logEndOffset,
            highWatermark: 0
        )
        #expect(step == TruncationStep(offset: 10, isComplete: true))
        try log.withLog { (partitionLog) throws(StorageError) in try partitionLog.truncate(to: step.offset) }
        #expect(log.logEndOffset == 10)
        #expect(
            try log.withLog { (partitionLog) throws(StorageError) in partitionLog.epochEntries.map(\.epoch) } == [1]
        )
    }

    // MARK: OFFSET_OUT_OF_RANGE

    @Test func outOfRangeRestartsBelowTheLeadersStartAndUsesEpochsWhenTheLeaderIsShorter() {
        #expect(
            OutOfRangeStep.after(leaderLogStartOffset: 100, leaderLogEndOffset: 200, logEndOffset: 40)
                == .restart(at: 100)
        )
        #expect(
            OutOfRangeStep.after(leaderLogStartOffset: 0, leaderLogEndOffset: 30, logEndOffset: 40) == .truncateByEpochs
        )
        #expect(
            OutOfRangeStep.after(leaderLogStartOffset: 10, leaderLogEndOffset: 50, logEndOffset: 40) == .retry(at: 40)
        )
    }

    // MARK: Offsets from an answer

    @Test func theHighWatermarkIsTheLeadersCappedAtTheLogEndAndTheLogStartOnlyMovesUp() {
        #expect(FollowerOffsets.highWatermark(leader: 500, logStartOffset: 0, logEndOffset: 120) == 120)
        #expect(FollowerOffsets.highWatermark(leader: 80, logStartOffset: 0, logEndOffset: 120) == 80)
        #expect(FollowerOffsets.highWatermark(leader: 3, logStartOffset: 10, logEndOffset: 120) == 10)
        #expect(FollowerOffsets.newLogStartOffset(leader: 50, current: 20, highWatermark: 80) == 50)
        #expect(FollowerOffsets.newLogStartOffset(leader: 10, current: 20, highWatermark: 80) == nil)
        #expect(FollowerOffsets.newLogStartOffset(leader: 90, current: 20, highWatermark: 80) == nil)
    }

    // MARK: Fetched batches

    static func batch(at baseOffset: Int64, count: Int, codec: CompressionCodec = .none) throws -> ByteBuffer {
        var batch = try RecordBatch(TestBatches.make(count: count, codec: codec))
        batch.baseOffset = baseOffset
        return batch.buffer
    }

    @Test func wholeIntactBatchesAreAppendedAndAPartialTailIsLeftOut() throws {
        var records = try Self.batch(at: 10, count: 3)
        var second = try Self.batch(at: 13, count: 2, codec: .gzip)
        records.writeBuffer(&second)
        let whole = records.readableBytes
        var third = try Self.batch(at: 15, count: 4)
        records.writeBytes(third.readBytes(length: 30)!)
        let checked = try FetchedBatches.check(records, fetchOffset: 10)
        #expect(checked.batchCount == 2)
        #expect(checked.firstOffset == 10 && checked.lastOffset == 14)
        #expect(checked.bytes.readableBytes == whole)
        #expect(try FetchedBatches.check(ByteBuffer(), fetchOffset: 10).batchCount == 0)
    }

    @Test func aCorruptBatchOrAnAnswerBelowTheFetchOffsetIsRefused() throws {
        var corrupt = try Self.batch(at: 10, count: 3)
        let last = corrupt.writerIndex - 1
        corrupt.setInteger(corrupt.getInteger(at: last, as: UInt8.self)! ^ 0xff, at: last)
        #expect(throws: FetchedBatches.Refusal.self) { try FetchedBatches.check(corrupt, fetchOffset: 10) }
        #expect(throws: FetchedBatches.Refusal.belowFetchOffset(batchLastOffset: 12, fetchOffset: 13)) {
            try FetchedBatches.check(Self.batch(at: 10, count: 3), fetchOffset: 13)
        }
        var backwards = try Self.batch(at: 10, count: 3)
        var again = try Self.batch(at: 11, count: 1)
        backwards.writeBuffer(&again)
        #expect(throws: FetchedBatches.Refusal.self) { try FetchedBatches.check(backwards, fetchOffset: 10) }
    }

    // MARK: Fetchers, versions, sessions

    @Test func partitionsGoToFetchersByKafkasHash() {
        // Java's "topic".hashCode() is 110546223; abs(31 * hash + partition) % 3 for partitions 0-5.
        let ids = (0..<6).map { replicaFetcherID(for: TopicPartition("topic", Int32($0)), fetchersPerLeader: 3) }
        #expect(ids == [1, 2, 0, 1, 2, 0])
        #expect(replicaFetcherID(for: TopicPartition("orders", 4), fetchersPerLeader: 1) == 0)
    }

    static func apiVersions(_ ranges: [(APIKey, ClosedRange<Int16>)]) -> [ApiVersionsResponse.ApiVersion] {
        ranges.map { .init(apiKey: $0.0.rawValue, minVersion: $0.1.lowerBound, maxVersion: $0.1.upperBound) }
    }

    @Test func theNewestVersionsBothEndsServeAreUsed() {
        // This broker today (Fetch 0-12, OffsetForLeaderEpoch 2-4, ListOffsets 0-7).
        #expect(
            LeaderAPIVersions.negotiate(
                Self.apiVersions([(.fetch, 0...12), (.offsetForLeaderEpoch, 2...4), (.listOffsets, 0...7)])
            ) == LeaderAPIVersions(fetch: 12, offsetForLeaderEpoch: 4, listOffsets: 7)
        )
        // Kafka 3.9.
        #expect(
            LeaderAPIVersions.negotiate(
                Self.apiVersions([(.fetch, 0...17), (.offsetForLeaderEpoch, 0...4), (.listOffsets, 0...9)])
            ) == LeaderAPIVersions(fetch: 17, offsetForLeaderEpoch: 4, listOffsets: 9)
        )
        // Without the current leader epoch in Fetch, or without OffsetForLeaderEpoch: no fetching.
        #expect(
            LeaderAPIVersions.negotiate(
                Self.apiVersions([(.fetch, 0...8), (.offsetForLeaderEpoch, 2...4), (.listOffsets, 0...7)])
            ) == nil
        )
        #expect(LeaderAPIVersions.negotiate(Self.apiVersions([(.fetch, 0...12), (.listOffsets, 0...7)])) == nil)
    }

    static func wanted(_ partition: Int32, offset: Int64, topic: String = "orders") -> PartitionFetchRequest {
        PartitionFetchRequest(
            topicPartition: TopicPartition(topic, partition),
            topicID: KafkaUUID(mostSignificantBits: 7, leastSignificantBits: 7),
            fetchOffset: offset,
            currentLeaderEpoch: 3,
            lastFetchedEpoch: 3,
            logStartOffset: 0,
            maxBytes: 1_048_576
        )
    }

    @Test func anIncrementalSessionSendsOnlyChangesAndForgottenPartitions() {
        var session = ReplicaFetchSession(usesSessions: true)
        let first = session.request(for: [Self.wanted(0, offset: 0), Self.wanted(1, offset: 0)])
        #expect(first.isFull && first.sessionID == 0 && first.sessionEpoch == 0 && first.partitions.count == 2)
        session.received(first, error: .none, sessionID: 42)
        // Partition 0 moved on, 1 did not, 2 is new.
        let second = session.request(for: [
            Self.wanted(0, offset: 5), Self.wanted(1, offset: 0), Self.wanted(2, offset: 9),
        ])
        #expect(!second.isFull && second.sessionID == 42 && second.sessionEpoch == 1)
        #expect(second.partitions.map(\.topicPartition.partition) == [0, 2])
        #expect(second.forgotten.isEmpty)
        session.received(second, error: .none, sessionID: 42)
        // Partition 1 paused: forgotten; an answer for 0 belongs to offset 5.
        let third = session.request(for: [Self.wanted(0, offset: 5), Self.wanted(2, offset: 9)])
        #expect(third.sessionEpoch == 2 && third.partitions.isEmpty)
        #expect(third.forgotten.map(\.topicPartition.partition) == [1])
        #expect(session.sessionPartitions[TopicPartition("orders", 0)]?.fetchOffset == 5)
        // A session error: the next fetch is full, closing session 42; once unknown, a new one is asked for.
        session.received(third, error: .invalidFetchSessionEpoch, sessionID: 0)
        let fourth = session.request(for: [Self.wanted(0, offset: 5)])
        #expect(fourth.isFull && fourth.sessionID == 42 && fourth.sessionEpoch == 0 && fourth.partitions.count == 1)
        session.received(fourth, error: .fetchSessionIDNotFound, sessionID: 0)
        let fifth = session.request(for: [Self.wanted(0, offset: 5)])
        #expect(fifth.isFull && fifth.sessionID == 0 && fifth.sessionEpoch == 0)
        // A leader that keeps no session (id 0 to a full fetch): full fetches from then on.
        session.received(fifth, error: .none, sessionID: 0)
        #expect(session.request(for: [Self.wanted(0, offset: 6)]).isFull)
    }

    @Test func aLostConnectionOrAnOldLeaderMeansFullFetches() {
        var session = ReplicaFetchSession(usesSessions: true)
        let first = session.request(for: [Self.wanted(0, offset: 0)])
        session.received(first, error: .none, sessionID: 9)
        _ = session.request(for: [Self.wanted(0, offset: 3)])
        session.failed()
        let next = session.request(for: [Self.wanted(0, offset: 3)])
        #expect(next.isFull && next.sessionID == 9 && next.sessionEpoch == 0)

        var sessionless = ReplicaFetchSession(usesSessions: false)
        let request = sessionless.request(for: [Self.wanted(0, offset: 0)])
        #expect(request.isFull && request.sessionEpoch == -1)
    }

    @Test func theRequestCarriesTheReplicaIDOrReplicaStateByVersion() {
        var session = ReplicaFetchSession(usesSessions: true)
        let parts = session.request(for: [
            Self.wanted(0, offset: 4), Self.wanted(1, offset: 8), Self.wanted(0, offset: 2, topic: "logs"),
        ])
        let configuration = ReplicaFetcherConfiguration(brokerID: 2)
        let v12 = parts.fetchRequest(version: 12, configuration: configuration, brokerEpoch: 77)
        #expect(v12.replicaID == 2 && v12.replicaState == FetchRequest.ReplicaState())
        #expect(v12.maxWaitMs == 500 && v12.minBytes == 1 && v12.maxBytes == 10_485_760 && v12.isolationLevel == 0)
        #expect(v12.topics.map(\.topic) == ["orders", "logs"])
        #expect(v12.topics[0].partitions.map(\.fetchOffset) == [4, 8])
        #expect(
            v12.topics[0].partitions[0].currentLeaderEpoch == 3 && v12.topics[0].partitions[0].lastFetchedEpoch == 3
        )
        #expect(v12.topics[0].partitions[0].partitionMaxBytes == 1_048_576)
        let v15 = parts.fetchRequest(version: 15, configuration: configuration, brokerEpoch: 77)
        #expect(v15.replicaID == -1 && v15.replicaState == FetchRequest.ReplicaState(replicaID: 2, replicaEpoch: 77))
    }
}
