import KafkaWire

/// The bytes of the image's parts in the metadata store: big-endian integers, length-prefixed strings and arrays,
/// each value starting with a format version byte. Topics are at version 2 (version 1, still read, had no configs).
/// Hand-written because ClusterControl does not import NIO or Foundation. Stateless; thread-safe.
enum ImageCodec {
    static let formatVersion: UInt8 = 1
    static let topicFormatVersion: UInt8 = 2

    /// Brokers are at version 2: version 1 (still read) had no incarnation, fencing or broker epoch.
    static let brokerFormatVersion: UInt8 = 2

    /// A broker registration. A broker epoch of 0 (a registration being recorded) stands for the revision of the
    /// write that stores it; fencing and unfencing keep the epoch the registration got.
    static func encode(_ broker: BrokerRegistration) -> [UInt8] {
        var writer = ByteWriter()
        writer.integer(Self.brokerFormatVersion)
        writer.integer(broker.nodeID)
        writer.integer(UInt32(broker.endpoints.count))
        for endpoint in broker.endpoints {
            writer.string(endpoint.listener)
            writer.string(endpoint.host)
            writer.integer(endpoint.port)
        }
        writer.integer(UInt8(broker.rack == nil ? 0 : 1))
        if let rack = broker.rack { writer.string(rack) }
        writer.integer(broker.incarnationID.mostSignificantBits)
        writer.integer(broker.incarnationID.leastSignificantBits)
        writer.integer(UInt8(broker.fenced ? 1 : 0))
        writer.integer(broker.brokerEpoch)
        return writer.bytes
    }

    /// The registration in a `brokers/<id>` value last written at `modRevision`.
    static func decodeBroker(
        _ bytes: [UInt8],
        key: String,
        modRevision: Int64
    ) throws(ClusterControlError) -> BrokerRegistration {
        var reader = ByteReader(bytes: bytes)
        let version = reader.integer(as: UInt8.self)
        guard version == Self.formatVersion || version == Self.brokerFormatVersion,
            let nodeID = reader.integer(as: Int32.self),
            let count = reader.integer(as: UInt32.self), count <= bytes.count
        else { throw .corruptImage(key: key, reason: "bad broker header") }
        var endpoints: [BrokerEndpoint] = []
        for _ in 0..<count {
            guard let listener = reader.string(), let host = reader.string(), let port = reader.integer(as: Int32.self)
            else { throw .corruptImage(key: key, reason: "truncated endpoint") }
            endpoints.append(BrokerEndpoint(listener: listener, host: host, port: port))
        }
        guard let hasRack = reader.integer(as: UInt8.self) else { throw .corruptImage(key: key, reason: "truncated") }
        let rack = hasRack == 1 ? reader.string() : nil
        var broker = BrokerRegistration(nodeID: nodeID, endpoints: endpoints, rack: rack, brokerEpoch: modRevision)
        if version == Self.brokerFormatVersion {
            guard let most = reader.integer(as: UInt64.self), let least = reader.integer(as: UInt64.self),
                let fenced = reader.integer(as: UInt8.self), let epoch = reader.integer(as: Int64.self)
            else { throw .corruptImage(key: key, reason: "truncated registration") }
            broker.incarnationID = KafkaUUID(mostSignificantBits: most, leastSignificantBits: least)
            broker.fenced = fenced == 1
            if epoch != 0 { broker.brokerEpoch = epoch }
        }
        guard reader.isAtEnd else { throw .corruptImage(key: key, reason: "trailing bytes") }
        return broker
    }

    /// The election key's value: the controller's node id and its CONTROLLER endpoint, if it has one.
    static func encode(controllerNodeID nodeID: Int32, endpoint: BrokerEndpoint?) -> [UInt8] {
        var writer = ByteWriter()
        writer.integer(Self.formatVersion)
        writer.integer(nodeID)
        writer.integer(UInt8(endpoint == nil ? 0 : 1))
        if let endpoint {
            writer.string(endpoint.listener)
            writer.string(endpoint.host)
            writer.integer(endpoint.port)
        }
        return writer.bytes
    }

    /// The controller named by the election key's value; `epoch` is the key's `createRevision`.
    static func decodeController(_ bytes: [UInt8], key: String, epoch: Int64) throws(ClusterControlError)
        -> ControllerLeader
    {
        var reader = ByteReader(bytes: bytes)
        guard reader.integer(as: UInt8.self) == Self.formatVersion, let nodeID = reader.integer(as: Int32.self),
            let hasEndpoint = reader.integer(as: UInt8.self)
        else { throw .corruptImage(key: key, reason: "bad controller header") }
        var endpoint: BrokerEndpoint?
        if hasEndpoint == 1 {
            guard let listener = reader.string(), let host = reader.string(), let port = reader.integer(as: Int32.self)
            else { throw .corruptImage(key: key, reason: "truncated endpoint") }
            endpoint = BrokerEndpoint(listener: listener, host: host, port: port)
        }
        guard reader.isAtEnd else { throw .corruptImage(key: key, reason: "trailing bytes") }
        return ControllerLeader(nodeID: nodeID, endpoint: endpoint, epoch: epoch)
    }

    static func encode(_ topic: TopicImage) -> [UInt8] {
        var writer = ByteWriter()
        writer.integer(Self.topicFormatVersion)
        writer.string(topic.name)
        writer.integer(topic.id.mostSignificantBits)
        writer.integer(topic.id.leastSignificantBits)
        writer.integer(UInt32(topic.partitions.count))
        for partition in topic.partitions {
            writer.nodes(partition.replicas)
            writer.nodes(partition.isr)
            writer.integer(partition.leader ?? -1)
            writer.integer(partition.leaderEpoch)
            writer.integer(partition.partitionEpoch)
        }
        writer.configs(topic.configs)
        return writer.bytes
    }

    /// The next unallocated producer id (the `producer-ids` value).
    static func encode(nextProducerID: Int64) -> [UInt8] {
        var writer = ByteWriter()
        writer.integer(Self.formatVersion)
        writer.integer(nextProducerID)
        return writer.bytes
    }

    static func decodeNextProducerID(_ bytes: [UInt8], key: String) throws(ClusterControlError) -> Int64 {
        var reader = ByteReader(bytes: bytes)
        guard reader.integer(as: UInt8.self) == Self.formatVersion, let next = reader.integer(as: Int64.self),
            next >= 0, reader.isAtEnd
        else { throw .corruptImage(key: key, reason: "bad producer id block") }
        return next
    }

    /// A dynamic broker config set (a `configs/broker/<resource>` value).
    static func encode(configs: [String: String]) -> [UInt8] {
        var writer = ByteWriter()
        writer.integer(Self.formatVersion)
        writer.configs(configs)
        return writer.bytes
    }

    static func decodeConfigs(_ bytes: [UInt8], key: String) throws(ClusterControlError) -> [String: String] {
        var reader = ByteReader(bytes: bytes)
        guard reader.integer(as: UInt8.self) == Self.formatVersion, let configs = reader.configs(), reader.isAtEnd
        else { throw .corruptImage(key: key, reason: "bad config set") }
        return configs
    }

    static func decodeTopic(_ bytes: [UInt8], key: String) throws(ClusterControlError) -> TopicImage {
        var reader = ByteReader(bytes: bytes)
        let version = reader.integer(as: UInt8.self)
        guard version == 1 || version == Self.topicFormatVersion, let name = reader.string(),
            let most = reader.integer(as: UInt64.self), let least = reader.integer(as: UInt64.self),
            let count = reader.integer(as: UInt32.self), count <= bytes.count
        else { throw .corruptImage(key: key, reason: "bad topic header") }
        var partitions: [PartitionState] = []
        for _ in 0..<count {
            guard let replicas = reader.nodes(), let isr = reader.nodes(), let leader = reader.integer(as: Int32.self),
                let leaderEpoch = reader.integer(as: Int32.self), let partitionEpoch = reader.integer(as: Int32.self)
            else { throw .corruptImage(key: key, reason: "truncated partition") }
            partitions.append(
                PartitionState(
                    replicas: replicas,
                    isr: isr,
                    leader: leader < 0 ? nil : leader,
                    leaderEpoch: leaderEpoch,
                    partitionEpoch: partitionEpoch
                )
            )
        }
        var configs: [String: String] = [:]
        if version == Self.topicFormatVersion {
            guard let decoded = reader.configs() else { throw .corruptImage(key: key, reason: "truncated configs") }
            configs = decoded
        }
        guard reader.isAtEnd else { throw .corruptImage(key: key, reason: "trailing bytes") }
        return TopicImage(
            name: name,
            id: KafkaUUID(mostSignificantBits: most, leastSignificantBits: least),
            partitions: partitions,
            configs: configs
        )
    }
}

/// Appends big-endian values. A value used by one encoder.
private struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func integer<T: FixedWidthInteger>(_ value: T) {
        for shift in stride(from: (MemoryLayout<T>.size - 1) * 8, through: 0, by: -8) {
            self.bytes.append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }

    mutating func string(_ value: String) {
        self.integer(UInt32(value.utf8.count))
        self.bytes.append(contentsOf: value.utf8)
    }

    mutating func nodes(_ value: [Int32]) {
        self.integer(UInt32(value.count))
        for node in value { self.integer(node) }
    }

    /// Sorted by key, so equal sets encode to equal bytes.
    mutating func configs(_ value: [String: String]) {
        self.integer(UInt32(value.count))
        for (key, entry) in value.sorted(by: { $0.key < $1.key }) {
            self.string(key)
            self.string(entry)
        }
    }
}

/// Bounds-checked big-endian reads; nil when the bytes run out. A value used by one decoder.
private struct ByteReader {
    let bytes: [UInt8]
    var position = 0

    var isAtEnd: Bool { self.position == self.bytes.count }

    mutating func integer<T: FixedWidthInteger>(as: T.Type) -> T? {
        let size = MemoryLayout<T>.size
        guard self.bytes.count - self.position >= size else { return nil }
        var value = T.zero
        for byte in self.bytes[self.position..<(self.position + size)] {
            value = (size == 1 ? 0 : value << 8) | T(truncatingIfNeeded: byte)
        }
        self.position += size
        return value
    }

    mutating func string() -> String? {
        guard let length = self.integer(as: UInt32.self), self.bytes.count - self.position >= Int(length) else {
            return nil
        }
        defer { self.position += Int(length) }
        return String(decoding: self.bytes[self.position..<(self.position + Int(length))], as: UTF8.self)
    }

    mutating func nodes() -> [Int32]? {
        guard let count = self.integer(as: UInt32.self), Int(count) * 4 <= self.bytes.count - self.position else {
            return nil
        }
        var nodes: [Int32] = []
        for _ in 0..<count {
            guard let node = self.integer(as: Int32.self) else { return nil }
            nodes.append(node)
        }
        return nodes
    }

    mutating func configs() -> [String: String]? {
        guard let count = self.integer(as: UInt32.self), Int(count) * 8 <= self.bytes.count - self.position else {
            return nil
        }
        var configs: [String: String] = [:]
        for _ in 0..<count {
            guard let key = self.string(), let value = self.string() else { return nil }
            configs[key] = value
        }
        return configs
    }
}
