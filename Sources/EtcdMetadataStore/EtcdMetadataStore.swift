import AsyncHTTPClient
import FoundationEssentials
import Logging
import MetadataStore
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The clustered metadata store: etcd v3, reached through the HTTP/JSON gateway that etcd serves on its client URLs
/// (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/...`, `/v3/watch`), with AsyncHTTPClient.
///
/// Why the gateway and not gRPC: it needs no generated protobuf code and no gRPC stack, only JSON over HTTP/1.1,
/// and etcd's two streaming calls map onto chunked HTTP bodies: a watch is one POST whose answer streams one JSON
/// message per line for as long as it lives; a keep-alive is one POST answered with one message. The price is JSON
/// (base64 keys and values) instead of protobuf on a path that carries little: cluster metadata.
///
/// - Keys: every key is stored under `Configuration.prefix` (default `/logbroker`, then `/`) and read back without
///   it, so several clusters share one etcd as they shared a ZooKeeper with chroots.
/// - Endpoints: a request goes to the endpoint that last answered; when it cannot connect it tries the next, and
///   fails with `unreachable` naming every endpoint once none answered. A transaction whose connection fails after
///   it was sent is not retried (it may have applied): the caller re-reads.
/// - Watches: a watch reconnects after a dropped stream or an etcd restart (on the next endpoint, after a short
///   pause, for as long as it is iterated) and resumes at the revision after the last one it delivered, so no
///   transaction is lost or repeated; when that revision was compacted away it fails with `compacted`. etcd
///   accepts a watch from exactly its compaction revision but may then leave out events of that revision, so
///   before each (re)connection the watch checks with a range read at the revision before its start that the
///   history is complete.
/// - Limits: etcd's defaults, 128 operations per transaction (`--max-txn-ops`) and 1.5 MiB per request
///   (`--max-request-bytes`); `maxOperationsPerTransaction` and `maxTransactionBytes` tell callers, etcd enforces
///   them (`tooManyOperations`, `transactionTooLarge`).
///
/// Call `shutdown()` before dropping the store: it ends the watches and closes the HTTP clients.
///
/// Thread-safe: the configuration is immutable; the preferred endpoint and the running watches are behind a
/// `Mutex`; AsyncHTTPClient is thread-safe.
public final class EtcdMetadataStore: MetadataStore {
    /// Where etcd is and how long to wait for it. A plain value; thread-safe.
    public struct Configuration: Sendable {
        /// etcd's client URLs, `http://host:port` (`metadata.etcd.endpoints`).
        public var endpoints: [String]
        /// The key prefix of this cluster (`metadata.etcd.prefix`); "" stores keys as they are.
        public var prefix: String
        /// etcd's `--max-txn-ops` (128 unless the etcd servers were started with another).
        public var maxOperationsPerTransaction: Int
        /// etcd's `--max-request-bytes` (1.5 MiB unless the etcd servers were started with another).
        public var maxRequestBytes: Int
        /// How long to wait for a TCP connection to one endpoint before trying the next.
        public var connectTimeout: Duration
        /// How long to wait for a unary answer (range, txn, lease calls).
        public var requestTimeout: Duration
        /// The pause before a dropped watch reconnects.
        public var watchRetryDelay: Duration

        /// - Parameters:
        ///   - endpoints: etcd's client URLs; at least one.
        ///   - prefix: the cluster's key prefix, `/logbroker` by default.
        ///   - maxOperationsPerTransaction: 128, etcd's default `--max-txn-ops`.
        ///   - maxRequestBytes: 1.5 MiB, etcd's default `--max-request-bytes`.
        ///   - connectTimeout: 2 s.
        ///   - requestTimeout: 10 s.
        ///   - watchRetryDelay: 200 ms.
        public init(
            endpoints: [String],
            prefix: String = "/logbroker",
            maxOperationsPerTransaction: Int = 128,
            maxRequestBytes: Int = 1_572_864,
            connectTimeout: Duration = .seconds(2),
            requestTimeout: Duration = .seconds(10),
            watchRetryDelay: Duration = .milliseconds(200)
        ) {
            self.endpoints = endpoints
            self.prefix = prefix
            self.maxOperationsPerTransaction = maxOperationsPerTransaction
            self.maxRequestBytes = maxRequestBytes
            self.connectTimeout = connectTimeout
            self.requestTimeout = requestTimeout
            self.watchRetryDelay = watchRetryDelay
        }
    }

    private struct State {
        /// The index in `endpoints` of the endpoint that answered last.
        var preferred = 0
        var watches: [Int: Task<Void, Never>] = [:]
        var nextWatchID = 0
        var shutDown = false
    }

    public let configuration: Configuration
    public var maxOperationsPerTransaction: Int { self.configuration.maxOperationsPerTransaction }
    /// `maxRequestBytes` less 64 KiB: room for the key prefix and the protobuf framing of up to 128 compares and
    /// 128 operations, which `MetadataTransaction.estimatedBytes` leaves out.
    public var maxTransactionBytes: Int { max(self.configuration.maxRequestBytes - (64 << 10), 0) }
    /// `prefix` and its `/`: what every key of this store starts with in etcd.
    private let keyPrefix: [UInt8]
    private let endpoints: [String]
    /// Range, txn and lease calls: a read timeout, so a silent etcd fails the call.
    private let unaryClient: HTTPClient
    /// Watches: no read timeout, a watch is silent while nothing changes.
    private let streamClient: HTTPClient
    private let state = Mutex(State())
    private let logger: Logger

    /// Answers larger than this are refused (etcd's gateway has no limit of its own; a range is read in pages).
    private static let maxAnswerBytes = 64 << 20
    /// Keys per page of a range read.
    private static let rangePageSize: Int64 = 1000

    /// - Throws: `invalidConfiguration` when no endpoint is given or one is not an `http://` URL.
    public init(
        configuration: Configuration,
        logger: Logger = Logger(label: "metadata-store.etcd")
    ) throws(MetadataStoreError) {
        guard !configuration.endpoints.isEmpty else {
            throw .invalidConfiguration("no etcd endpoint is configured (metadata.etcd.endpoints)")
        }
        for endpoint in configuration.endpoints where !endpoint.hasPrefix("http://") {
            throw .invalidConfiguration(
                "the etcd endpoint '\(endpoint)' is not an http://host:port URL (metadata.etcd.endpoints)"
            )
        }
        self.configuration = configuration
        self.endpoints = configuration.endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        let prefix = configuration.prefix
        self.keyPrefix = Array((prefix.isEmpty || prefix.hasSuffix("/") ? prefix : prefix + "/").utf8)
        self.logger = logger
        var unary = HTTPClient.Configuration()
        unary.timeout = .init(connect: .init(configuration.connectTimeout), read: .init(configuration.requestTimeout))
        // Fail at once on a refused connection, so the next endpoint is tried instead of backing off on this one.
        unary.connectionPool.retryConnectionEstablishment = false
        unary.redirectConfiguration = .disallow
        var stream = unary
        stream.timeout = .init(connect: .init(configuration.connectTimeout), read: nil)
        // Each watch holds its connection for as long as it lives; with the default of 8, a ninth would wait for a
        // connection that never frees.
        stream.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 4096
        self.unaryClient = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: unary)
        self.streamClient = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: stream)
    }

    /// Ends every watch (their sequences finish with `closed`) and closes the HTTP clients. Calls after it fail
    /// with `closed`.
    public func shutdown() async {
        let watches = self.state.withLock { state in
            state.shutDown = true
            defer { state.watches = [:] }
            return Array(state.watches.values)
        }
        for watch in watches {
            watch.cancel()
            await watch.value
        }
        try? await self.unaryClient.shutdown()
        try? await self.streamClient.shutdown()
    }

    // MARK: - Keys

    private func etcdKey(_ key: String) -> [UInt8] { self.keyPrefix + Array(key.utf8) }

    /// The key without this store's prefix (every key etcd returns here is under it).
    private func storeKey(_ bytes: [UInt8]) -> String {
        String(decoding: bytes.dropFirst(self.keyPrefix.count), as: UTF8.self)
    }

    /// etcd's range end for "every key starting with `prefix`": the prefix with its last byte below 0xFF plus one,
    /// or `\0` (every key from `prefix` on) when it has none.
    static func rangeEnd(ofPrefix prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }

    private func entry(_ kv: EtcdKeyValue) -> MetadataEntry {
        let lease = kv.lease?.value ?? 0
        return MetadataEntry(
            key: self.storeKey(kv.key.bytes),
            value: kv.value?.bytes ?? [],
            createRevision: kv.createRevision?.value ?? 0,
            modRevision: kv.modRevision?.value ?? 0,
            leaseID: lease == 0 ? nil : lease
        )
    }

    // MARK: - Reads

    public func revision() async throws(MetadataStoreError) -> Int64 {
        let key = self.etcdKey("")
        let answer: EtcdRangeResponse = try await self.call(
            "/v3/kv/range",
            EtcdRangeRequest(key: EtcdBytes(key), countOnly: true),
            idempotent: true
        )
        return answer.header?.revision?.value ?? 0
    }

    public func get(_ key: String) async throws(MetadataStoreError) -> MetadataEntry? {
        let answer: EtcdRangeResponse = try await self.call(
            "/v3/kv/range",
            EtcdRangeRequest(key: EtcdBytes(self.etcdKey(key))),
            idempotent: true
        )
        return answer.kvs?.first.map(self.entry)
    }

    /// Reads in pages of 1,000 keys, every page at the revision of the first, so the result is one snapshot.
    public func range(prefix: String) async throws(MetadataStoreError) -> MetadataRange {
        let start = self.etcdKey(prefix)
        let end = Self.rangeEnd(ofPrefix: start)
        var entries: [MetadataEntry] = []
        var revision: Int64?
        var from = start
        while true {
            let answer: EtcdRangeResponse = try await self.call(
                "/v3/kv/range",
                EtcdRangeRequest(
                    key: EtcdBytes(from),
                    rangeEnd: EtcdBytes(end),
                    limit: EtcdInt64(Self.rangePageSize),
                    revision: revision.map(EtcdInt64.init)
                ),
                idempotent: true
            )
            if revision == nil { revision = answer.header?.revision?.value ?? 0 }
            let kvs = answer.kvs ?? []
            entries.append(contentsOf: kvs.map(self.entry))
            guard answer.more == true, let last = kvs.last else { break }
            from = last.key.bytes + [0]
        }
        return MetadataRange(entries: entries, revision: revision ?? 0)
    }

    // MARK: - Transactions

    /// One etcd `Txn`: the compares, the operations on success, and on failure a range read of every compared key,
    /// from which the answer names the first compare that failed and what its key holds.
    public func commit(_ transaction: MetadataTransaction) async throws(MetadataStoreError) -> MetadataCommit {
        try transaction.validate()
        var comparedKeys: [String] = []
        for compare in transaction.compares where !comparedKeys.contains(compare.key) {
            comparedKeys.append(compare.key)
        }
        let request = EtcdTxnRequest(
            compare: transaction.compares.map { compare in
                let key = EtcdBytes(self.etcdKey(compare.key))
                switch compare.condition {
                case .modRevision(let revision):
                    return EtcdCompare(key: key, target: "MOD", modRevision: EtcdInt64(revision))
                case .createRevision(let revision):
                    return EtcdCompare(key: key, target: "CREATE", createRevision: EtcdInt64(revision))
                case .value(let value):
                    return EtcdCompare(key: key, target: "VALUE", value: EtcdBytes(value))
                }
            },
            success: transaction.operations.map { operation in
                switch operation {
                case .put(let key, let value, let leaseID):
                    return EtcdRequestOp(
                        requestPut: .init(
                            key: EtcdBytes(self.etcdKey(key)),
                            value: EtcdBytes(value),
                            lease: leaseID.map(EtcdInt64.init)
                        )
                    )
                case .delete(let key):
                    return EtcdRequestOp(requestDeleteRange: .init(key: EtcdBytes(self.etcdKey(key))))
                }
            },
            failure: comparedKeys.map {
                EtcdRequestOp(requestRange: EtcdRangeRequest(key: EtcdBytes(self.etcdKey($0))))
            }
        )
        let answer: EtcdTxnResponse
        do {
            answer = try await self.call("/v3/kv/txn", request, idempotent: false)
        } catch let error where error.description.contains("too many operations in txn request") {
            throw .tooManyOperations(count: transaction.operationCount, limit: self.maxOperationsPerTransaction)
        } catch let error where error.description.contains("request is too large") {
            throw .transactionTooLarge(bytes: transaction.estimatedBytes, limit: self.maxTransactionBytes)
        } catch let error where error.description.contains("requested lease not found") {
            let leases = transaction.operations.compactMap {
                if case .put(_, _, let lease?) = $0 { lease } else { nil }
            }
            throw leases.count == 1 ? .leaseNotFound(leases[0]) : error
        }
        if answer.succeeded == true { return .committed(revision: answer.header?.revision?.value ?? 0) }
        guard let firstCompare = transaction.compares.first else {
            throw .invalidResponse(endpoint: self.currentEndpoint(), reason: "a transaction without compares failed")
        }
        var current: [String: MetadataEntry] = [:]
        for response in answer.responses ?? [] {
            for kv in response.responseRange?.kvs ?? [] {
                let entry = self.entry(kv)
                current[entry.key] = entry
            }
        }
        // etcd says only that some compare failed; the keys as the transaction saw them tell which.
        let failed = transaction.compares.first { !$0.holds(for: current[$0.key]) } ?? firstCompare
        return .conflict(key: failed.key, current: current[failed.key])
    }

    /// Compacts etcd's history up to `revision` (every key's older versions go; a watch from before it fails with
    /// `compacted`). Operators and tests use it; the broker never compacts.
    public func compact(upTo revision: Int64) async throws(MetadataStoreError) {
        struct Empty: Decodable {}
        let _: Empty = try await self.call(
            "/v3/kv/compaction",
            EtcdCompactionRequest(revision: EtcdInt64(revision), physical: true),
            idempotent: true
        )
    }

    // MARK: - Leases

    public func grantLease(ttlSeconds: Int64) async throws(MetadataStoreError) -> MetadataLease {
        let answer: EtcdLeaseResponse = try await self.call(
            "/v3/lease/grant",
            EtcdLeaseRequest(ttl: EtcdInt64(ttlSeconds)),
            idempotent: true
        )
        guard let id = answer.id?.value, answer.error?.isEmpty ?? true else {
            throw .rejected(
                endpoint: self.currentEndpoint(),
                code: 0,
                message: answer.error ?? "no lease id in the answer"
            )
        }
        return MetadataLease(id: id, ttlSeconds: answer.ttl?.value ?? ttlSeconds)
    }

    /// One message on etcd's keep-alive stream: the gateway answers it and ends the stream. A TTL of 0 (left out of
    /// the answer) means the lease is gone.
    public func keepAlive(_ lease: MetadataLease) async throws(MetadataStoreError) -> Int64 {
        let message: EtcdStreamMessage<EtcdLeaseResponse> = try await self.call(
            "/v3/lease/keepalive",
            EtcdLeaseRequest(id: EtcdInt64(lease.id)),
            idempotent: true
        )
        if let error = message.error {
            throw .rejected(endpoint: self.currentEndpoint(), code: error.grpcCode ?? 0, message: error.message ?? "")
        }
        guard let ttl = message.result?.ttl?.value, ttl > 0 else { throw .leaseNotFound(lease.id) }
        return ttl
    }

    public func revoke(_ lease: MetadataLease) async throws(MetadataStoreError) {
        struct Empty: Decodable {}
        let _: Empty = try await self.call(
            "/v3/lease/revoke",
            EtcdLeaseRequest(id: EtcdInt64(lease.id)),
            idempotent: true,
            leaseID: lease.id
        )
    }

    // MARK: - Watches

    public func watch(prefix: String, fromRevision: Int64) async throws(MetadataStoreError) -> MetadataWatch {
        let (watch, continuation) = MetadataWatch.makeWatch()
        let id: Int? = self.state.withLock { state in
            guard !state.shutDown else { return nil }
            defer { state.nextWatchID += 1 }
            return state.nextWatchID
        }
        guard let id else { throw .closed("the store was shut down") }
        // "From the next revision" is fixed now, so a transaction committed after this returns is always seen.
        let start = fromRevision > 0 ? fromRevision : try await self.revision() + 1
        let task = Task {
            await self.runWatch(prefix: prefix, fromRevision: start, continuation: continuation)
            _ = self.state.withLock { $0.watches.removeValue(forKey: id) }
        }
        self.state.withLock { $0.watches[id] = task }
        continuation.onTermination = { _ in task.cancel() }
        return watch
    }

    /// Streams the watch, reconnecting until the consumer stops, the store shuts down or the history is gone.
    private func runWatch(
        prefix: String,
        fromRevision: Int64,
        continuation: AsyncThrowingStream<MetadataTransactionEvents, any Error>.Continuation
    ) async {
        var next = fromRevision
        var failures = 0
        while !Task.isCancelled {
            do {
                try await self.streamWatch(prefix: prefix, from: next) { transaction in
                    continuation.yield(transaction)
                    next = transaction.revision + 1
                    if failures > 0 {
                        self.logger.info("etcd watch resumed", metadata: ["revision": "\(transaction.revision)"])
                        failures = 0
                    }
                }
            } catch let error where error.compactRevision != nil {
                continuation.finish(throwing: error)
                return
            } catch {
                if Task.isCancelled { break }
                failures += 1
                // Say so once per outage; then quietly keep trying.
                self.logger.log(
                    level: failures == 1 ? .warning : .debug,
                    "etcd watch dropped; reconnecting",
                    metadata: ["prefix": "\(prefix)", "next.revision": "\(next)", "error": "\(error)"]
                )
                self.rotateEndpoint()
            }
            try? await Task.sleep(for: self.configuration.watchRetryDelay)
        }
        continuation.finish(throwing: MetadataStoreError.closed("the watch was cancelled"))
    }

    /// One watch stream from `start` until it ends. Delivers each revision's events whole: etcd never splits one
    /// revision over two watch responses (without `fragment`), and one response may hold several revisions.
    private func streamWatch(
        prefix: String,
        from start: Int64,
        deliver: (MetadataTransactionEvents) -> Void
    ) async throws(MetadataStoreError) {
        let key = self.etcdKey(prefix)
        // etcd accepts a watch from its compaction revision itself, but may leave out that revision's deletes; a
        // range read at `start - 1` fails exactly when `start - 1` is below the compaction revision. The watch is
        // then made from revision 1 instead, which etcd cancels naming its compaction revision.
        var historyIncomplete = false
        if start > 1 {
            do {
                let _: EtcdRangeResponse = try await self.call(
                    "/v3/kv/range",
                    EtcdRangeRequest(key: EtcdBytes(key), revision: EtcdInt64(start - 1), countOnly: true),
                    idempotent: true
                )
            } catch let error where error.description.contains("required revision has been compacted") {
                historyIncomplete = true
            }
        }
        let endpoint = self.currentEndpoint()
        let body = Self.encode(
            EtcdWatchRequest(
                createRequest: .init(
                    key: EtcdBytes(key),
                    rangeEnd: EtcdBytes(Self.rangeEnd(ofPrefix: key)),
                    startRevision: EtcdInt64(historyIncomplete ? 1 : start)
                )
            )
        )
        let response: HTTPClientResponse
        do {
            response = try await self.streamClient.execute(
                Self.request(endpoint + "/v3/watch", body: body),
                timeout: .init(self.configuration.requestTimeout)
            )
        } catch {
            throw .unreachable(endpoints: [endpoint], reason: "\(error)")
        }
        guard response.status == .ok else {
            let bytes = (try? await response.body.collect(upTo: 1 << 20)) ?? ByteBuffer()
            throw Self.error(status: response.status, body: bytes, endpoint: endpoint, leaseID: nil)
        }
        var lines = LineSplitter()
        do {
            for try await chunk in response.body {
                lines.append(chunk)
                guard lines.pending <= Self.maxAnswerBytes else {
                    throw MetadataStoreError.invalidResponse(endpoint: endpoint, reason: "a watch message over 64 MiB")
                }
                while let line = lines.next() {
                    let message: EtcdStreamMessage<EtcdWatchResponse>
                    do {
                        message = try JSONDecoder().decode(EtcdStreamMessage<EtcdWatchResponse>.self, from: Data(line))
                    } catch {
                        throw MetadataStoreError.invalidResponse(endpoint: endpoint, reason: "\(error)")
                    }
                    if let error = message.error {
                        throw MetadataStoreError.rejected(
                            endpoint: endpoint,
                            code: error.grpcCode ?? 0,
                            message: error.message ?? ""
                        )
                    }
                    guard let result = message.result else { continue }
                    if let compacted = result.compactRevision?.value, compacted > 0 {
                        throw MetadataStoreError.compacted(compactRevision: compacted)
                    }
                    if result.canceled == true {
                        throw MetadataStoreError.closed("etcd cancelled the watch: \(result.cancelReason ?? "")")
                    }
                    if historyIncomplete, !(result.events ?? []).isEmpty {
                        throw MetadataStoreError.compacted(compactRevision: start)
                    }
                    self.deliver(result.events ?? [], to: deliver)
                }
            }
        } catch let error as MetadataStoreError {
            throw error
        } catch {
            throw .unreachable(endpoints: [endpoint], reason: "the watch stream broke: \(error)")
        }
        throw .unreachable(endpoints: [endpoint], reason: "etcd ended the watch stream")
    }

    /// Groups `events` by revision (a delete's `mod_revision` is its revision) and delivers each group.
    private func deliver(_ events: [EtcdWatchResponse.Event], to deliver: (MetadataTransactionEvents) -> Void) {
        var batch: MetadataTransactionEvents?
        for event in events {
            let revision = event.kv.modRevision?.value ?? 0
            let change: MetadataEvent
            if event.type == "DELETE" {
                change = .delete(key: self.storeKey(event.kv.key.bytes), revision: revision)
            } else {
                change = .put(self.entry(event.kv))
            }
            if batch?.revision == revision {
                batch?.events.append(change)
            } else {
                if let batch { deliver(batch) }
                batch = MetadataTransactionEvents(revision: revision, events: [change])
            }
        }
        if let batch { deliver(batch) }
    }

    // MARK: - HTTP

    private func currentEndpoint() -> String {
        self.endpoints[self.state.withLock { $0.preferred } % self.endpoints.count]
    }

    private func rotateEndpoint() {
        self.state.withLock { $0.preferred = ($0.preferred + 1) % self.endpoints.count }
    }

    private static func encode(_ value: some Encodable) -> ByteBuffer {
        // Encoding these plain structs cannot fail.
        ByteBuffer(bytes: (try? JSONEncoder().encode(value)) ?? Data())
    }

    private static func request(_ url: String, body: ByteBuffer) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(body)
        return request
    }

    /// POSTs `body` to `path` on the preferred endpoint, then on each other one while they cannot be reached. A
    /// request that is not `idempotent` is not sent again once it may have reached etcd. A streamed answer (lease
    /// keep-alive) is read to its end and its first message decoded.
    private func call<Answer: Decodable>(
        _ path: String,
        _ body: some Encodable,
        idempotent: Bool,
        leaseID: Int64? = nil
    ) async throws(MetadataStoreError) -> Answer {
        let bytes = Self.encode(body)
        let first = self.state.withLock { state -> Int? in state.shutDown ? nil : state.preferred }
        guard let first else { throw .closed("the store was shut down") }
        var failures: [String] = []
        for attempt in 0..<self.endpoints.count {
            let index = (first + attempt) % self.endpoints.count
            let endpoint = self.endpoints[index]
            let response: HTTPClientResponse
            let answer: ByteBuffer
            do {
                response = try await self.unaryClient.execute(
                    Self.request(endpoint + path, body: bytes),
                    timeout: .init(self.configuration.requestTimeout)
                )
                answer = try await response.body.collect(upTo: Self.maxAnswerBytes)
            } catch {
                failures.append("\(endpoint): \(Self.describe(error))")
                if idempotent || Self.isConnectFailure(error) { continue }
                throw .unreachable(
                    endpoints: [endpoint],
                    reason: "\(Self.describe(error)) after the request was sent; its outcome is unknown"
                )
            }
            if index != first { self.state.withLock { $0.preferred = index } }
            guard response.status == .ok else {
                let error = Self.error(status: response.status, body: answer, endpoint: endpoint, leaseID: leaseID)
                // A member without a leader (etcd restarting, partitioned) cannot serve: try another.
                if response.status == .serviceUnavailable, idempotent {
                    failures.append("\(endpoint): \(error)")
                    continue
                }
                throw error
            }
            let view = answer.readableBytesView
            let line = view[view.startIndex..<(view.firstIndex(of: UInt8(ascii: "\n")) ?? view.endIndex)]
            do {
                return try JSONDecoder().decode(Answer.self, from: Data(line))
            } catch {
                throw .invalidResponse(endpoint: endpoint, reason: "\(error)")
            }
        }
        throw .unreachable(endpoints: self.endpoints, reason: failures.joined(separator: "; "))
    }

    /// The error a non-200 answer stands for.
    private static func error(
        status: HTTPResponseStatus,
        body: ByteBuffer,
        endpoint: String,
        leaseID: Int64?
    ) -> MetadataStoreError {
        let decoded = try? JSONDecoder().decode(EtcdErrorBody.self, from: Data(body.readableBytesView))
        let message = decoded?.message ?? decoded?.error ?? String(buffer: body)
        if let leaseID, message.contains("requested lease not found") { return .leaseNotFound(leaseID) }
        return .rejected(endpoint: endpoint, code: decoded?.code ?? Int(status.code), message: message)
    }

    /// Whether `error` happened before the request could reach etcd (no connection), so sending it elsewhere is safe.
    private static func isConnectFailure(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        if error is NIOConnectionError { return true }
        if let error = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(error.errnoCode) {
            return true
        }
        if let error = error as? ChannelError, case .connectTimeout = error { return true }
        return false
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return "cannot connect (\(first.error))"
        }
        if let error = error as? IOError, error.errnoCode == ECONNREFUSED { return "connection refused" }
        return "\(error)"
    }
}

/// Splits a streamed body into its newline-ended JSON messages. A value used by one stream.
private struct LineSplitter {
    private var buffer = ByteBuffer()

    /// Bytes received and not yet returned as a line.
    var pending: Int { self.buffer.readableBytes }

    mutating func append(_ chunk: ByteBuffer) {
        var chunk = chunk
        self.buffer.writeBuffer(&chunk)
    }

    /// The next complete line without its newline, skipping empty ones; nil until one is complete.
    mutating func next() -> [UInt8]? {
        while let newline = self.buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - self.buffer.readerIndex
            let line = self.buffer.readBytes(length: length) ?? []
            self.buffer.moveReaderIndex(forwardBy: 1)
            if !line.isEmpty { return line }
        }
        self.buffer.discardReadBytes()
        return nil
    }
}
