/// Upper bounds a `WireReader` enforces before it reserves memory for a length or count read from the wire.
///
/// Every length is also checked against the bytes left in the frame, so these limits only matter for frames that
/// are large themselves. A plain value: freely shareable across threads.
public struct WireLimits: Hashable, Sendable {
    /// The most elements one array may declare. Kafka has no such limit; one million is far above any real
    /// request (a Metadata response for 200,000 partitions is the largest array clients send or receive).
    public var maxArrayCount: Int
    /// The most bytes one string may declare. Kafka's own readers refuse strings longer than `Short.MAX_VALUE`,
    /// even in compact form, so the default is 32,767.
    public var maxStringBytes: Int
    /// The most bytes one `bytes` or `records` field may declare. The default is 100 MiB, Kafka's default
    /// `socket.request.max.bytes`, so a frame the network layer accepted is never refused here.
    public var maxBytesLength: Int

    /// - Parameters:
    ///   - maxArrayCount: see `maxArrayCount`; default 1,048,576.
    ///   - maxStringBytes: see `maxStringBytes`; default 32,767.
    ///   - maxBytesLength: see `maxBytesLength`; default 104,857,600.
    public init(maxArrayCount: Int = 1 << 20, maxStringBytes: Int = 32_767, maxBytesLength: Int = 100 << 20) {
        self.maxArrayCount = maxArrayCount
        self.maxStringBytes = maxStringBytes
        self.maxBytesLength = maxBytesLength
    }

    /// The defaults described on each property.
    public static let `default` = WireLimits()
}
