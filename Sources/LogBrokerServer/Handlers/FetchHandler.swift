import KafkaMessages
import KafkaWire
import LogStorage
import NIOCore
import Replication

/// Fetch (key 1), v4–12 (v12 is the last without topic ids, CLIENTS.md §1; below v4 needs message format v0/v1).
///
/// Reads whole batches for each partition with `ReplicaManager.read` (Kafka's max.bytes and partition max bytes,
/// with at least one batch from the first partition that has data). If fewer than min.bytes are available and
/// max.wait.ms > 0, the request parks in the replica manager's delayed-fetch queue until appends to its partitions
/// bring enough bytes or max.wait.ms passes, then reads again, as Kafka's `DelayedFetch` does. A fetch at the high
/// watermark therefore waits and returns empty; OFFSET_OUT_OF_RANGE is only below the log start or past the log end.
/// An error on any partition answers at once. Partitions carry the log start offset, high watermark and last stable
/// offset (= high watermark without transactions); on error those are -1, as Kafka sends them.
///
/// Fetch sessions (KIP-227) are not kept yet: every full request (session epoch 0 or -1) is answered with session
/// id 0, which tells the client that no session was created, and it goes on sending full requests (legal, and what
/// Kafka does when its session cache is full). An incremental request (epoch > 0) cannot name a session this
/// broker created: FETCH_SESSION_ID_NOT_FOUND, as Kafka answers for an unknown session.
///
/// Records are read into memory (pread on the disk pool) so the generated encoder can write them; sending the file
/// ranges with sendfile (NIO `FileRegion`) comes later.
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct FetchHandler: KafkaHandler {
    public typealias Request = FetchRequest

    let replicas: ReplicaManager

    public init(replicas: ReplicaManager) {
        self.replicas = replicas
    }

    public var versions: ClosedRange<Int16> { 4...12 }

    public func handle(_ request: FetchRequest, context: RequestContext) async -> FetchResponse {
        if context.apiVersion >= 7, request.sessionEpoch != 0, request.sessionEpoch != -1 {
            return FetchResponse(errorCode: ErrorCode.fetchSessionIDNotFound.rawValue, sessionID: 0)
        }
        var reads: [PartitionRead] = []
        for topic in request.topics {
            for partition in topic.partitions {
                reads.append(
                    PartitionRead(
                        topicPartition: TopicPartition(topic.topic, partition.partition),
                        fetchOffset: partition.fetchOffset,
                        maxBytes: Int(max(0, partition.partitionMaxBytes)),
                        currentLeaderEpoch: context.apiVersion >= 9 ? partition.currentLeaderEpoch : -1
                    )
                )
            }
        }
        let maxBytes = Int(max(0, request.maxBytes))
        var results = await self.replicas.read(reads, maxBytes: maxBytes)
        let available = results.reduce(0) { $0 + $1.byteCount }
        let minBytes = Int(request.minBytes)
        if request.maxWaitMs > 0, !reads.isEmpty, available < minBytes, results.allSatisfy({ $0.error == .none }) {
            await self.park(reads, results: results, needed: Int64(minBytes - available), maxWaitMs: request.maxWaitMs)
            results = await self.replicas.read(reads, maxBytes: maxBytes)
        }
        let records = await self.load(results)

        var index = 0
        var topics: [FetchResponse.FetchableTopicResponse] = []
        topics.reserveCapacity(request.topics.count)
        for topic in request.topics {
            var partitions: [FetchResponse.PartitionData] = []
            partitions.reserveCapacity(topic.partitions.count)
            for partition in topic.partitions {
                let result = results[index]
                var error = result.error
                var bytes = records[index]
                if error == .none, bytes == nil, result.range != nil { error = .kafkaStorageError }
                if error != .none { bytes = nil }
                let failed = error != .none
                partitions.append(
                    .init(
                        partitionIndex: partition.partition,
                        errorCode: error.rawValue,
                        highWatermark: failed ? -1 : result.highWatermark,
                        lastStableOffset: failed ? -1 : result.lastStableOffset,
                        logStartOffset: failed ? -1 : result.logStartOffset,
                        abortedTransactions: request.isolationLevel == 1 ? [] : nil,
                        records: bytes ?? ByteBuffer()
                    )
                )
                index += 1
            }
            topics.append(.init(topic: topic.topic, partitions: partitions))
        }
        return FetchResponse(errorCode: 0, sessionID: 0, responses: topics)
    }

    /// Waits until `needed` more bytes were appended to the fetched partitions, or `maxWaitMs`. The condition reads
    /// only counters (no disk), so the appending task can check it.
    private func park(_ reads: [PartitionRead], results: [PartitionReadResult], needed: Int64, maxWaitMs: Int32) async {
        var watched: [(Partition, Int64)] = []
        var keys: [TopicPartition] = []
        for (read, result) in zip(reads, results) {
            guard let partition = self.replicas.partition(read.topicPartition), !keys.contains(read.topicPartition)
            else { continue }
            keys.append(read.topicPartition)
            watched.append((partition, result.bytesAppended))
        }
        let baseline = watched
        _ = await self.replicas.delayedFetches.wait(on: keys, timeout: .milliseconds(Int64(maxWaitMs))) {
            var grown: Int64 = 0
            for (partition, before) in baseline { grown += partition.bytesAppended - before }
            return grown >= needed
        }
    }

    /// The bytes of each result's file range, read on the disk pool; nil where there is no range or reading failed.
    private func load(_ results: [PartitionReadResult]) async -> [ByteBuffer?] {
        let ranges = results.map(\.range)
        guard ranges.contains(where: { $0 != nil }) else { return ranges.map { _ in nil } }
        do {
            return try await self.replicas.ioPool.run {
                ranges.map { range in
                    guard let range else { return nil }
                    return try? range.readBuffer()
                }
            }
        } catch {
            return ranges.map { _ in nil }
        }
    }
}
