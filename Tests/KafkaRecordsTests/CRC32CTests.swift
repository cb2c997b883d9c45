import KafkaRecords
import NIOCore
import Testing

@Suite("CRC-32C")
struct CRC32CTests {
    /// Known vectors (RFC 3720 appendix B.4 and the "123456789" check value).
    static let vectors: [([UInt8], UInt32)] = [
        (Array("123456789".utf8), 0xE306_9283),
        ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ((0..<32).map { UInt8($0) }, 0x46DD_794E),
        ([], 0),
    ]

    @Test(arguments: 0..<5)
    func knownVectorsOnBothPaths(_ index: Int) {
        let (bytes, expected) = Self.vectors[index]
        bytes.withUnsafeBytes { pointer in
            #expect(CRC32C.extend(0, pointer) == expected)
            #expect(CRC32C.extendPortable(0, pointer) == expected)
            #expect(CRC32C.extendHardware(0, pointer) == expected)
        }
    }

    @Test func pathsAgreeOnRandomLengthsAndAlignments() {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<(200_000 + 64)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes.withUnsafeBytes { all in
            for trial in 0..<400 {
                let start = Int.random(in: 0..<64, using: &generator)
                // Short lengths around the three-stream thresholds, then long ones.
                let length = trial < 300 ? Int.random(in: 0..<3000) : Int.random(in: 0..<200_000)
                let slice = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                #expect(CRC32C.extendPortable(0, slice) == CRC32C.extendHardware(0, slice), "length \(length)")
            }
        }
    }

    @Test func extendingInPiecesEqualsOneCall() {
        let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7919) }
        bytes.withUnsafeBytes { all in
            let whole = CRC32C.extend(0, all)
            for split in [0, 1, 7, 8, 768, 24_576, 50_001, 100_000] {
                let first = CRC32C.extend(0, UnsafeRawBufferPointer(rebasing: all[..<split]))
                #expect(CRC32C.extend(first, UnsafeRawBufferPointer(rebasing: all[split...])) == whole)
                let portable = CRC32C.extendPortable(0, UnsafeRawBufferPointer(rebasing: all[..<split]))
                #expect(CRC32C.extendPortable(portable, UnsafeRawBufferPointer(rebasing: all[split...])) == whole)
            }
        }
    }

    @Test func checksumOfByteBuffer() {
        #expect(CRC32C.checksum(ByteBuffer(string: "123456789")) == 0xE306_9283)
    }
}
