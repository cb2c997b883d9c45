import KafkaMessages
import KafkaRecords
import KafkaWire
import LogStorage
import Logging
import NIOCore
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
        var writer = LegacyMessageSetWriter(
            magic: context.apiVersion <= 1 ? 0 : 1,
            maxDecompressedBytes: self.replicas.configuration.maxDecompressedBytes
        )
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
                    response.responses[topic].partitions[index] = Self.failed(
                        partition.partitionIndex,
                        .unsupportedVersion
                    )
                    continue
                }
                if let records = partition.records, records.readableBytes > 0, slot < reads.count {
                    do {
                        let conversion = try writer.downConvert(
                            records,
                            fetchOffset: reads[slot].fetchOffset,
                            maxBytes: records.readableBytes
                        )
                        switch conversion {
                        case .messages(let messages):
                            partition.records = messages
                        case .unsupportedCompression:
                            partition = Self.failed(partition.partitionIndex, .unsupportedCompressionType)
                        }
                    } catch {
                        context.logger.warning(
                            "cannot convert fetched batches to message format v\(writer.magic)",
                            metadata: [
                                "topic": "\(response.responses[topic].topic)",
                                "partition": "\(partition.partitionIndex)", "error": "\(error)",
                            ]
                        )
                        partition = Self.failed(partition.partitionIndex, .corruptMessage)
                    }
                }
                response.responses[topic].partitions[index] = partition
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
