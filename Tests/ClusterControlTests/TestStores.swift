import ClusterControl
import EtcdMetadataStore
import EtcdTestSupport
import Foundation
import Logging
import MetadataStore
import Synchronization
import Testing

/// The stores the control plane tests run on: the in-process local store, and a real etcd.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible {
    case local
    case etcd

    var testDescription: String { self.rawValue }
}

/// A store for one test, and how to compact its history up to a revision.
struct StoreFixture: Sendable {
    let store: any MetadataStore
    let compact: @Sendable (Int64) async throws -> Void
}

/// Runs `body` on a fresh store of `kind` (a temporary file, or a temporary etcd), removed afterwards.
func withStore(
    _ kind: StoreKind,
    maxOperationsPerTransaction: Int = 128,
    _ body: (StoreFixture) async throws -> Void
) async throws {
    switch kind {
    case .local:
        let (directory, path) = try temporaryStorePath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try LocalMetadataStore(path: path, maxOperationsPerTransaction: maxOperationsPerTransaction)
        try await body(StoreFixture(store: store, compact: { try store.compact(upTo: $0) }))
    case .etcd:
        try await EtcdServer.with { server in
            let store = try EtcdMetadataStore(
                configuration: .init(
                    endpoints: [server.endpoint],
                    maxOperationsPerTransaction: maxOperationsPerTransaction
                )
            )
            do {
                try await body(StoreFixture(store: store, compact: { try await store.compact(upTo: $0) }))
            } catch {
                await store.shutdown()
                throw error
            }
            await store.shutdown()
        }
    }
}

/// A real store seen through a connection the test can cut: while cut, every call fails as an unreachable store
/// does, and open watches end with that error. It records the transactions committed through it.
final class SeveredStore: MetadataStore {
    private struct State {
        var reachable = true
        var watches: [Int: AsyncThrowingStream<MetadataTransactionEvents, any Error>.Continuation] = [:]
        var nextWatch = 0
        var committed: [MetadataTransaction] = []
    }

    let inner: any MetadataStore
    private let state = Mutex(State())

    init(_ inner: any MetadataStore) {
        self.inner = inner
    }

    var maxOperationsPerTransaction: Int { self.inner.maxOperationsPerTransaction }
    var maxTransactionBytes: Int { self.inner.maxTransactionBytes }

    /// The transactions committed through this store since the last call, in order.
    func takeCommitted() -> [MetadataTransaction] {
        self.state.withLock { state in
            defer { state.committed = [] }
            return state.committed
        }
    }

    func sever() {
        let watches = self.state.withLock { state in
            state.reachable = false
            defer { state.watches = [:] }
            return Array(state.watches.values)
        }
        for watch in watches {
            watch.finish(throwing: MetadataStoreError.unreachable(endpoints: ["test"], reason: "severed"))
        }
    }

    func restore() {
        self.state.withLock { $0.reachable = true }
    }

    private func check() throws(MetadataStoreError) {
        guard self.state.withLock({ $0.reachable }) else {
            throw .unreachable(endpoints: ["test"], reason: "severed")
        }
    }

    func revision() async throws(MetadataStoreError) -> Int64 {
        try self.check()
        return try await self.inner.revision()
    }

    func get(_ key: String) async throws(MetadataStoreError) -> MetadataEntry? {
        try self.check()
        return try await self.inner.get(key)
    }

    func range(prefix: String) async throws(MetadataStoreError) -> MetadataRange {
        try self.check()
        return try await self.inner.range(prefix: prefix)
    }

    func commit(_ transaction: MetadataTransaction) async throws(MetadataStoreError) -> MetadataCommit {
        try self.check()
        let outcome = try await self.inner.commit(transaction)
        if case .committed = outcome { self.state.withLock { $0.committed.append(transaction) } }
        return outcome
    }

    func watch(prefix: String, fromRevision: Int64) async throws(MetadataStoreError) -> MetadataWatch {
        try self.check()
        let inner = try await self.inner.watch(prefix: prefix, fromRevision: fromRevision)
        let (watch, continuation) = MetadataWatch.makeWatch()
        // Forwards the inner watch so `cut` can end it; once the reader stops, it ends at the next transaction.
        Task.detached {
            do {
                for try await transaction in inner {
                    if case .terminated = continuation.yield(transaction) { return }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        let id = self.state.withLock { state in
            defer { state.nextWatch += 1 }
            state.watches[state.nextWatch] = continuation
            return state.nextWatch
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.watches.removeValue(forKey: id) }
        }
        return watch
    }

    func grantLease(ttlSeconds: Int64) async throws(MetadataStoreError) -> MetadataLease {
        try self.check()
        return try await self.inner.grantLease(ttlSeconds: ttlSeconds)
    }

    func keepAlive(_ lease: MetadataLease) async throws(MetadataStoreError) -> Int64 {
        try self.check()
        return try await self.inner.keepAlive(lease)
    }

    func revoke(_ lease: MetadataLease) async throws(MetadataStoreError) {
        try self.check()
        try await self.inner.revoke(lease)
    }
}

/// Polls `condition` every 10 ms until it holds; fails the test after `timeout`.
func eventually(
    timeout: Duration = .seconds(30),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("the condition did not hold within \(timeout)", sourceLocation: sourceLocation)
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}
