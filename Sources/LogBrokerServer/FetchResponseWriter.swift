import KafkaMessages
import KafkaNIO
import KafkaWire
import LogStorage
import NIOCore
import SystemPackage

/// Writes a FetchResponse frame's contents as parts, with each partition's records sent from its segment file as a
/// `FileRegion` (sendfile) instead of being read into memory.
///
/// The layout comes from the generated encoder, so it matches it at every version by construction: the response
/// is encoded twice without the file-backed records, once with them null and once empty. Null and empty records
/// encode to the same width (int32 -1 vs 0 up to v11, compact varint 0 vs 1 from v12), so the two encodings line
/// up and differ exactly in those slots; each slot becomes the records' length prefix and the file region.
///
/// Stateless; thread-safe.
enum FetchResponseWriter {
    /// The frame contents (response header and body, no size) of `response`, whose partitions (in encoding order)
    /// take their records from the matching entry of `ranges`, or keep their own records where it is nil.
    ///
    /// Each region owns a duplicated descriptor; the connection's `FileRegionOwner` closes it after the write.
    static func parts(
        _ response: FetchResponse,
        ranges: [FileRange?],
        version: Int16,
        correlationID: Int32
    ) throws(StorageError) -> [IOData] {
        var absent = response
        var empty = response
        var slot = 0
        for topic in response.responses.indices {
            for partition in response.responses[topic].partitions.indices {
                defer { slot += 1 }
                guard slot < ranges.count, ranges[slot] != nil else { continue }
                absent.responses[topic].partitions[partition].records = nil
                empty.responses[topic].partitions[partition].records = ByteBuffer()
            }
        }
        let template = KafkaFrame.response(absent, version: version, correlationID: correlationID)
        let marked = KafkaFrame.response(empty, version: version, correlationID: correlationID)
        let files = ranges.compactMap { $0 }
        guard !files.isEmpty else { return [.byteBuffer(template)] }
        let width = version >= 12 ? 1 : 4
        let positions = Self.slotPositions(template, marked, width: width)
        precondition(positions.count == files.count, "\(positions.count) record slots for \(files.count) files")

        var parts: [IOData] = []
        parts.reserveCapacity(files.count * 2 + 1)
        var handles: [NIOFileHandle] = []
        var copied = template.readerIndex
        do throws(StorageError) {
            for (position, range) in zip(positions, files) {
                var head = WireWriter(buffer: template.getSlice(at: copied, length: position - copied) ?? ByteBuffer())
                if version >= 12 {
                    head.writeUnsignedVarint(UInt32(range.length + 1))
                } else {
                    head.writeInt32(Int32(range.length))
                }
                parts.append(.byteBuffer(head.buffer))
                copied = position + width
                guard range.length > 0 else { continue }
                let handle = NIOFileHandle(
                    _deprecatedTakingOwnershipOfDescriptor: try range.file.duplicateDescriptor().rawValue
                )
                handles.append(handle)
                let start = Int(range.position)
                parts.append(
                    .fileRegion(FileRegion(fileHandle: handle, readerIndex: start, endIndex: start + range.length))
                )
            }
        } catch {
            for handle in handles { try? handle.close() }
            throw error
        }
        if let tail = template.getSlice(at: copied, length: template.writerIndex - copied), tail.readableBytes > 0 {
            parts.append(.byteBuffer(tail))
        }
        return parts
    }

    /// Where `template` and `marked` differ, as slot starts `width` bytes apart at least (buffer indices).
    private static func slotPositions(_ template: ByteBuffer, _ marked: ByteBuffer, width: Int) -> [Int] {
        precondition(template.readableBytes == marked.readableBytes, "null and empty records encode to one width")
        var positions: [Int] = []
        template.withUnsafeReadableBytes { left in
            marked.withUnsafeReadableBytes { right in
                var index = 0
                while index < left.count {
                    if left[index] != right[index] {
                        positions.append(template.readerIndex + index)
                        index += width
                    } else {
                        index += 1
                    }
                }
            }
        }
        return positions
    }
}
