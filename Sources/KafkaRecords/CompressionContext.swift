import CLZ4
import CSnappy
import CZlib
import CZstd
import NIOCore

/// Compresses and decompresses record data with the system codec libraries (zlib, snappy, liblz4, libzstd),
/// keeping their contexts between calls so a batch costs no codec set-up.
///
/// Every decompression is bounded by the caller's `maxDecompressedBytes`: a stream whose header claims more, or
/// which keeps producing output past the limit, is refused with `RecordBatchError.decompressedTooLarge` and no
/// more than the limit is ever reserved (never trust a length, DESIGN.md principle 5). Output is appended to a
/// caller-owned `ByteBuffer`, which callers clear and reuse, so a batch costs at most one allocation.
///
/// Not thread-safe: one context per thread or per connection. The class is deliberately not `Sendable`.
public final class CompressionContext {
    /// zlib keeps a pointer back to its `z_stream`, so the stream must not move: it lives on the heap.
    private var inflater: UnsafeMutablePointer<z_stream>?
    private var deflater: UnsafeMutablePointer<z_stream>?
    private var deflaterLevel: Int32 = 0
    private var zstdDecompressor: OpaquePointer?
    private var zstdCompressor: OpaquePointer?
    private var lz4Decompressor: OpaquePointer?
    private var lz4Compressor: OpaquePointer?

    /// Output grows geometrically from this size (or from the size a header announces), up to the limit.
    private static let initialChunk = 64 * 1024
    /// xerial snappy block size, as snappy-java and kafka-python write it.
    static let xerialBlockSize = 32 * 1024
    /// `82 'SNAPPY' 00`, then int32 version 1 and int32 compatible version 1.
    static let xerialHeader: [UInt8] = [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1]

    public init() {}

    deinit {
        if let inflater = self.inflater {
            inflateEnd(inflater)
            inflater.deallocate()
        }
        if let deflater = self.deflater {
            deflateEnd(deflater)
            deflater.deallocate()
        }
        if let context = self.zstdDecompressor { ZSTD_freeDCtx(context) }
        if let context = self.zstdCompressor { ZSTD_freeCCtx(context) }
        if let context = self.lz4Decompressor { LZ4F_freeDecompressionContext(context) }
        if let context = self.lz4Compressor { LZ4F_freeCompressionContext(context) }
    }

    // MARK: Decompression

    /// Appends the decompressed form of `input` to `output`.
    ///
    /// - Parameters:
    ///   - codec: the batch's codec; `.none` copies the bytes (still bounded).
    ///   - maxDecompressedBytes: the most bytes this call may append; beyond it the call throws.
    /// - Throws: `decompressedTooLarge` at the limit, `corruptCompressedData` for a damaged or truncated stream.
    public func decompress(
        _ input: UnsafeRawBufferPointer,
        codec: CompressionCodec,
        maxDecompressedBytes limit: Int,
        appendingTo output: inout ByteBuffer
    ) throws(RecordBatchError) {
        switch codec {
        case .none:
            guard input.count <= limit else { throw .decompressedTooLarge(codec: codec, limit: limit) }
            output.writeBytes(input)
        case .gzip:
            try self.inflateGzip(input, limit: limit, into: &output)
        case .snappy:
            try Self.decompressSnappy(input, limit: limit, into: &output)
        case .lz4:
            try self.decompressLZ4(input, limit: limit, into: &output)
        case .zstd:
            try self.decompressZstd(input, limit: limit, into: &output)
        }
    }

    /// What one call of a streaming decoder did.
    private enum Step {
        /// Made progress; call again.
        case more
        /// The stream ended cleanly.
        case finished
        /// The decoder needs more input, and there is none.
        case truncated
        case failed(String)
    }

    /// Drives a streaming decoder into `output`, growing it geometrically but never past `limit` bytes. When the
    /// limit is reached with the stream unfinished, one probe into a 1-byte stack buffer tells a stream that is
    /// merely finishing (checksums, end marks) from one that would inflate further.
    private static func drive(
        codec: CompressionCodec,
        limit: Int,
        firstChunk: Int,
        into output: inout ByteBuffer,
        step: (UnsafeMutableRawBufferPointer) -> (produced: Int, step: Step)
    ) throws(RecordBatchError) {
        var produced = 0
        var chunk = max(1, min(firstChunk, limit))
        while true {
            let room = min(chunk, limit - produced)
            var result: Step
            if room == 0 {
                var probe: UInt8 = 0
                let (count, step) = withUnsafeMutableBytes(of: &probe) { step($0) }
                guard count == 0 else { throw .decompressedTooLarge(codec: codec, limit: limit) }
                result = step
            } else {
                var stepResult = Step.more
                let written = output.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { pointer in
                    let (count, step) = step(UnsafeMutableRawBufferPointer(rebasing: pointer.prefix(room)))
                    stepResult = step
                    return count
                }
                produced += written
                result = stepResult
                if written == room { chunk = max(chunk, produced) }
            }
            switch result {
            case .more:
                continue
            case .finished:
                return
            case .truncated:
                throw .corruptCompressedData(codec: codec, what: "the stream ends before its end mark")
            case .failed(let what):
                throw .corruptCompressedData(codec: codec, what: what)
            }
        }
    }

    private func inflateGzip(
        _ input: UnsafeRawBufferPointer,
        limit: Int,
        into output: inout ByteBuffer
    ) throws(RecordBatchError) {
        let stream: UnsafeMutablePointer<z_stream>
        if let existing = self.inflater {
            inflateReset(existing)
            stream = existing
        } else {
            stream = .allocate(capacity: 1)
            stream.initialize(to: z_stream())
            // 15 window bits + 16: a gzip wrapper (RFC 1952) only, as Java's GZIPInputStream reads.
            guard inflateInit2_(stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                stream.deallocate()
                throw .corruptCompressedData(codec: .gzip, what: "zlib could not initialise an inflater")
            }
            self.inflater = stream
        }
        guard let base = input.baseAddress, input.count > 0 else {
            throw .corruptCompressedData(codec: .gzip, what: "empty input")
        }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = uInt(input.count)
        try Self.drive(codec: .gzip, limit: limit, firstChunk: max(Self.initialChunk, 4 * input.count), into: &output) {
            out in
            stream.pointee.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = uInt(out.count)
            let consumedBefore = stream.pointee.avail_in
            let status = inflate(stream, Z_NO_FLUSH)
            let produced = out.count - Int(stream.pointee.avail_out)
            switch status {
            case Z_STREAM_END:
                // Java's GZIPInputStream reads concatenated members; anything else after the end is ignored.
                let left = Int(stream.pointee.avail_in)
                if left >= 2, stream.pointee.next_in[0] == 0x1F, stream.pointee.next_in[1] == 0x8B {
                    inflateReset(stream)
                    return (produced, .more)
                }
                return (produced, .finished)
            case Z_OK:
                return (produced, .more)
            case Z_BUF_ERROR:
                let progressed = produced > 0 || stream.pointee.avail_in != consumedBefore
                return (produced, progressed ? .more : .truncated)
            default:
                let message = stream.pointee.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                return (produced, .failed(message))
            }
        }
    }

    private func decompressZstd(
        _ input: UnsafeRawBufferPointer,
        limit: Int,
        into output: inout ByteBuffer
    ) throws(RecordBatchError) {
        guard let base = input.baseAddress, input.count > 0 else {
            throw .corruptCompressedData(codec: .zstd, what: "empty input")
        }
        let claimed = ZSTD_getFrameContentSize(base, input.count)
        var firstChunk = max(Self.initialChunk, 4 * input.count)
        if claimed == ZSTD_CONTENTSIZE_ERROR {
            throw .corruptCompressedData(codec: .zstd, what: "not a zstd frame")
        } else if claimed != ZSTD_CONTENTSIZE_UNKNOWN {
            guard claimed <= UInt64(limit) else { throw .decompressedTooLarge(codec: .zstd, limit: limit) }
            firstChunk = Int(claimed)
        }
        let context: OpaquePointer
        if let existing = self.zstdDecompressor {
            context = existing
            ZSTD_DCtx_reset(context, ZSTD_reset_session_only)
        } else {
            guard let created = ZSTD_createDCtx() else {
                throw .corruptCompressedData(codec: .zstd, what: "libzstd could not allocate a context")
            }
            context = created
            self.zstdDecompressor = created
        }
        // The window a frame asks for is memory the decoder reserves: allow what the limit needs, and at least the
        // 8 MiB windows that streaming encoders (zstd-jni, the zstd CLI on a pipe) use at common levels.
        let limitBits = Int32(Int.bitWidth - max(limit, 1).leadingZeroBitCount)
        ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, min(31, max(23, limitBits)))
        var source = ZSTD_inBuffer(src: base, size: input.count, pos: 0)
        try Self.drive(codec: .zstd, limit: limit, firstChunk: firstChunk, into: &output) { out in
            var target = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
            let consumedBefore = source.pos
            let hint = ZSTD_decompressStream(context, &target, &source)
            if ZSTD_isError(hint) != 0 {
                return (target.pos, .failed(String(cString: ZSTD_getErrorName(hint))))
            }
            if hint == 0 {
                return (target.pos, source.pos < source.size ? .more : .finished)
            }
            let progressed = target.pos > 0 || source.pos != consumedBefore
            return (target.pos, progressed ? .more : .truncated)
        }
    }

    private func decompressLZ4(
        _ input: UnsafeRawBufferPointer,
        limit: Int,
        into output: inout ByteBuffer
    ) throws(RecordBatchError) {
        guard let base = input.baseAddress, input.count > 0 else {
            throw .corruptCompressedData(codec: .lz4, what: "empty input")
        }
        let context: OpaquePointer
        if let existing = self.lz4Decompressor {
            context = existing
            LZ4F_resetDecompressionContext(context)
        } else {
            var created: OpaquePointer?
            guard LZ4F_isError(LZ4F_createDecompressionContext(&created, UInt32(LZ4F_VERSION))) == 0,
                let created
            else {
                throw .corruptCompressedData(codec: .lz4, what: "liblz4 could not allocate a context")
            }
            context = created
            self.lz4Decompressor = created
        }
        // The frame header may announce the content size: refuse a claim past the limit before reserving anything.
        var info = LZ4F_frameInfo_t()
        var headerBytes = input.count
        let status = LZ4F_getFrameInfo(context, &info, base, &headerBytes)
        guard LZ4F_isError(status) == 0 else {
            throw .corruptCompressedData(codec: .lz4, what: String(cString: LZ4F_getErrorName(status)))
        }
        var firstChunk = max(Self.initialChunk, 4 * input.count)
        if info.contentSize != 0 {
            guard info.contentSize <= UInt64(limit) else { throw .decompressedTooLarge(codec: .lz4, limit: limit) }
            firstChunk = Int(info.contentSize)
        }
        var position = headerBytes
        try Self.drive(codec: .lz4, limit: limit, firstChunk: firstChunk, into: &output) { out in
            var produced = out.count
            var consumed = input.count - position
            let hint = LZ4F_decompress(context, out.baseAddress, &produced, base + position, &consumed, nil)
            position += consumed
            if LZ4F_isError(hint) != 0 {
                return (produced, .failed(String(cString: LZ4F_getErrorName(hint))))
            }
            if hint == 0 {
                return (produced, position < input.count ? .more : .finished)
            }
            return (produced, produced > 0 || consumed > 0 ? .more : .truncated)
        }
    }

    /// Raw snappy (librdkafka) or xerial framing (Java, kafka-python), told apart by the xerial magic.
    private static func decompressSnappy(
        _ input: UnsafeRawBufferPointer,
        limit: Int,
        into output: inout ByteBuffer
    ) throws(RecordBatchError) {
        let header = Self.xerialHeader
        guard input.count >= 16, input.prefix(8).elementsEqual(header.prefix(8)) else {
            var remaining = limit
            try Self.snappyBlock(input, remaining: &remaining, limit: limit, into: &output)
            return
        }
        var position = 16
        var remaining = limit
        while position < input.count {
            guard input.count - position >= 4 else {
                throw .corruptCompressedData(codec: .snappy, what: "xerial block length cut at byte \(position)")
            }
            let length = Int(UInt32(bigEndianBytes: input, at: position))
            position += 4
            guard length <= input.count - position else {
                throw .corruptCompressedData(
                    codec: .snappy,
                    what: "xerial block of \(length) bytes at byte \(position) overruns the input"
                )
            }
            let block = UnsafeRawBufferPointer(rebasing: input[position..<(position + length)])
            try Self.snappyBlock(block, remaining: &remaining, limit: limit, into: &output)
            position += length
        }
    }

    private static func snappyBlock(
        _ block: UnsafeRawBufferPointer,
        remaining: inout Int,
        limit: Int,
        into output: inout ByteBuffer
    ) throws(RecordBatchError) {
        guard let base = block.baseAddress, block.count > 0 else {
            throw .corruptCompressedData(codec: .snappy, what: "empty block")
        }
        let source = base.assumingMemoryBound(to: CChar.self)
        var length = 0
        guard snappy_uncompressed_length(source, block.count, &length) == SNAPPY_OK else {
            throw .corruptCompressedData(codec: .snappy, what: "unreadable block length")
        }
        guard length <= remaining else { throw .decompressedTooLarge(codec: .snappy, limit: limit) }
        guard length > 0 else { return }
        var failed = false
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { pointer in
            var written = length
            let target = pointer.baseAddress!.assumingMemoryBound(to: CChar.self)
            guard snappy_uncompress(source, block.count, target, &written) == SNAPPY_OK, written == length else {
                failed = true
                return 0
            }
            return written
        }
        guard !failed else { throw .corruptCompressedData(codec: .snappy, what: "corrupt block") }
        remaining -= length
    }

    // MARK: Compression

    /// Appends the compressed form of `input` to `output`, in the framing Kafka's Java client writes.
    ///
    /// - Parameter level: the codec's level (gzip 1...9, lz4 0...12, zstd 1...22); nil takes Kafka's defaults
    ///   (gzip 6, lz4 fast, zstd 3). Snappy has no level.
    public func compress(
        _ input: UnsafeRawBufferPointer,
        codec: CompressionCodec,
        level: Int? = nil,
        appendingTo output: inout ByteBuffer
    ) throws(RecordBatchError) {
        switch codec {
        case .none:
            output.writeBytes(input)
        case .gzip:
            try self.deflateGzip(input, level: Int32(level ?? 6), into: &output)
        case .snappy:
            try Self.compressSnappy(input, into: &output)
        case .lz4:
            try self.compressLZ4(input, level: Int32(level ?? 0), into: &output)
        case .zstd:
            try self.compressZstd(input, level: Int32(level ?? 3), into: &output)
        }
    }

    private func deflateGzip(
        _ input: UnsafeRawBufferPointer,
        level: Int32,
        into output: inout ByteBuffer
    ) throws(RecordBatchError) {
        if let existing = self.deflater, self.deflaterLevel != level {
            deflateEnd(existing)
            existing.deallocate()
            self.deflater = nil
        }
        let stream: UnsafeMutablePointer<z_stream>
        if let existing = self.deflater {
            deflateReset(existing)
            stream = existing
        } else {
            stream = .allocate(capacity: 1)
            stream.initialize(to: z_stream())
            let status = deflateInit2_(
                stream,
                level,
                Z_DEFLATED,
                15 + 16,
                8,
                Z_DEFAULT_STRATEGY,
                ZLIB_VERSION,
                Int32(MemoryLayout<z_stream>.size)
            )
            guard status == Z_OK else {
                stream.deallocate()
                throw .compressionFailed(codec: .gzip, what: "deflateInit2 returned \(status)")
            }
            self.deflater = stream
            self.deflaterLevel = level
        }
        let bound = Int(deflateBound(stream, uLong(input.count)))
        var status = Z_OK
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { pointer in
            stream.pointee.next_in = UnsafeMutablePointer(
                mutating: (input.baseAddress ?? UnsafeRawPointer(pointer.baseAddress!)).assumingMemoryBound(
                    to: Bytef.self
                )
            )
            stream.pointee.avail_in = uInt(input.count)
            stream.pointee.next_out = pointer.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = uInt(bound)
            status = deflate(stream, Z_FINISH)
            return bound - Int(stream.pointee.avail_out)
        }
        guard status == Z_STREAM_END else {
            throw .compressionFailed(codec: .gzip, what: "deflate returned \(status)")
        }
    }

    /// xerial framing, as Java's `SnappyOutputStream` writes it: the header, then 32 KiB blocks, each
    /// `[int32 BE length][raw snappy block]`.
    private static func compressSnappy(_ input: UnsafeRawBufferPointer, into output: inout ByteBuffer)
        throws(RecordBatchError)
    {
        output.writeBytes(Self.xerialHeader)
        var position = 0
        while position < input.count {
            let length = min(Self.xerialBlockSize, input.count - position)
            let bound = snappy_max_compressed_length(length)
            let lengthIndex = output.writerIndex
            output.writeInteger(UInt32(0))
            var failed = false
            let source = input.baseAddress!.advanced(by: position).assumingMemoryBound(to: CChar.self)
            let written = output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { pointer in
                var written = bound
                let target = pointer.baseAddress!.assumingMemoryBound(to: CChar.self)
                guard snappy_compress(source, length, target, &written) == SNAPPY_OK else {
                    failed = true
                    return 0
                }
                return written
            }
            guard !failed else { throw .compressionFailed(codec: .snappy, what: "snappy_compress failed") }
            output.setInteger(UInt32(written), at: lengthIndex)
            position += length
        }
    }

    /// LZ4 frame with independent 64 KiB blocks and no content size or checksum, as Kafka's Java client writes it.
    private func compressLZ4(
        _ input: UnsafeRawBufferPointer,
        level: Int32,
        into output: inout ByteBuffer
    ) throws(RecordBatchError) {
        let context: OpaquePointer
        if let existing = self.lz4Compressor {
            context = existing
        } else {
            var created: OpaquePointer?
            guard LZ4F_isError(LZ4F_createCompressionContext(&created, UInt32(LZ4F_VERSION))) == 0, let created else {
                throw .compressionFailed(codec: .lz4, what: "liblz4 could not allocate a context")
            }
            context = created
            self.lz4Compressor = created
        }
        var preferences = LZ4F_preferences_t()
        preferences.frameInfo.blockSizeID = LZ4F_max64KB
        preferences.frameInfo.blockMode = LZ4F_blockIndependent
        preferences.compressionLevel = level
        let bound = LZ4F_compressFrameBound(input.count, &preferences)
        var failure: String?
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { pointer in
            let target = pointer.baseAddress!
            let header = LZ4F_compressBegin(context, target, bound, &preferences)
            guard LZ4F_isError(header) == 0 else {
                failure = String(cString: LZ4F_getErrorName(header))
                return 0
            }
            var written = header
            if input.count > 0 {
                let body = LZ4F_compressUpdate(
                    context,
                    target + written,
                    bound - written,
                    input.baseAddress,
                    input.count,
                    nil
                )
                guard LZ4F_isError(body) == 0 else {
                    failure = String(cString: LZ4F_getErrorName(body))
                    return 0
                }
                written += body
            }
            let end = LZ4F_compressEnd(context, target + written, bound - written, nil)
            guard LZ4F_isError(end) == 0 else {
                failure = String(cString: LZ4F_getErrorName(end))
                return 0
            }
            return written + end
        }
        if let failure { throw .compressionFailed(codec: .lz4, what: failure) }
    }

    private func compressZstd(
        _ input: UnsafeRawBufferPointer,
        level: Int32,
        into output: inout ByteBuffer
    ) throws(RecordBatchError) {
        let context: OpaquePointer
        if let existing = self.zstdCompressor {
            context = existing
        } else {
            guard let created = ZSTD_createCCtx() else {
                throw .compressionFailed(codec: .zstd, what: "libzstd could not allocate a context")
            }
            context = created
            self.zstdCompressor = created
        }
        let bound = ZSTD_compressBound(input.count)
        var failure: String?
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { pointer in
            let written = ZSTD_compressCCtx(context, pointer.baseAddress, bound, input.baseAddress, input.count, level)
            guard ZSTD_isError(written) == 0 else {
                failure = String(cString: ZSTD_getErrorName(written))
                return 0
            }
            return written
        }
        if let failure { throw .compressionFailed(codec: .zstd, what: failure) }
    }
}

extension UInt32 {
    /// A big-endian UInt32 at `index` of `bytes`; the caller has checked the bounds.
    @inline(__always)
    init(bigEndianBytes bytes: UnsafeRawBufferPointer, at index: Int) {
        self =
            UInt32(bytes[index]) << 24 | UInt32(bytes[index + 1]) << 16 | UInt32(bytes[index + 2]) << 8
            | UInt32(bytes[index + 3])
    }
}
