import KafkaMessages
import KafkaRecords
import KafkaWire
import LogStorage
import Logging
import NIOCore
import NIOPosix
import Replication

extension FetchHandler {
    /// Fetch v0–3, for clients that read message format v0 (Fetch v0–1) or v1 (v2–3), as Kafka 3.x served them:
    /// the same reads, limits and long poll as v4+ (min.bytes counts the stored bytes, as Kafka's `DelayedFetch`
    /// does), then each partition's batches are read into memory and converted down by `LegacyMessageSetWriter`
    /// (starting at the partition's fetch offset; the first converted batch whole, then whole messages up to the
    /// size of the stored batches read).
    ///
    /// Kafka's per-partition answers: a zstd batch first in line answers UNSUPPORTED_COMPRESSION_TYPE with offsets
    /// -1 (`FetchResponse.partitionResponse`); KAFKA_STORAGE_ERROR becomes NOT_LEADER_OR_FOLLOWER, which clients
    /// this old know (`maybeDownConvertStorageError`). A batch that cannot be converted (damaged on disk) answers
    /// CORRUPT_MESSAGE. Kafka also sends a 12-byte stub when a partition has nothing to send; the records are empty
    /// here. A topic with `message.downconversion.enable=false` answers consumers UNSUPPORTED_VERSION, as Kafka 3.x
    /// does.
    func legacyResponse(_ request: FetchRequest, context: RequestContext) async -> FetchResponse {
        let (unconverted, ranges) = await self.answer(request, context: context)
        var response = await self.loaded(unconverted, ranges: ranges)
        // Fetch v0–3 have no sessions: the response holds every requested partition, in request order.
        let reads = FetchSessionCache.reads(of: request, version: context.apiVersion)
        let magic: Int8 = context.apiVersion <= 1 ? 0 : 1
        // What to convert: (topic index, partition index, records, fetch offset).
        var work: [(Int, Int, ByteBuffer, Int64)] = []
        var slot = 0
        for topic in response.responses.indices {
            for index in response.responses[topic].partitions.indices {
                defer { slot += 1 }
                var partition = response.responses[topic].partitions[index]
                if partition.errorCode == ErrorCode.kafkaStorageError.rawValue {
                    partition.errorCode = ErrorCode.notLeaderOrFollower.rawValue
                }
                if slot < reads.count, request.replicaID < 0,
                    self.replicas.partition(reads[slot].topicPartition)?.log.config.downConversionEnabled == false
                {
                    partition = Self.failed(partition.partitionIndex, .unsupportedVersion)
                } else if let records = partition.records, records.readableBytes > 0, slot < reads.count {
                    work.append((topic, index, records, reads[slot].fetchOffset))
                }
                response.responses[topic].partitions[index] = partition
            }
        }
        guard !work.isEmpty else { return response }
        // Converting (recompressing a gzip batch costs ~70 ms a megabyte) runs on NIO's blocking pool, not on the
        // connection's event loop, which serves other connections too.
        let maxDecompressedBytes = self.replicas.configuration.maxDecompressedBytes
        let converted: [Result<LegacyDownConversion, any Error>]
        do {
            converted = try await NIOThreadPool.singleton.runIfActive { [work] in
                var writer = LegacyMessageSetWriter(magic: magic, maxDecompressedBytes: maxDecompressedBytes)
                return work.map { _, _, records, fetchOffset in
                    Result {
                        try writer.downConvert(records, fetchOffset: fetchOffset, maxBytes: records.readableBytes)
                    }
                }
            }
        } catch {
            converted = work.map { _ in .failure(error) }
        }
        for ((topic, index, _, _), result) in zip(work, converted) {
            let partitionIndex = response.responses[topic].partitions[index].partitionIndex
            switch result {
            case .success(.messages(let messages)):
                response.responses[topic].partitions[index].records = messages
            case .success(.unsupportedCompression):
                response.responses[topic].partitions[index] = Self.failed(partitionIndex, .unsupportedCompressionType)
            case .failure(let error):
                context.logger.warning(
                    "cannot convert fetched batches to message format v\(magic)",
                    metadata: [
                        "topic": "\(response.responses[topic].topic)", "partition": "\(partitionIndex)",
                        "error": "\(error)",
                    ]
                )
                response.responses[topic].partitions[index] = Self.failed(partitionIndex, .corruptMessage)
            }
        }
        return response
    }

    /// A partition's answer with `error`, offsets -1 and no records.
    private static func failed(_ partitionIndex: Int32, _ error: ErrorCode) -> FetchResponse.PartitionData {
        FetchResponse.PartitionData(
            partitionIndex: partitionIndex,
            errorCode: error.rawValue,
            highWatermark: -1,
            lastStableOffset: -1,
            logStartOffset: -1,
            records: ByteBuffer()
        )
    }
}
