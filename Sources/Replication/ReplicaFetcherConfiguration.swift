/// Settings of the followers' fetchers, with Kafka's names and defaults (`num.replica.fetchers`,
/// `replica.fetch.*`, `replica.socket.timeout.ms`). A value; thread-safe.
public struct ReplicaFetcherConfiguration: Sendable {
    /// This broker's node id: the replica id of its fetches and OffsetForLeaderEpoch requests.
    public var brokerID: Int32
    /// `num.replica.fetchers`: fetchers (connections) per leader; a partition goes to one of them by hash. Default 1.
    public var fetchersPerLeader: Int
    /// `replica.fetch.max.bytes`: the bytes asked for per partition (at least one batch comes anyway). Default
    /// 1,048,576.
    public var fetchMaxBytes: Int32
    /// `replica.fetch.response.max.bytes`: the bytes asked for per fetch. Default 10,485,760.
    public var fetchResponseMaxBytes: Int32
    /// `replica.fetch.wait.max.ms`: how long the leader may hold a fetch waiting for `fetchMinBytes`. Default 500.
    public var fetchWaitMaxMs: Int32
    /// `replica.fetch.min.bytes`: the bytes a fetch waits for. Default 1.
    public var fetchMinBytes: Int32
    /// `replica.fetch.backoff.ms`: the pause of a partition after an error, and of a fetcher before it reconnects
    /// after a failed connection. Default 1,000.
    public var fetchBackoffMs: Int64
    /// `replica.socket.timeout.ms`: how long a request to the leader may go unanswered beyond the fetch's own wait
    /// before the connection is dropped and opened again. Default 30,000.
    public var socketTimeoutMs: Int64

    public init(
        brokerID: Int32,
        fetchersPerLeader: Int = 1,
        fetchMaxBytes: Int32 = 1_048_576,
        fetchResponseMaxBytes: Int32 = 10_485_760,
        fetchWaitMaxMs: Int32 = 500,
        fetchMinBytes: Int32 = 1,
        fetchBackoffMs: Int64 = 1000,
        socketTimeoutMs: Int64 = 30_000
    ) {
        self.brokerID = brokerID
        self.fetchersPerLeader = max(1, fetchersPerLeader)
        self.fetchMaxBytes = fetchMaxBytes
        self.fetchResponseMaxBytes = fetchResponseMaxBytes
        self.fetchWaitMaxMs = fetchWaitMaxMs
        self.fetchMinBytes = fetchMinBytes
        self.fetchBackoffMs = fetchBackoffMs
        self.socketTimeoutMs = socketTimeoutMs
    }

    /// The client id of the fetchers' requests, as Kafka names its fetcher threads' clients.
    var clientID: String { "broker-\(self.brokerID)-fetcher" }
}
