import KafkaRecords
import NIOCore
import Testing

/// The log cleaner's batch rewrite, as Kafka's `MemoryRecords.filterTo` does it: offsets, sequences, producer fields
/// and the codec survive; only the removed records go.
@Suite struct RecordBatchFilterTests {
    static func batch(codec: CompressionCodec, timestampType: TimestampType = .createTime) throws -> RecordBatch {
        var builder = RecordBatchBuilder(
            codec: codec,
            producerID: 42,
            producerEpoch: 3,
            baseSequence: 100,
            timestampType: timestampType
        )
        for index in 0..<6 {
            builder.append(
                timestamp: 1_000 + Int64(index),
                key: ByteBuffer(string: "key-\(index % 3)"),
                value: index == 5 ? nil : ByteBuffer(string: "value-\(index)"),
                headers: [RecordHeader(key: "h", value: ByteBuffer(string: "\(index)"))]
            )
        }
        return try builder.build(baseOffset: 500, partitionLeaderEpoch: 7, compression: CompressionContext())
    }

    static func records(_ batch: RecordBatch) throws -> [Record] {
        var iterator = try batch.makeRecordIterator(compression: CompressionContext(), maxDecompressedBytes: 1 << 20)
        return try iterator.collect()
    }

    @Test(arguments: CompressionCodec.allCases)
    func aRewrittenBatchKeepsOffsetsSequencesAndCodec(codec: CompressionCodec) throws {
        let original = try Self.batch(codec: codec)
        let retained = try original.retainingRecords(compression: CompressionContext(), maxDecompressedBytes: 1 << 20) {
            $0.offset == 501 || $0.offset == 503
        }
        guard case .some(let rewritten) = retained else {
            Issue.record("expected a rewritten batch, got \(retained)")
            return
        }
        #expect(rewritten.baseOffset == 500 && rewritten.lastOffset == 505, "the last offset is kept")
        #expect(rewritten.producerID == 42 && rewritten.producerEpoch == 3 && rewritten.baseSequence == 100)
        #expect(rewritten.partitionLeaderEpoch == 7)
        #expect(rewritten.attributes.compressionCodec == codec)
        #expect(rewritten.recordCount == 2)
        #expect(rewritten.computeCRC() == rewritten.crc)
        let kept = try Self.records(rewritten)
        let before = try Self.records(original)
        #expect(kept == [before[1], before[3]], "offsets, timestamps, keys, values and headers unchanged")
        #expect(rewritten.sizeInBytes < original.sizeInBytes || codec != .none)
    }

    @Test func allOrNothing() throws {
        let original = try Self.batch(codec: .lz4)
        let context = CompressionContext()
        guard case .whole = try original.retainingRecords(compression: context, maxDecompressedBytes: 1 << 20, where: { _ in true })
        else {
            Issue.record("keeping every record must keep the batch as it is")
            return
        }
        guard case .none = try original.retainingRecords(compression: context, maxDecompressedBytes: 1 << 20, where: { _ in false })
        else {
            Issue.record("keeping no record must say so")
            return
        }
    }

    @Test func anEmptiedBatchKeepsTheProducersState() throws {
        let original = try Self.batch(codec: .zstd, timestampType: .logAppendTime)
        let empty = try original.emptied()
        #expect(empty.recordCount == 0 && empty.baseOffset == 500 && empty.lastOffset == 505)
        #expect(empty.producerID == 42 && empty.producerEpoch == 3 && empty.baseSequence == 100)
        #expect(empty.maxTimestamp == original.maxTimestamp)
        #expect(empty.attributes.timestampType == .logAppendTime)
        #expect(empty.computeCRC() == empty.crc)
        #expect(try Self.records(empty).isEmpty)
    }

    @Test func aLogAppendTimeBatchKeepsItsMaxTimestamp() throws {
        let original = try Self.batch(codec: .none, timestampType: .logAppendTime)
        guard case .some(let rewritten) = try original.retainingRecords(
            compression: CompressionContext(),
            maxDecompressedBytes: 1 << 20,
            where: { $0.offset == 500 }
        ) else {
            Issue.record("expected a rewritten batch")
            return
        }
        #expect(rewritten.maxTimestamp == original.maxTimestamp)
        #expect(rewritten.attributes.timestampType == .logAppendTime)
    }
}
