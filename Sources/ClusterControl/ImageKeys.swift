import MetadataStore

/// The image's key layout in the metadata store: `cluster/id`, `brokers/<node id>`, `topics/<name>` (one key per
/// topic, all its partitions in it), `configs/broker/<resource>` and `producer-ids`, plus the election key
/// `controller`, which is not part of the image. Stateless; thread-safe.
public enum ImageKeys {
    public static let clusterID = "cluster/id"
    public static let brokersPrefix = "brokers/"
    public static let topicsPrefix = "topics/"
    public static let brokerConfigsPrefix = "configs/broker/"
    public static let producerIDs = "producer-ids"
    /// The active controller's election key: attached to its lease, holding its node id and CONTROLLER endpoint;
    /// its `createRevision` is the controller epoch.
    public static let controller = "controller"

    public static func broker(_ id: Int32) -> String { Self.brokersPrefix + "\(id)" }
    public static func topic(_ name: String) -> String { Self.topicsPrefix + name }
    public static func brokerConfigs(_ resource: String) -> String { Self.brokerConfigsPrefix + resource }

    /// The puts and deletes that turn `image` into `next`, one per changed key, in an order where every prefix is a
    /// valid image on its own: the cluster id, brokers, topics (by name), broker configs, then producer ids.
    public static func writes(from image: ClusterImage, to next: ClusterImage) -> [ImageWrite] {
        var writes: [ImageWrite] = []
        if next.clusterID != image.clusterID, !next.clusterID.isEmpty {
            writes.append(ImageWrite(key: Self.clusterID, value: Array(next.clusterID.utf8)))
        }
        for id in Set(image.brokers.keys).union(next.brokers.keys).sorted() where image.brokers[id] != next.brokers[id]
        {
            writes.append(ImageWrite(key: Self.broker(id), value: next.brokers[id].map(ImageCodec.encode)))
        }
        for name in Set(image.topics.keys).union(next.topics.keys).sorted()
        where image.topics[name] != next.topics[name] {
            writes.append(ImageWrite(key: Self.topic(name), value: next.topics[name].map(ImageCodec.encode)))
        }
        for resource in Set(image.brokerConfigs.keys).union(next.brokerConfigs.keys).sorted()
        where image.brokerConfigs[resource] != next.brokerConfigs[resource] {
            writes.append(
                ImageWrite(
                    key: Self.brokerConfigs(resource),
                    value: next.brokerConfigs[resource].map { ImageCodec.encode(configs: $0) }
                )
            )
        }
        if next.nextProducerID != image.nextProducerID {
            writes.append(
                ImageWrite(key: Self.producerIDs, value: ImageCodec.encode(nextProducerID: next.nextProducerID))
            )
        }
        return writes
    }
}

/// One key the controller writes: a put of `value`, or a delete when nil. A plain value; thread-safe.
public struct ImageWrite: Hashable, Sendable {
    public var key: String
    public var value: [UInt8]?

    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }
}

/// The active controller as its election key says: its node id, where brokers reach it, and its epoch. A plain
/// value; thread-safe.
public struct ControllerLeader: Hashable, Sendable {
    public var nodeID: Int32
    /// Its CONTROLLER listener; nil when it takes no connections (the standalone broker's in-process controller).
    public var endpoint: BrokerEndpoint?
    /// The election key's `createRevision`: every write of this controller is fenced on it.
    public var epoch: Int64

    public init(nodeID: Int32, endpoint: BrokerEndpoint?, epoch: Int64) {
        self.nodeID = nodeID
        self.endpoint = endpoint
        self.epoch = epoch
    }
}

/// The image a follower has applied, with what the controller needs to write on it: the `modRevision` of every
/// key (its compares) and the election key. A plain value; thread-safe.
public struct FollowedImage: Hashable, Sendable {
    /// Its `clusterID` is empty until the cluster is created; its `revision` is the store revision applied.
    public var image: ClusterImage
    /// The `modRevision` of every image key and of the election key.
    public var modRevisions: [String: Int64]
    /// The controller whose election key is in the store, nil while none is.
    public var controller: ControllerLeader?

    public init(
        image: ClusterImage = ClusterImage(clusterID: ""),
        modRevisions: [String: Int64] = [:],
        controller: ControllerLeader? = nil
    ) {
        self.image = image
        self.modRevisions = modRevisions
        self.controller = controller
    }

    /// The store revision applied: the broker's metadata version.
    public var revision: Int64 { self.image.revision }

    /// Whether the cluster was created (its id is in the store).
    public var hasCluster: Bool { !self.image.clusterID.isEmpty }

    /// The image of a whole `range` read.
    /// - Throws: `corruptImage` for a key that does not decode.
    public init(range: MetadataRange) throws(ClusterControlError) {
        self.init()
        for entry in range.entries { try self.apply(.put(entry)) }
        self.image.revision = range.revision
    }

    /// Applies one event of a watched transaction (the caller sets the revision once the transaction is applied).
    /// Keys outside the layout are ignored, so a newer controller may add some.
    /// - Throws: `corruptImage` for a value that does not decode; the image is then unchanged.
    public mutating func apply(_ event: MetadataEvent) throws(ClusterControlError) {
        let key = event.key
        let entry: MetadataEntry?
        switch event {
        case .put(let put): entry = put
        case .delete: entry = nil
        }
        if key == ImageKeys.clusterID {
            self.image.clusterID = entry.map { String(decoding: $0.value, as: UTF8.self) } ?? ""
        } else if key == ImageKeys.controller {
            self.controller = try entry.map { entry throws(ClusterControlError) in
                try ImageCodec.decodeController(entry.value, key: key, epoch: entry.createRevision)
            }
        } else if key.hasPrefix(ImageKeys.brokersPrefix) {
            guard let id = Int32(key.dropFirst(ImageKeys.brokersPrefix.count)) else { return }
            self.image.brokers[id] = try entry.map { entry throws(ClusterControlError) in
                try ImageCodec.decodeBroker(entry.value, key: key, modRevision: entry.modRevision)
            }
        } else if key.hasPrefix(ImageKeys.topicsPrefix) {
            let name = String(key.dropFirst(ImageKeys.topicsPrefix.count))
            self.image.topics[name] = try entry.map { entry throws(ClusterControlError) in
                try ImageCodec.decodeTopic(entry.value, key: key)
            }
        } else if key.hasPrefix(ImageKeys.brokerConfigsPrefix) {
            let resource = String(key.dropFirst(ImageKeys.brokerConfigsPrefix.count))
            self.image.brokerConfigs[resource] = try entry.map { entry throws(ClusterControlError) in
                try ImageCodec.decodeConfigs(entry.value, key: key)
            }
        } else if key == ImageKeys.producerIDs {
            self.image.nextProducerID =
                try entry.map { entry throws(ClusterControlError) in
                    try ImageCodec.decodeNextProducerID(entry.value, key: key)
                } ?? 0
        } else {
            return
        }
        self.modRevisions[key] = entry?.modRevision
    }
}
