import KafkaRecords
import NIOCore

/// Test batches made with KafkaRecords' builder.
enum Batches {
    /// One batch of `count` records with timestamps `firstTimestamp`, +1, ...; values of `valueSize` bytes.
    static func make(
        count: Int,
        firstTimestamp: Int64 = 1_000,
        timestamps: [Int64]? = nil,
        valueSize: Int = 10,
        codec: CompressionCodec = .none,
        baseOffset: Int64 = 0,
        leaderEpoch: Int32 = -1
    ) -> ByteBuffer {
        var builder = RecordBatchBuilder(codec: codec)
        let value = ByteBuffer(repeating: UInt8(count & 0x7F), count: valueSize)
        for index in 0..<count {
            let timestamp = timestamps?[index] ?? firstTimestamp + Int64(index)
            builder.append(timestamp: timestamp, key: nil, value: value)
        }
        return try! builder.build(
            baseOffset: baseOffset, partitionLeaderEpoch: leaderEpoch, compression: CompressionContext()
        ).buffer
    }

    /// The batches in `bytes` as (base offset, last offset, leader epoch, size).
    static func headers(_ bytes: ByteBuffer) -> [(base: Int64, last: Int64, epoch: Int32, size: Int)] {
        var splitter = RecordBatchSplitter(bytes)
        var result: [(Int64, Int64, Int32, Int)] = []
        while let batch = try! splitter.next() {
            precondition(batch.isCRCValid, "a stored batch has a bad CRC")
            result.append((batch.baseOffset, batch.lastOffset, batch.partitionLeaderEpoch, batch.sizeInBytes))
        }
        return result
    }

    static func concatenate(_ buffers: [ByteBuffer]) -> ByteBuffer {
        var out = ByteBuffer()
        for var buffer in buffers { out.writeBuffer(&buffer) }
        return out
    }
}

/// Fails the test unless the batch's CRC matches its bytes.
func expectValidCRC(_ batch: RecordBatch) -> Bool { batch.isCRCValid }
