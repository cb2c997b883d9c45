/// The compression codec of a v2 record batch: bits 0-2 of its attributes (Kafka's `CompressionType`).
public enum CompressionCodec: Int16, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case none = 0
    /// RFC 1952 gzip stream (zlib).
    case gzip = 1
    /// Raw snappy (librdkafka) or xerial-framed snappy (Java, kafka-python); both are read, xerial is written.
    case snappy = 2
    /// LZ4 frame format with independent 64 KiB blocks.
    case lz4 = 3
    /// A standard zstd frame.
    case zstd = 4

    public var description: String {
        switch self {
        case .none: return "none"
        case .gzip: return "gzip"
        case .snappy: return "snappy"
        case .lz4: return "lz4"
        case .zstd: return "zstd"
        }
    }
}
