import CCRC32C
import NIOCore

/// CRC-32C (Castagnoli), the checksum of v2 record batches. Stateless; thread-safe.
///
/// Uses the SSE4.2 instruction over three interleaved streams when the CPU has it, a slicing-by-8 table otherwise.
public enum CRC32C {
    /// Whether `extend` runs on the SSE4.2 path on this machine.
    public static var isHardwareAccelerated: Bool { ccrc32c_hardware_available() != 0 }

    /// Extends `crc` (0 to start) over `bytes`.
    @inlinable
    public static func extend(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return ccrc32c_extend(crc, base, bytes.count)
    }

    /// The CRC of `buffer`'s readable bytes.
    @inlinable
    public static func checksum(_ buffer: ByteBuffer) -> UInt32 {
        buffer.withUnsafeReadableBytes { Self.extend(0, $0) }
    }

    /// The portable slicing-by-8 path, whatever the CPU: for tests and benchmarks.
    public static func extendPortable(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return ccrc32c_extend_portable(crc, base, bytes.count)
    }

    /// The SSE4.2 path (the portable one when the CPU lacks SSE4.2): for tests and benchmarks.
    public static func extendHardware(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return ccrc32c_extend_hardware(crc, base, bytes.count)
    }
}
