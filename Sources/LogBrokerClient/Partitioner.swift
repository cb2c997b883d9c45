/// Kafka's partitioners. A keyed record goes where the Java client and kafka-python put it:
/// `murmur2(key) & 0x7fffffff % partitions` (`BuiltInPartitioner.partitionForKey`), so LogBroker's producers and
/// theirs agree on which partition holds a key. Unkeyed records stick to one partition until its batch is sent
/// (KIP-480); an explicit partition is used as given. Stateless; thread-safe.
public enum Partitioner {
    /// Kafka's `Utils.murmur2`: MurmurHash2, 32-bit, seed 0x9747b28c.
    public static func murmur2(_ data: some Collection<UInt8>) -> Int32 {
        let bytes = Array(data)
        let m: UInt32 = 0x5bd1_e995
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: bytes.count)
        let whole = bytes.count / 4
        for index in 0..<whole {
            let i = index * 4
            var k = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
            k &*= m
            k ^= k >> 24
            k &*= m
            h &*= m
            h ^= k
        }
        let tail = whole * 4
        switch bytes.count % 4 {
        case 3:
            h ^= UInt32(bytes[tail + 2]) << 16
            fallthrough
        case 2:
            h ^= UInt32(bytes[tail + 1]) << 8
            fallthrough
        case 1:
            h ^= UInt32(bytes[tail])
            h &*= m
        default:
            break
        }
        h ^= h >> 13
        h &*= m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }

    /// The partition of a keyed record among `count` partitions.
    public static func partition(forKey key: some Collection<UInt8>, count: Int) -> Int32 {
        Int32((Int(Self.murmur2(key)) & 0x7fff_ffff) % max(count, 1))
    }
}
