import NIOCore

/// What a filter keeps of one batch.
public enum RetainedRecords {
    /// Every record: the batch stays as it is, byte for byte.
    case whole
    /// Some records, rewritten into one batch (see `RecordBatch.retainingRecords`).
    case some(RecordBatch)
    /// No record.
    case none
}

extension RecordBatch {
    /// The records `keep` accepts, as Kafka's `MemoryRecords.filterTo` rewrites a batch for the log cleaner: the new
    /// batch keeps the base offset and the last offset (so the producer's last sequence is unchanged), every
    /// record's offset and timestamp, the producer id, epoch and base sequence, the transactional and control flags,
    /// the timestamp type (a LogAppendTime batch keeps its max timestamp), the partition leader epoch, and the codec.
    /// - Throws: a decompression or record-structure error.
    public func retainingRecords(
        compression: CompressionContext,
        maxDecompressedBytes: Int,
        where keep: (Record) -> Bool
    ) throws(RecordBatchError) -> RetainedRecords {
        var iterator = try self.makeRecordIterator(compression: compression, maxDecompressedBytes: maxDecompressedBytes)
        var kept: [Record] = []
        var total = 0
        while let record = try iterator.next() {
            total += 1
            if keep(record) { kept.append(record) }
        }
        if kept.count == total { return .whole }
        if kept.isEmpty { return .none }
        let attributes = self.attributes
        var builder = RecordBatchBuilder(
            codec: attributes.compressionCodec ?? .none,
            producerID: self.producerID,
            producerEpoch: self.producerEpoch,
            baseSequence: self.baseSequence,
            isTransactional: attributes.isTransactional,
            isControl: attributes.isControl,
            timestampType: attributes.timestampType
        )
        for record in kept {
            let offsetDelta = Int32(truncatingIfNeeded: record.offset - self.baseOffset)
            Self.withBytes(record.key) { key in
                Self.withBytes(record.value) { value in
                    builder.append(
                        offsetDelta: offsetDelta,
                        timestamp: record.timestamp,
                        key: key,
                        value: value,
                        headers: record.headers
                    )
                }
            }
        }
        builder.lastOffsetDeltaOverride = self.lastOffsetDelta
        if attributes.timestampType == .logAppendTime { builder.maxTimestampOverride = self.maxTimestamp }
        return .some(
            try builder.build(
                baseOffset: self.baseOffset,
                partitionLeaderEpoch: self.partitionLeaderEpoch,
                compression: compression
            )
        )
    }

    /// A batch with no records that keeps this one's offsets and producer fields (Kafka's `writeEmptyHeader`): what
    /// the cleaner leaves of a producer's last batch when every record goes, so the producer's state survives.
    public func emptied() throws(RecordBatchError) -> RecordBatch {
        let attributes = self.attributes
        var builder = RecordBatchBuilder(
            producerID: self.producerID,
            producerEpoch: self.producerEpoch,
            baseSequence: self.baseSequence,
            isTransactional: attributes.isTransactional,
            isControl: attributes.isControl,
            timestampType: attributes.timestampType
        )
        builder.lastOffsetDeltaOverride = self.lastOffsetDelta
        builder.maxTimestampOverride = self.maxTimestamp
        return try builder.build(baseOffset: self.baseOffset, partitionLeaderEpoch: self.partitionLeaderEpoch)
    }

    private static func withBytes<R>(_ buffer: ByteBuffer?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        guard let buffer else { return body(nil) }
        return buffer.withUnsafeReadableBytes { body($0) }
    }
}
