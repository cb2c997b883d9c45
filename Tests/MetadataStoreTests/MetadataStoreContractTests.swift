import EtcdMetadataStore
import EtcdTestSupport
import Foundation
import Logging
import MetadataStore
import Synchronization
import Testing

/// The two implementations of `MetadataStore`: the tests below run against each.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case local
    case etcd

    var testDescription: String { self.rawValue }
}

/// One store of `kind` for one test, and how to compact its history; removed (etcd stopped) after the test.
struct StoreFixture {
    let store: any MetadataStore
    let compact: (Int64) async throws -> Void

    static func with(
        _ kind: StoreKind,
        maxOperationsPerTransaction: Int = 128,
        _ body: (StoreFixture) async throws -> Void
    ) async throws {
        switch kind {
        case .local:
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let store = try LocalMetadataStore(
                path: directory.path + "/store",
                maxOperationsPerTransaction: maxOperationsPerTransaction,
                maxTransactionBytes: 1_572_864 - (64 << 10)
            )
            try await body(StoreFixture(store: store, compact: { try store.compact(upTo: $0) }))
        case .etcd:
            try await EtcdServer.with { server in
                let store = try EtcdMetadataStore(configuration: .init(endpoints: [server.endpoint]))
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
}

extension MetadataCommit {
    /// The revision of a committed transaction; fails the test for a conflict.
    func revision(sourceLocation: SourceLocation = #_sourceLocation) throws -> Int64 {
        guard case .committed(let revision) = self else {
            Issue.record("expected a commit, got \(self)", sourceLocation: sourceLocation)
            throw CancellationError()
        }
        return revision
    }
}

/// The protocol's behaviour, the same for the local store and etcd: transactions and their compares, leases,
/// watches. Serialized: each etcd case starts its own etcd, and lease timing wants a quiet machine.
@Suite(.serialized, .timeLimit(.minutes(2))) struct MetadataStoreContractTests {
    @Test(arguments: StoreKind.allCases)
    func putRangeAndGetRoundTrip(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            let first = try await store.commit(
                MetadataTransaction(operations: [
                    .put(key: "topics/b", value: [2]), .put(key: "topics/a", value: [1]),
                    .put(key: "brokers/1", value: [9]), .put(key: "topicsX", value: []),
                ])
            ).revision()
            #expect(try await store.revision() == first)
            let range = try await store.range(prefix: "topics/")
            #expect(range.entries.map(\.key) == ["topics/a", "topics/b"])
            #expect(range.entries.map(\.value) == [[1], [2]])
            #expect(range.entries.allSatisfy { $0.createRevision == first && $0.modRevision == first })
            #expect(range.revision == first)
            #expect(try await store.get("topicsX")?.value == [])
            #expect(try await store.get("topics/") == nil)
            let second = try await store.commit(
                MetadataTransaction(operations: [.put(key: "topics/a", value: [3]), .delete(key: "topics/b")])
            ).revision()
            #expect(second == first + 1, "one revision per transaction")
            #expect(
                try await store.get("topics/a")
                    == MetadataEntry(key: "topics/a", value: [3], createRevision: first, modRevision: second)
            )
            #expect(try await store.get("topics/b") == nil)
            #expect(try await store.range(prefix: "").entries.map(\.key) == ["brokers/1", "topics/a", "topicsX"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aLargeRangeIsOneSnapshotInKeyOrder(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            // 2,500 keys: etcd's answer comes in pages of 1,000, each read at the first page's revision.
            var revision: Int64 = 0
            for batch in 0..<20 {
                let operations: [MetadataOperation] = (0..<125).map {
                    .put(key: "p/\(String(format: "%05d", batch * 125 + $0))", value: [UInt8(batch)])
                }
                revision = try await store.commit(MetadataTransaction(operations: operations)).revision()
            }
            let range = try await store.range(prefix: "p/")
            #expect(range.revision == revision)
            #expect(range.entries.map(\.key) == (0..<2500).map { "p/\(String(format: "%05d", $0))" })
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentWritersHaveExactlyOneWinner(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            func race(expectedVersion: Int64) async throws -> [MetadataCommit] {
                try await withThrowingTaskGroup(of: MetadataCommit.self) { group in
                    for writer in 0..<12 {
                        group.addTask {
                            try await store.compareAndSet("k", value: [UInt8(writer)], expectedVersion: expectedVersion)
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            let creates = try await race(expectedVersion: 0)
            let created = creates.compactMap { if case .committed(let revision) = $0 { revision } else { nil } }
            #expect(created.count == 1)
            let entry = try #require(try await store.get("k"))
            for case .conflict(let key, let current) in creates {
                #expect(key == "k" && current?.modRevision == entry.modRevision)
            }
            let updates = try await race(expectedVersion: entry.modRevision)
            #expect(updates.filter { if case .committed = $0 { true } else { false } }.count == 1)
            #expect(try await store.get("k")?.modRevision == entry.modRevision + 1)
            // A stale version, and an update of an absent key, conflict and write nothing.
            let before = try await store.revision()
            #expect(
                try await store.compareAndSet("k", value: [0], expectedVersion: entry.modRevision)
                    == .conflict(key: "k", current: try await store.get("k"))
            )
            #expect(
                try await store.compareAndSet("absent", value: [0], expectedVersion: 5)
                    == .conflict(key: "absent", current: nil)
            )
            #expect(try await store.revision() == before)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func theElectionKeyFencesEveryWrite(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            // Node 1 campaigns: the election key, on its lease, if nobody holds it.
            let lease1 = try await store.grantLease(ttlSeconds: 30)
            let campaign = { (lease: MetadataLease, node: UInt8) in
                MetadataTransaction(
                    compares: [.absent("controller")],
                    operations: [.put(key: "controller", value: [node], leaseID: lease.id)]
                )
            }
            let epoch1 = try await store.commit(campaign(lease1, 1)).revision()
            #expect(try await store.get("controller")?.leaseID == lease1.id)
            let fenced = { (epoch: Int64, key: String) in
                MetadataTransaction(
                    compares: [.createRevision(of: "controller", equals: epoch), .absent(key)],
                    operations: [.put(key: key, value: [1])]
                )
            }
            _ = try await store.commit(fenced(epoch1, "topics/a")).revision()
            // A second campaign loses while node 1 holds the key.
            let lease2 = try await store.grantLease(ttlSeconds: 30)
            #expect(
                try await store.commit(campaign(lease2, 2))
                    == .conflict(key: "controller", current: try await store.get("controller"))
            )
            // Node 1's lease ends; node 2 wins; node 1's next write is refused, naming the election key.
            try await store.revoke(lease1)
            let epoch2 = try await store.commit(campaign(lease2, 2)).revision()
            let refused = try await store.commit(fenced(epoch1, "topics/b"))
            #expect(refused == .conflict(key: "controller", current: try await store.get("controller")))
            #expect(try await store.get("topics/b") == nil)
            _ = try await store.commit(fenced(epoch2, "topics/b")).revision()
            // A value compare fences the same way; it fails on an absent key.
            let byValue = MetadataTransaction(
                compares: [.value(of: "controller", equals: [2])],
                operations: [.delete(key: "topics/a")]
            )
            _ = try await store.commit(byValue).revision()
            #expect(try await store.get("topics/a") == nil)
            let onAbsent = MetadataTransaction(
                compares: [.value(of: "nobody", equals: [])],
                operations: [.delete(key: "topics/b")]
            )
            #expect(try await store.commit(onAbsent) == .conflict(key: "nobody", current: nil))
            try await store.revoke(lease2)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aLapsedLeaseDeletesItsKeysInOneTransaction(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            let lease = try await store.grantLease(ttlSeconds: 2)
            let put = try await store.commit(
                MetadataTransaction(operations: [
                    .put(key: "brokers/1", value: [1], leaseID: lease.id),
                    .put(key: "brokers/2", value: [2], leaseID: lease.id),
                    .put(key: "brokers/lasting", value: [3]),
                ])
            ).revision()
            var changes = try await store.watch(prefix: "brokers/", fromRevision: put + 1).makeAsyncIterator()
            let started = ContinuousClock.now
            let expiry = try #require(try await changes.next())
            let waited = ContinuousClock.now - started
            #expect(expiry.events.map(\.key).sorted() == ["brokers/1", "brokers/2"])
            #expect(
                expiry.events.allSatisfy {
                    if case .delete(_, let revision) = $0 { revision == expiry.revision } else { false }
                }
            )
            #expect(waited < .seconds(8), "the lease lapsed \(waited) after it was granted with a 2 s TTL")
            #expect(try await store.range(prefix: "brokers/").entries.map(\.key) == ["brokers/lasting"])
            await #expect(throws: MetadataStoreError.leaseNotFound(lease.id)) { try await store.keepAlive(lease) }
            await #expect(throws: MetadataStoreError.leaseNotFound(lease.id)) {
                try await store.commit(
                    MetadataTransaction(operations: [.put(key: "brokers/3", value: [], leaseID: lease.id)])
                )
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func keepAliveHoldsAKeyPastItsTTL(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            // A 5 s TTL refreshed every 500 ms: the test's own loop runs on the cooperative pool, which the rest of
            // the suite can hold for seconds (a 2 s lease of the controller lapsed that way), so keep a wide margin.
            let lease = try await store.grantLease(ttlSeconds: 5)
            let put = try await store.commit(
                MetadataTransaction(operations: [.put(key: "held", value: [1], leaseID: lease.id)])
            ).revision()
            let started = ContinuousClock.now
            // Refreshing every 500 ms holds the key for three TTLs.
            while ContinuousClock.now - started < .seconds(15) {
                #expect(try await store.keepAlive(lease) >= 1)
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(try await store.get("held")?.modRevision == put)
            // Without keep-alives it goes.
            var changes = try await store.watch(prefix: "held", fromRevision: put + 1).makeAsyncIterator()
            #expect(try await changes.next()?.events == [.delete(key: "held", revision: try await store.revision())])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func revokeDeletesTheKeysAtOnce(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            let lease = try await store.grantLease(ttlSeconds: 60)
            let put = try await store.commit(
                MetadataTransaction(operations: (0..<3).map { .put(key: "e/\($0)", value: [], leaseID: lease.id) })
            ).revision()
            var changes = try await store.watch(prefix: "e/", fromRevision: put + 1).makeAsyncIterator()
            try await store.revoke(lease)
            let revoked = try #require(try await changes.next())
            #expect(revoked.events == (0..<3).map { .delete(key: "e/\($0)", revision: revoked.revision) })
            #expect(try await store.range(prefix: "e/").entries.isEmpty)
            await #expect(throws: MetadataStoreError.leaseNotFound(lease.id)) { try await store.revoke(lease) }
            await #expect(throws: MetadataStoreError.leaseNotFound(lease.id)) { try await store.keepAlive(lease) }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aWatchDeliversEveryTransactionWholeAndInOrder(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            let start = try await store.revision() + 1
            let watch = try await store.watch(prefix: "w/", fromRevision: start)
            let count = 60
            let consumer = Task {
                var seen: [MetadataTransactionEvents] = []
                for try await transaction in watch {
                    seen.append(transaction)
                    if seen.count == count { break }
                }
                return seen
            }
            var committed: [Int64] = []
            for index in 0..<count {
                var operations: [MetadataOperation] = (0..<3).map {
                    .put(key: "w/\(index)/\($0)", value: [UInt8(index)])
                }
                operations.append(.put(key: "outside/\(index)", value: []))
                if index > 0 { operations.append(.delete(key: "w/\(index - 1)/0")) }
                committed.append(try await store.commit(MetadataTransaction(operations: operations)).revision())
            }
            let seen = try await consumer.value
            #expect(seen.map(\.revision) == committed)
            for (index, transaction) in seen.enumerated() {
                var keys = (0..<3).map { "w/\(index)/\($0)" }
                if index > 0 { keys.append("w/\(index - 1)/0") }
                #expect(
                    transaction.events.map(\.key) == keys,
                    "transaction \(index) whole, in operation order, only under the prefix"
                )
            }
            // A watch from a past revision replays from there.
            var replay = try await store.watch(prefix: "w/", fromRevision: committed[10]).makeAsyncIterator()
            #expect(try await replay.next()?.revision == committed[10])
            #expect(try await replay.next()?.revision == committed[11])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aWatchFromRevisionZeroSeesEveryLaterTransaction(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            _ = try await store.compareAndSet("before", value: [], expectedVersion: 0).revision()
            var changes = try await store.watch(prefix: "", fromRevision: 0).makeAsyncIterator()
            let after = try await store.compareAndSet("after", value: [], expectedVersion: 0).revision()
            let first = try #require(try await changes.next())
            #expect(first.revision == after && first.events.map(\.key) == ["after"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aWatchFromACompactedRevisionThrowsCompacted(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            var revisions: [Int64] = []
            for index in 0..<5 {
                revisions.append(try await store.compareAndSet("c/\(index)", value: [], expectedVersion: 0).revision())
            }
            try await fixture.compact(revisions[3])
            for start in [revisions[1], revisions[3]] {
                var changes = try await store.watch(prefix: "c/", fromRevision: start).makeAsyncIterator()
                await #expect(throws: MetadataStoreError.compacted(compactRevision: revisions[3])) {
                    _ = try await changes.next()
                }
            }
            // From the revision after the compaction, the history is whole.
            var changes = try await store.watch(prefix: "c/", fromRevision: revisions[4]).makeAsyncIterator()
            #expect(try await changes.next()?.events.map(\.key) == ["c/4"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aTransactionOverTheOperationLimitIsRefused(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            #expect(store.maxOperationsPerTransaction == 128)
            let limit = store.maxOperationsPerTransaction
            let tooMany = MetadataTransaction(operations: (0...limit).map { .put(key: "ops/\($0)", value: []) })
            do throws(MetadataStoreError) {
                _ = try await store.commit(tooMany)
                Issue.record("a transaction of \(limit + 1) operations committed")
            } catch {
                #expect(error.isTooManyOperations)
                #expect(error.description.contains("at most 128 per transaction"))
            }
            #expect(try await store.range(prefix: "ops/").entries.isEmpty)
            // At the limit it commits; a larger change goes in several transactions, each fenced on its own.
            _ = try await store.commit(MetadataTransaction(operations: Array(tooMany.operations.prefix(limit))))
                .revision()
            let compares = (0...limit).map { MetadataCompare.absent("none/\($0)") }
            await #expect(throws: MetadataStoreError.self) {
                try await store.commit(MetadataTransaction(compares: compares, operations: [.put(key: "x", value: [])]))
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aTransactionOverTheSizeLimitIsRefused(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            #expect(store.maxTransactionBytes == 1_572_864 - 65_536)
            // etcd refuses a request over its 1.5 MiB; the store says how to fix it.
            let tooLarge = MetadataTransaction(operations: [
                .put(key: "big", value: Array(repeating: 7, count: 1_572_865))
            ])
            do throws(MetadataStoreError) {
                _ = try await store.commit(tooLarge)
                Issue.record("a transaction of 1.5 MiB committed")
            } catch {
                #expect(error.isTransactionTooLarge, "\(error)")
            }
            // Up to maxTransactionBytes, with 128 operations, it commits.
            let share = store.maxTransactionBytes / 128
            let operations: [MetadataOperation] = (0..<128).map { index in
                let key = "big/\(index)"
                return .put(key: key, value: Array(repeating: 1, count: share - key.utf8.count - 32))
            }
            let largest = MetadataTransaction(operations: operations)
            #expect(largest.estimatedBytes <= store.maxTransactionBytes)
            _ = try await store.commit(largest).revision()
            #expect(try await store.range(prefix: "big/").entries.count == 128)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aLargeChangeIsSplitIntoFencedTransactions(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            let epoch = try await store.compareAndSet("controller", value: [1], expectedVersion: 0).revision()
            let fence = [MetadataCompare.createRevision(of: "controller", equals: epoch)]
            // 1,000 partitions, each written if still absent: 1,000 compares and 1,000 puts.
            let change = (0..<1000).map { index in
                GuardedOperation(.put(key: "partitions/\(index)", value: [1]), compare: .absent("partitions/\(index)"))
            }
            let transactions = try store.transactions(fencedBy: fence, change)
            #expect(transactions.count == 8, "127 guarded puts beside the fence per transaction")
            #expect(transactions.allSatisfy { $0.compares.first == fence[0] && $0.compares.count <= 128 })
            #expect(transactions.flatMap(\.operations) == change.map(\.operation))
            for transaction in transactions { _ = try await store.commit(transaction).revision() }
            #expect(try await store.range(prefix: "partitions/").entries.count == 1000)
            // Split by size too: 40 values of 64 KiB do not fit in one 1.5 MiB request.
            let large = (0..<40).map {
                GuardedOperation(.put(key: "large/\($0)", value: Array(repeating: 0, count: 64 << 10)))
            }
            let bySize = try store.transactions(fencedBy: fence, large)
            #expect(bySize.count == 2)
            for transaction in bySize { _ = try await store.commit(transaction).revision() }
            // Once the fence fails, every remaining transaction fails, naming it.
            _ = try await store.commit(MetadataTransaction(operations: [.delete(key: "controller")])).revision()
            let refused = try store.transactions(fencedBy: fence, [GuardedOperation(.delete(key: "large/0"))])
            #expect(try await store.commit(refused[0]) == .conflict(key: "controller", current: nil))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func invalidTransactionsAreRefused(kind: StoreKind) async throws {
        try await StoreFixture.with(kind) { fixture in
            let store = fixture.store
            await #expect(throws: MetadataStoreError.invalidWrite("the key 'q' is written twice")) {
                try await store.commit(
                    MetadataTransaction(operations: [.put(key: "q", value: [1]), .delete(key: "q")])
                )
            }
            await #expect(throws: MetadataStoreError.invalidWrite("an empty key")) {
                try await store.commit(MetadataTransaction(operations: [.put(key: "", value: [1])]))
            }
            await #expect(throws: MetadataStoreError.leaseNotFound(12345)) {
                try await store.commit(MetadataTransaction(operations: [.put(key: "l", value: [], leaseID: 12345)]))
            }
            let written = try await store.get("q")
            #expect(written == nil)
        }
    }
}

/// What only etcd does: key prefixes shared by several clusters, endpoint failover, surviving an etcd restart.
@Suite(.serialized, .timeLimit(.minutes(2))) struct EtcdMetadataStoreTests {
    @Test func prefixesIsolateClustersSharingOneEtcd() async throws {
        try await EtcdServer.with { server in
            let a = try EtcdMetadataStore(configuration: .init(endpoints: [server.endpoint], prefix: "/cluster-a"))
            let b = try EtcdMetadataStore(configuration: .init(endpoints: [server.endpoint], prefix: "/cluster-a2/"))
            let raw = try EtcdMetadataStore(configuration: .init(endpoints: [server.endpoint], prefix: ""))
            _ = try await a.compareAndSet("topics/t", value: [1], expectedVersion: 0).revision()
            _ = try await b.compareAndSet("topics/t", value: [2], expectedVersion: 0).revision()
            #expect(try await a.range(prefix: "").entries.map(\.value) == [[1]])
            #expect(try await b.range(prefix: "topics/").entries.map(\.key) == ["topics/t"])
            #expect(try await b.get("topics/t")?.value == [2])
            #expect(
                try await raw.range(prefix: "/").entries.map(\.key) == ["/cluster-a/topics/t", "/cluster-a2/topics/t"]
            )
            // A watch of one cluster sees none of the other's changes.
            let start = try await a.revision() + 1
            var changes = try await a.watch(prefix: "", fromRevision: start).makeAsyncIterator()
            _ = try await b.compareAndSet("topics/u", value: [], expectedVersion: 0).revision()
            let mine = try await a.compareAndSet("topics/u", value: [], expectedVersion: 0).revision()
            let entry = MetadataEntry(key: "topics/u", value: [], createRevision: mine, modRevision: mine)
            #expect(try await changes.next() == MetadataTransactionEvents(revision: mine, events: [.put(entry)]))
            for store in [a, b, raw] { await store.shutdown() }
        }
    }

    @Test func anUnreachableEndpointIsSkippedAndNamed() async throws {
        #expect(throws: MetadataStoreError.self) { try EtcdMetadataStore(configuration: .init(endpoints: [])) }
        #expect(
            throws: MetadataStoreError.invalidConfiguration(
                "the etcd endpoint '127.0.0.1:2379' is not an http://host:port URL (metadata.etcd.endpoints)"
            )
        ) { try EtcdMetadataStore(configuration: .init(endpoints: ["127.0.0.1:2379"])) }
        let deadPort = try EtcdServer.freePort()
        let dead = "http://127.0.0.1:\(deadPort)"
        let lonely = try EtcdMetadataStore(configuration: .init(endpoints: [dead]))
        do throws(MetadataStoreError) {
            _ = try await lonely.get("k")
            Issue.record("a read from an endpoint nobody listens on succeeded")
        } catch {
            #expect(error.isUnreachable)
            #expect(error.description.contains(dead), "\(error)")
        }
        await lonely.shutdown()
        try await EtcdServer.with { server in
            let store = try EtcdMetadataStore(configuration: .init(endpoints: [dead, server.endpoint]))
            let revision = try await store.compareAndSet("k", value: [1], expectedVersion: 0).revision()
            #expect(try await store.get("k")?.modRevision == revision)
            await store.shutdown()
        }
    }

    @Test func aWatchResumesAcrossAnEtcdRestartWithoutLossOrRepeat() async throws {
        try await EtcdServer.with { server in
            let store = try EtcdMetadataStore(configuration: .init(endpoints: [server.endpoint]))
            let start = try await store.revision() + 1
            let watch = try await store.watch(prefix: "r/", fromRevision: start)
            let total = 20
            let consumer = Task {
                var seen: [Int64] = []
                for try await transaction in watch {
                    seen.append(transaction.revision)
                    if seen.count == total { break }
                }
                return seen
            }
            var committed: [Int64] = []
            for index in 0..<(total / 2) {
                committed.append(try await store.compareAndSet("r/\(index)", value: [1], expectedVersion: 0).revision())
            }
            server.kill()
            try server.start()
            for index in (total / 2)..<total {
                committed.append(try await store.compareAndSet("r/\(index)", value: [2], expectedVersion: 0).revision())
            }
            #expect(try await consumer.value == committed)
            await store.shutdown()
        }
    }

    @Test func manyWatchesStayConnectedWhileIdle() async throws {
        try await EtcdServer.with { server in
            let warnings = RecordedLog()
            let logger = Logger(label: "test") { _ in RecordingLogHandler(log: warnings) }
            // An idle watch outlives the request timeout, and each of 12 watches has its own connection.
            let timeout = Duration.seconds(1)
            let store = try EtcdMetadataStore(
                configuration: .init(endpoints: [server.endpoint], requestTimeout: timeout),
                logger: logger
            )
            var watches: [MetadataWatch.AsyncIterator] = []
            for index in 0..<12 {
                watches.append(try await store.watch(prefix: "p\(index)/", fromRevision: 0).makeAsyncIterator())
            }
            try await Task.sleep(for: timeout * 2)  // the idleness under test
            for index in watches.indices {
                let revision = try await store.compareAndSet("p\(index)/x", value: [], expectedVersion: 0).revision()
                #expect(try await watches[index].next()?.revision == revision)
            }
            #expect(warnings.lines.withLock { $0 }.isEmpty)
            await store.shutdown()
        }
    }

    @Test func aWatchResumingIntoACompactedHistoryThrowsCompacted() async throws {
        try await EtcdServer.with { server in
            let store = try EtcdMetadataStore(configuration: .init(endpoints: [server.endpoint]))
            let start = try await store.revision() + 1
            var changes = try await store.watch(prefix: "", fromRevision: start).makeAsyncIterator()
            let first = try await store.compareAndSet("a", value: [], expectedVersion: 0).revision()
            #expect(try await changes.next()?.revision == first)
            // etcd comes back on a port the watch does not know: the history it needs goes meanwhile.
            let oldPort = server.clientPort
            server.kill()
            try server.start(clientPort: try EtcdServer.freePort())
            let writer = try EtcdMetadataStore(configuration: .init(endpoints: [server.endpoint]))
            _ = try await writer.compareAndSet("b", value: [], expectedVersion: 0).revision()
            let last = try await writer.compareAndSet("c", value: [], expectedVersion: 0).revision()
            try await writer.compact(upTo: last)
            await writer.shutdown()
            server.kill()
            try server.start(clientPort: oldPort)
            await #expect(throws: MetadataStoreError.compacted(compactRevision: last)) { _ = try await changes.next() }
            await store.shutdown()
        }
    }
}

/// Log lines a test looks at. Thread-safe: behind a `Mutex`.
final class RecordedLog: Sendable {
    let lines = Mutex<[String]>([])
}

/// Records warnings and worse in a `RecordedLog`. A value; thread-safe.
struct RecordingLogHandler: LogHandler {
    let log: RecordedLog
    var logLevel: Logger.Level = .warning
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        self.log.lines.withLock { $0.append("\(event.message) \(event.metadata ?? [:])") }
    }
}
