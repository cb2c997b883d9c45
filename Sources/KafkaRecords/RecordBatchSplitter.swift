import NIOCore

/// Splits concatenated record batches (a Produce request's records field, a fetched range, a `.log` file) into
/// `RecordBatch` views, without copying: each is a slice of the input.
///
/// Stops at a trailing partial batch, as Kafka's log input streams do (a fetch may end mid-batch; a torn write
/// leaves one at the end of a segment): `wholeBytes` then says how many bytes were whole batches and
/// `remainingBytes` how many were left over. A batch length below the v2 header size or above `maxBatchSize` is
/// refused before its bytes are awaited or read.
///
/// A value type; not shared between threads.
public struct RecordBatchSplitter {
    /// The bytes not yet split.
    public private(set) var buffer: ByteBuffer
    /// Bytes of whole batches returned so far.
    public private(set) var wholeBytes: Int = 0
    /// The largest batch accepted (message.max.bytes, or a segment's size when recovering).
    public let maxBatchSize: Int

    public init(_ buffer: ByteBuffer, maxBatchSize: Int = Int(Int32.max)) {
        self.buffer = buffer
        self.maxBatchSize = maxBatchSize
    }

    /// Bytes left after the whole batches returned so far; non-zero at the end means a partial batch.
    public var remainingBytes: Int { self.buffer.readableBytes }

    /// The next whole batch, or nil when the rest is empty or a partial batch.
    ///
    /// - Throws: `batchTooShort` or `batchTooLarge` for a batch length that cannot be a v2 batch or exceeds the
    ///   limit; the splitter does not advance past it.
    public mutating func next() throws(RecordBatchError) -> RecordBatch? {
        guard let length = self.buffer.getInteger(at: self.buffer.readerIndex + 8, as: Int32.self) else { return nil }
        let size = Int(length) + RecordBatch.logOverhead
        guard size >= RecordBatch.headerSize else { throw .batchTooShort(size: size) }
        guard size <= self.maxBatchSize else { throw .batchTooLarge(size: size, limit: self.maxBatchSize) }
        guard let slice = self.buffer.readSlice(length: size) else { return nil }
        self.wholeBytes += size
        return RecordBatch(unchecked: slice)
    }
}
