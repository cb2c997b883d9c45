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
/// From v7 fetches may use incremental sessions (KIP-227, `FetchSessionCache`): a full fetch with epoch 0 is
/// answered with a new session id (or 0 when the cache has no room), and an incremental fetch reads the session's
/// partitions and answers only those with something new.
///
/// Records are read into memory (pread on the disk pool) so the generated encoder can write them; sending the file
/// ranges with sendfile (NIO `FileRegion`) comes later.
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct FetchHandler: KafkaHandler {
    public typealias Request = FetchRequest

    let replicas: ReplicaManager
    let sessions: FetchSessionCache

    public init(replicas: ReplicaManager, sessions: FetchSessionCache) {
        self.replicas = replicas
        self.sessions = sessions
    }

    public var versions: ClosedRange<Int16> { 4...12 }

    public func handle(_ request: FetchRequest, context: RequestContext) async -> FetchResponse {
        let session = self.sessions.context(for: request, version: context.apiVersion)
        let reads: [PartitionRead]
        switch session {
        case .error(let error):
            return FetchResponse(errorCode: error.rawValue, sessionID: 0)
        case .full:
            reads = FetchSessionCache.reads(of: request, version: context.apiVersion)
        case .incremental(_, let sessionReads):
            reads = sessionReads
        }
        let results = await self.read(reads, request: request)
        let records = await self.load(results)

        var sessionID: Int32 = 0
        var included = [Bool](repeating: true, count: reads.count)
        switch session {
        case .full(createSession: true):
            sessionID = self.sessions.createSession(reads, results: results)
        case .incremental(let id, _):
            sessionID = id
            included = self.sessions.complete(sessionID: id, reads: reads, results: results)
        case .full, .error:
            break
        }

        // One entry per run of partitions of the same topic, in read order, as Kafka groups them.
        var topics: [FetchResponse.FetchableTopicResponse] = []
        for index in reads.indices where included[index] {
            let read = reads[index]
            let result = results[index]
            var error = result.error
            var bytes = records[index]
            if error == .none, bytes == nil, result.range != nil { error = .kafkaStorageError }
            if error != .none { bytes = nil }
            let failed = error != .none
            let partition = FetchResponse.PartitionData(
                partitionIndex: read.topicPartition.partition,
                errorCode: error.rawValue,
                highWatermark: failed ? -1 : result.highWatermark,
                lastStableOffset: failed ? -1 : result.lastStableOffset,
                logStartOffset: failed ? -1 : result.logStartOffset,
                abortedTransactions: request.isolationLevel == 1 ? [] : nil,
                records: bytes ?? ByteBuffer()
            )
            if topics.last?.topic == read.topicPartition.topic {
                topics[topics.count - 1].partitions.append(partition)
            } else {
                topics.append(.init(topic: read.topicPartition.topic, partitions: [partition]))
            }
        }
        return FetchResponse(errorCode: 0, sessionID: sessionID, responses: topics)
    }

    /// Reads `reads`, and if fewer than min.bytes are there and max.wait.ms > 0, parks until appends bring them or
    /// the wait ends, then reads again.
    private func read(_ reads: [PartitionRead], request: FetchRequest) async -> [PartitionReadResult] {
        let maxBytes = Int(max(0, request.maxBytes))
        let results = await self.replicas.read(reads, maxBytes: maxBytes)
        let available = results.reduce(0) { $0 + $1.byteCount }
        let minBytes = Int(request.minBytes)
        guard request.maxWaitMs > 0, !reads.isEmpty, available < minBytes, results.allSatisfy({ $0.error == .none })
        else { return results }
        await self.park(reads, results: results, needed: Int64(minBytes - available), maxWaitMs: request.maxWaitMs)
        return await self.replicas.read(reads, maxBytes: maxBytes)
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
