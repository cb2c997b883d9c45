import Foundation
import MetadataStore
import Synchronization
import Testing

/// A fresh directory under the system temp directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        self.path =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("metadata-store-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: self.path) }
}

@Suite struct LocalMetadataStoreTests {
    @Test func anEmptyStoreHasRevisionZeroAndNoFile() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try LocalMetadataStore(path: directory.path + "/store")
        #expect(try await store.revision() == 0)
        #expect(try await store.get("a") == nil)
        #expect(try await store.range(prefix: "").entries.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/store"))
    }

    @Test func everyCommitBumpsTheRevisionAndStampsItsKeys() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try LocalMetadataStore(path: directory.path + "/store")
        #expect(try await store.compareAndSet("a", value: [1], expectedVersion: 0) == .committed(revision: 1))
        #expect(try await store.compareAndSet("b", value: [2], expectedVersion: 0) == .committed(revision: 2))
        #expect(try await store.compareAndSet("a", value: [3], expectedVersion: 1) == .committed(revision: 3))
        let a = try #require(try await store.get("a"))
        #expect(a.value == [3] && a.createRevision == 1 && a.modRevision == 3)
        #expect(try await store.revision() == 3)
    }

    @Test func compareAndSetConflicts() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try LocalMetadataStore(path: directory.path + "/store")
        _ = try await store.compareAndSet("a", value: [1], expectedVersion: 0)
        // Creating a key that exists conflicts and shows what is there.
        let existing = try #require(try await store.get("a"))
        #expect(
            try await store.compareAndSet("a", value: [2], expectedVersion: 0) == .conflict(key: "a", current: existing)
        )
        // A stale version conflicts.
        _ = try await store.compareAndSet("a", value: [2], expectedVersion: 1)
        #expect(
            try await store.compareAndSet("a", value: [9], expectedVersion: 1)
                == .conflict(key: "a", current: try await store.get("a"))
        )
        // Updating an absent key conflicts with nil.
        #expect(
            try await store.compareAndSet("zz", value: [1], expectedVersion: 5) == .conflict(key: "zz", current: nil)
        )
        // A conflict writes nothing and leaves the revision.
        #expect(try await store.revision() == 2)
        #expect(try await store.get("a")?.value == [2])
    }

    @Test func aTransactionAppliesAllOrNothing() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try LocalMetadataStore(path: directory.path + "/store")
        _ = try await store.compareAndSet("x", value: [1], expectedVersion: 0)
        let failed = try await store.commit([
            MetadataWrite(key: "y", value: [1], expectedVersion: 0),
            MetadataWrite(key: "x", value: [2], expectedVersion: 0),
        ])
        #expect(failed == .conflict(key: "x", current: try await store.get("x")))
        #expect(try await store.get("y") == nil)
        let committed = try await store.commit([
            MetadataWrite(key: "y", value: [1], expectedVersion: 0),
            MetadataWrite(key: "x", value: nil, expectedVersion: 1),
        ])
        #expect(committed == .committed(revision: 2))
        #expect(try await store.get("x") == nil)
        #expect(try await store.get("y")?.modRevision == 2)
        await #expect(throws: MetadataStoreError.self) {
            try await store.commit([
                MetadataWrite(key: "q", value: [1], expectedVersion: 0),
                MetadataWrite(key: "q", value: [2], expectedVersion: 0),
            ])
        }
    }

    @Test func rangeReturnsThePrefixInKeyOrder() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try LocalMetadataStore(path: directory.path + "/store")
        for key in ["topics/b", "brokers/1", "topics/a", "topicsX"] {
            _ = try await store.compareAndSet(key, value: Array(key.utf8), expectedVersion: 0)
        }
        let range = try await store.range(prefix: "topics/")
        #expect(range.entries.map(\.key) == ["topics/a", "topics/b"])
        #expect(range.revision == 4)
    }

    @Test func aReopenedStoreHasEveryKeyAndContinuesTheRevision() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/store"
        do {
            let store = try LocalMetadataStore(path: path)
            _ = try await store.compareAndSet("a", value: [1, 2, 3], expectedVersion: 0)
            _ = try await store.compareAndSet("b", value: [], expectedVersion: 0)
            _ = try await store.compareAndSet("a", value: [4], expectedVersion: 1)
        }
        // A crash between writing the temp file and the rename leaves a .tmp; it is ignored and removed.
        FileManager.default.createFile(atPath: path + ".tmp", contents: Data([0xFF]))
        let reopened = try LocalMetadataStore(path: path)
        #expect(try await reopened.revision() == 3)
        #expect(try await reopened.get("a") == MetadataEntry(key: "a", value: [4], createRevision: 1, modRevision: 3))
        #expect(try await reopened.get("b")?.value == [])
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
        #expect(try await reopened.compareAndSet("a", value: [5], expectedVersion: 3) == .committed(revision: 4))
    }

    @Test func aDamagedFileStopsStartUp() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/store"
        do {
            let store = try LocalMetadataStore(path: path)
            _ = try await store.compareAndSet("key", value: [1, 2, 3], expectedVersion: 0)
        }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 12] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect(throws: MetadataStoreError.self) { try LocalMetadataStore(path: path) }
        try Data("not a store".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: MetadataStoreError.self) { try LocalMetadataStore(path: path) }
    }

    /// A watch's reader cancelled while commits hand it transactions: the store must not wait on the reader's task
    /// while holding its lock (seen as a hang of the image follower's stop).
    @Test(.timeLimit(.minutes(1)))
    func cancellingWatchReadersWhileCommittingNeverHangs() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try LocalMetadataStore(path: directory.path + "/store")
        let commits = 300
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for index in 0..<commits {
                    _ = try await store.commit([MetadataWrite(key: "k\(index)", value: [1], expectedVersion: 0)])
                }
            }
            for _ in 0..<100 {
                let watch = try await store.watch(prefix: "", fromRevision: 0)
                let reader = Task { for try await _ in watch {} }
                await Task.yield()
                reader.cancel()
                _ = await reader.result
            }
            try await group.waitForAll()
        }
        #expect(try await store.revision() == Int64(commits))
        // Watches opened after all that still see every later commit.
        let watch = try await store.watch(prefix: "", fromRevision: 0)
        _ = try await store.commit([MetadataWrite(key: "last", value: [1], expectedVersion: 0)])
        var iterator = watch.makeAsyncIterator()
        #expect(try await iterator.next()?.revision == Int64(commits) + 1)
    }

    @Test func concurrentCreatesOfOneKeyHaveOneWinner() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try LocalMetadataStore(path: directory.path + "/store")
        let winners = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<16 {
                group.addTask {
                    if case .committed = try await store.compareAndSet("k", value: [UInt8(index)], expectedVersion: 0) {
                        return true
                    }
                    return false
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(winners == 1)
        #expect(try await store.revision() == 1)
    }

    @Test func leasesLapseOnTheGivenClock() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let time = Mutex(Duration.zero)
        let store = try LocalMetadataStore(path: directory.path + "/store", clock: LeaseClock { time.withLock { $0 } })
        let lease = try await store.grantLease(ttlSeconds: 5)
        let put = try await store.commit(
            MetadataTransaction(operations: [.put(key: "l", value: [1], leaseID: lease.id)])
        )
        time.withLock { $0 = .seconds(4) }
        #expect(try await store.keepAlive(lease) == 5)
        time.withLock { $0 = .seconds(8) }
        try store.expireLapsedLeases()
        #expect(try await store.get("l") != nil, "kept alive at 4 s, so alive until 9 s")
        time.withLock { $0 = .milliseconds(9_001) }
        try store.expireLapsedLeases()
        #expect(try await store.get("l") == nil)
        #expect(try await store.revision() == (try put.revision()) + 1, "the lapse is one transaction")
        await #expect(throws: MetadataStoreError.leaseNotFound(lease.id)) { try await store.keepAlive(lease) }
    }

    @Test func keysOnALeaseDoNotOutliveTheProcess() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/store"
        do {
            let store = try LocalMetadataStore(path: path)
            let lease = try await store.grantLease(ttlSeconds: 60)
            _ = try await store.commit(
                MetadataTransaction(operations: [
                    .put(key: "ephemeral", value: [1], leaseID: lease.id), .put(key: "lasting", value: [2]),
                ])
            )
            // A put without a lease detaches the key from it.
            _ = try await store.commit(
                MetadataTransaction(operations: [.put(key: "detached", value: [3], leaseID: lease.id)])
            )
            _ = try await store.commit(MetadataTransaction(operations: [.put(key: "detached", value: [4])]))
            try await store.revoke(lease)
            #expect(try await store.get("detached")?.value == [4])
            _ = try await store.commit(
                MetadataTransaction(operations: [
                    .put(key: "ephemeral", value: [5], leaseID: try await store.grantLease(ttlSeconds: 60).id)
                ])
            )
        }
        let reopened = try LocalMetadataStore(path: path)
        #expect(try await reopened.range(prefix: "").entries.map(\.key) == ["detached", "lasting"])
        #expect(try await reopened.revision() == 5, "the revision survives, the lease's keys do not")
        // History before the reopen is gone: a watch from it says so.
        var changes = try await reopened.watch(prefix: "", fromRevision: 2).makeAsyncIterator()
        await #expect(throws: MetadataStoreError.compacted(compactRevision: 5)) { _ = try await changes.next() }
    }
}
