/// A Kafka `uuid` field: 16 bytes, most significant first, as Kafka's `Uuid` writes them.
///
/// `description` matches Kafka's `Uuid.toString()`: URL-safe base64 without padding (22 characters), the form
/// `kafka-topics.sh` prints for topic IDs. A plain value: freely shareable across threads.
public struct KafkaUUID: Hashable, Sendable, CustomStringConvertible {
    public var mostSignificantBits: UInt64
    public var leastSignificantBits: UInt64

    public init(mostSignificantBits: UInt64, leastSignificantBits: UInt64) {
        self.mostSignificantBits = mostSignificantBits
        self.leastSignificantBits = leastSignificantBits
    }

    /// Kafka's `Uuid.ZERO_UUID`, the "no topic ID" value.
    public static let zero = KafkaUUID(mostSignificantBits: 0, leastSignificantBits: 0)

    /// The 16 bytes in wire order.
    public var bytes: [UInt8] {
        var result = [UInt8]()
        result.reserveCapacity(16)
        for word in [self.mostSignificantBits, self.leastSignificantBits] {
            for shift in stride(from: 56, through: 0, by: -8) {
                result.append(UInt8(truncatingIfNeeded: word >> UInt64(shift)))
            }
        }
        return result
    }

    public var description: String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        let bytes = self.bytes
        var output = [UInt8]()
        output.reserveCapacity(22)
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var value: UInt32 = 0
            for (offset, byte) in chunk.enumerated() {
                value |= UInt32(byte) << UInt32(16 - 8 * offset)
            }
            for position in 0...chunk.count {
                output.append(alphabet[Int((value >> UInt32(18 - 6 * position)) & 0x3F)])
            }
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Parses `description`'s form (22 URL-safe base64 characters, no padding); nil for anything else.
    public init?(_ text: String) {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        let characters = Array(text.utf8)
        guard characters.count == 22 else { return nil }
        var bits: [UInt8] = []
        bits.reserveCapacity(132)
        for character in characters {
            guard let value = alphabet.firstIndex(of: character) else { return nil }
            for shift in stride(from: 5, through: 0, by: -1) { bits.append(UInt8((value >> shift) & 1)) }
        }
        // 22 characters carry 132 bits: the last 4 are padding and must be zero, as a canonical encoding has them.
        guard bits[128...].allSatisfy({ $0 == 0 }) else { return nil }
        let word = { (range: Range<Int>) in bits[range].reduce(UInt64(0)) { $0 << 1 | UInt64($1) } }
        self.init(mostSignificantBits: word(0..<64), leastSignificantBits: word(64..<128))
    }
}
