import DelayedOperations
import KafkaMessages
import KafkaWire
import LogStorage
import NIOCore
import Replication

/// Fetch (key 1), v0–12 (v12 is the last without topic ids, CLIENTS.md §1).
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
/// On a connection the records are not read: `respond` answers with frame parts in which each partition's records
/// are a `FileRegion` of its segment file, sent by the kernel with sendfile (`FetchResponseWriter`). `handle` (the
/// generated response, for tests and in-process callers) reads them into memory with pread on the disk pool.
///
/// v0–3 clients read message formats v0 and v1 only: after the same reads and long poll, their partitions' batches
/// are read into memory and converted down (`FetchHandler+Legacy.swift`); they never take sendfile.
///
/// A Fetch with a replica id (v0–14; `ReplicaState` from v15) comes from a follower broker: it reads up to the log
/// end instead of the high watermark, and its fetch offset is recorded as that follower's log end
/// (`ReplicaManager.read`). A fetch with a last fetched epoch whose epoch ends below its fetch offset here is
/// answered with the diverging epoch (KIP-595) at once. Kafka sends the current-leader hint of a refused partition
/// only from v16, so none is sent here.
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

    public var versions: ClosedRange<Int16> { 0...12 }

    public func handle(_ request: FetchRequest, context: RequestContext) async -> FetchResponse {
        if context.apiVersion < 4 { return await self.legacyResponse(request, context: context) }
        let (response, ranges) = await self.answer(request, context: context)
        return await self.loaded(response, ranges: ranges)
    }

    public func respond(to request: FetchRequest, context: RequestContext) async -> HandlerResult<FetchResponse> {
        if context.apiVersion < 4 { return .response(await self.legacyResponse(request, context: context)) }
        let (response, ranges) = await self.answer(request, context: context)
        do {
            return .responseParts(
                try FetchResponseWriter.parts(
                    response,
                    ranges: ranges,
                    version: context.apiVersion,
                    correlationID: context.correlationID
                )
            )
        } catch {
            // No descriptor to spare: read the records instead.
            return .response(await self.loaded(response, ranges: ranges))
        }
    }

    /// The response with each partition's records left out where the matching entry of the returned ranges (one per
    /// partition, in encoding order) holds them.
    func answer(_ request: FetchRequest, context: RequestContext) async -> (FetchResponse, [FileRange?]) {
        let session = self.sessions.context(for: request, version: context.apiVersion)
        let reads: [PartitionRead]
        switch session {
        case .error(let error):
            return (FetchResponse(errorCode: error.rawValue, sessionID: 0), [])
        case .full:
            reads = FetchSessionCache.reads(of: request, version: context.apiVersion)
        case .incremental(_, let sessionReads):
            reads = sessionReads
        }
        let origin = FetchOrigin(
            replicaID: request.replicaID,
            replicaStateID: request.replicaState.replicaID,
            replicaEpoch: request.replicaState.replicaEpoch,
            version: context.apiVersion
        )
        let results = await self.read(reads, request: request, origin: origin)

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
        var ranges: [FileRange?] = []
        for index in reads.indices where included[index] {
            let read = reads[index]
            let result = results[index]
            let error = result.error
            let failed = error != .none
            ranges.append(failed ? nil : result.range)
            var partition = FetchResponse.PartitionData(
                partitionIndex: read.topicPartition.partition,
                errorCode: error.rawValue,
                highWatermark: failed ? -1 : result.highWatermark,
                lastStableOffset: failed ? -1 : result.lastStableOffset,
                logStartOffset: failed ? -1 : result.logStartOffset,
                abortedTransactions: request.isolationLevel == 1 ? [] : nil,
                records: ByteBuffer()
            )
            if let diverging = result.divergingEpoch, !failed {
                partition.divergingEpoch = .init(epoch: diverging.epoch, endOffset: diverging.endOffset)
            }
            if topics.last?.topic == read.topicPartition.topic {
                topics[topics.count - 1].partitions.append(partition)
            } else {
                topics.append(.init(topic: read.topicPartition.topic, partitions: [partition]))
            }
        }
        return (FetchResponse(errorCode: 0, sessionID: sessionID, responses: topics), ranges)
    }

    /// `response` with the records of `ranges` read in; a partition whose range cannot be read answers
    /// KAFKA_STORAGE_ERROR.
    func loaded(_ response: FetchResponse, ranges: [FileRange?]) async -> FetchResponse {
        let records = await self.load(ranges)
        var response = response
        var slot = 0
        for topic in response.responses.indices {
            for partition in response.responses[topic].partitions.indices {
                defer { slot += 1 }
                guard slot < ranges.count, ranges[slot] != nil else { continue }
                if let bytes = records[slot] {
                    response.responses[topic].partitions[partition].records = bytes
                } else {
                    response.responses[topic].partitions[partition].errorCode = ErrorCode.kafkaStorageError.rawValue
                    response.responses[topic].partitions[partition].highWatermark = -1
                    response.responses[topic].partitions[partition].lastStableOffset = -1
                    response.responses[topic].partitions[partition].logStartOffset = -1
                }
            }
        }
        return response
    }

    /// Reads `reads`, and if fewer than min.bytes are there and max.wait.ms > 0, parks until appends bring them or
    /// the wait ends, then reads again.
    private func read(
        _ reads: [PartitionRead],
        request: FetchRequest,
        origin: FetchOrigin
    ) async -> [PartitionReadResult] {
        let maxBytes = Int(max(0, request.maxBytes))
        let results = await self.replicas.read(reads, maxBytes: maxBytes, origin: origin)
        let available = results.reduce(0) { $0 + $1.byteCount }
        let minBytes = Int(request.minBytes)
        guard request.maxWaitMs > 0, !reads.isEmpty, available < minBytes,
            results.allSatisfy({ $0.error == .none && $0.divergingEpoch == nil })
        else { return results }
        await self.park(
            reads,
            results: results,
            needed: Int64(minBytes - available),
            maxWaitMs: request.maxWaitMs,
            committedOnly: !origin.isFollower
        )
        return await self.replicas.read(reads, maxBytes: maxBytes, origin: origin)
    }

    /// Waits until `needed` more bytes arrived in the fetched partitions, or `maxWaitMs`: appended ones for a
    /// follower, committed ones (below the high watermark) for a consumer (`committedOnly`). The condition reads only
    /// counters (no disk), so the appending task, or the one that moved the high watermark, can check it.
    private func park(
        _ reads: [PartitionRead],
        results: [PartitionReadResult],
        needed: Int64,
        maxWaitMs: Int32,
        committedOnly: Bool
    ) async {
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
            for (partition, before) in baseline {
                grown += (committedOnly ? partition.bytesCommitted : partition.bytesAppended) - before
            }
            return grown >= needed
        }
    }

    /// The bytes of each file range, read on the disk pool; nil where there is no range or reading failed.
    private func load(_ ranges: [FileRange?]) async -> [ByteBuffer?] {
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
