import Logging
import MetadataStore

/// Follows the cluster image in the metadata store, as every broker does (KRaft's metadata loader and publishers):
/// reads the whole image with `range` at revision R, watches from R + 1, and applies each transaction in revision
/// order, never going backwards; the revision applied is the broker's metadata version. Each transaction's
/// `MetadataChange`s for this node go to the listeners as one batch, in revision order.
///
/// - When the watch's start revision was compacted away, it reads the whole image again and publishes the
///   difference from the image it had.
/// - When the store cannot be reached, it keeps the image it has (nothing is invented), logs it once, and tries
///   again with backoff; it logs again when the store answers.
/// - A key that does not decode is logged and left as it was; the rest of its transaction applies.
///
/// Publication can be held back (`start(holdingChanges: true)`) until `releaseChanges()`, which then gives the
/// listeners the whole image at once: a starting broker opened its logs before the image was read, and the
/// elections of its start should reach it in one batch, not as the old leaderships followed by the new ones.
///
/// Thread safety: an actor. Applying is synchronous on it; publications run one after another in a chain of tasks,
/// so listeners hear the batches in order, one at a time, and the follower goes on applying meanwhile. A listener
/// must not wait for a later publication (it would wait for itself).
public actor ImageFollower: ConditionWaiting {
    public typealias BatchListener = @Sendable ([MetadataChange]) async -> Void

    /// What waiters test: the image applied and the revision whose changes the listeners have heard.
    struct Progress {
        var followed: FollowedImage
        var published: Int64
    }

    private let store: any MetadataStore
    private let nodeID: Int32
    private let logger: Logger
    private let backoff: ClosedRange<Duration>
    private var progress = Progress(followed: FollowedImage(), published: 0)
    private var listeners: [BatchListener] = []
    private var holding = false
    /// The last publication scheduled; the next one runs after it.
    private var publication: Task<Void, Never>?
    private var following: Task<Void, Never>?
    var waiters = ConditionWaiters<Progress>()
    private var stopped = false
    /// Whether the store failed the last call (logged once until it answers again).
    public private(set) var isStoreUnreachable = false

    /// - Parameters:
    ///   - nodeID: the node whose leaderships the changes report.
    ///   - backoff: the first and the longest wait between attempts to reach the store.
    public init(
        store: any MetadataStore,
        nodeID: Int32,
        logger: Logger,
        backoff: ClosedRange<Duration> = .milliseconds(100) ... .seconds(5)
    ) {
        self.store = store
        self.nodeID = nodeID
        self.logger = logger
        self.backoff = backoff
    }

    /// The image applied, with the keys' revisions and the election key.
    public var followed: FollowedImage { self.progress.followed }

    /// The image applied; nil until the cluster was created.
    public var image: ClusterImage? { self.progress.followed.hasCluster ? self.progress.followed.image : nil }

    /// The store revision applied: the broker's metadata version.
    public var appliedRevision: Int64 { self.progress.followed.revision }

    /// The revision whose changes every listener has heard.
    public var publishedRevision: Int64 { self.progress.published }

    /// Reads the whole image, then follows the store in a task of its own until `stop`.
    /// - Parameter holdingChanges: publish nothing until `releaseChanges()`.
    /// - Throws: `store` when the first read fails, `corruptImage` when a key does not decode.
    public func start(holdingChanges: Bool = false) async throws(ClusterControlError) {
        precondition(self.following == nil && !self.stopped, "an image follower starts once")
        self.holding = holdingChanges
        let started = ContinuousClock.now
        let range: MetadataRange
        do {
            range = try await self.store.range(prefix: "")
        } catch {
            throw .store(error)
        }
        let followed = try FollowedImage(range: range)
        self.replace(with: followed)
        let image = followed.image
        self.logger.info(
            "Read the metadata image",
            metadata: [
                "revision": "\(image.revision)", "brokers": "\(image.brokers.count)", "topics": "\(image.topics.count)",
                "partitions": "\(image.topics.values.reduce(0) { $0 + $1.partitions.count })",
                "duration": "\(ContinuousClock.now - started)",
            ]
        )
        self.following = Task { await self.follow() }
    }

    /// Publishes the whole image now as one batch, and every later transaction as it applies.
    public func releaseChanges() async {
        guard self.holding else { return }
        self.holding = false
        let image = self.progress.followed.image
        let changes = MetadataChange.changes(
            from: ClusterImage(clusterID: image.clusterID),
            to: image,
            node: self.nodeID
        )
        await self.publish(changes, revision: image.revision, to: self.listeners).value
    }

    /// Stops following; waiters are released (answering false). The image stays as it is.
    public func stop() {
        self.stopped = true
        self.following?.cancel()
        self.following = nil
        self.waiters.cancelAll()
    }

    /// Calls `listener` now with the whole image as one batch (unless publication is held back), then with each
    /// later transaction's changes.
    public func addListener(batches listener: @escaping BatchListener) async {
        self.listeners.append(listener)
        guard !self.holding, self.progress.followed.hasCluster else { return }
        let image = self.progress.followed.image
        let changes = MetadataChange.changes(
            from: ClusterImage(clusterID: image.clusterID),
            to: image,
            node: self.nodeID
        )
        await self.publish(changes, revision: image.revision, to: [listener]).value
    }

    /// Waits until the image has applied `revision`. - Returns: false when stopped or cancelled first.
    @discardableResult
    public func waitUntilApplied(_ revision: Int64) async -> Bool {
        await self.wait { $0.followed.revision >= revision }
    }

    /// Waits until the listeners have heard the changes up to `revision`. - Returns: false when stopped or
    /// cancelled first.
    @discardableResult
    public func waitUntilPublished(_ revision: Int64) async -> Bool {
        await self.wait { $0.published >= revision }
    }

    /// Waits until `condition` holds for the image applied, at most `timeout` when given.
    /// - Returns: false when stopped, cancelled, or out of time first.
    @discardableResult
    public func waitUntil(
        timeout: Duration? = nil,
        _ condition: @escaping @Sendable (FollowedImage) -> Bool
    ) async -> Bool {
        await self.wait(timeout: timeout) { condition($0.followed) }
    }

    private func wait(timeout: Duration? = nil, until condition: @escaping @Sendable (Progress) -> Bool) async -> Bool {
        if condition(self.progress) { return true }
        guard !self.stopped else { return false }
        return await self.suspend(timeout: timeout, until: condition)
    }

    // MARK: Following

    /// Watches from the revision applied + 1 until stopped: reloads after a compaction, retries with backoff while
    /// the store cannot be reached.
    private func follow() async {
        var delay = self.backoff.lowerBound
        var reload = false
        while !Task.isCancelled {
            do throws(MetadataStoreError) {
                if self.isStoreUnreachable {
                    _ = try await self.store.revision()
                    self.isStoreUnreachable = false
                    self.logger.info(
                        "The metadata store answers again; following it",
                        metadata: ["revision": "\(self.progress.followed.revision)"]
                    )
                }
                if reload {
                    let range = try await self.store.range(prefix: "")
                    guard !Task.isCancelled else { return }
                    self.reload(range)
                    reload = false
                }
                delay = self.backoff.lowerBound
                let watch = try await self.store.watch(prefix: "", fromRevision: self.progress.followed.revision + 1)
                for try await transaction in watch {
                    guard !Task.isCancelled else { return }
                    self.apply(transaction)
                }
                guard !Task.isCancelled else { return }
                throw .closed("the watch ended")
            } catch let error where error.compactRevision != nil {
                self.logger.info(
                    "The metadata store compacted past the image's revision; reading the whole image again",
                    metadata: [
                        "revision": "\(self.progress.followed.revision)",
                        "compacted": "\(error.compactRevision ?? 0)",
                    ]
                )
                reload = true
            } catch {
                guard !Task.isCancelled else { return }
                if !self.isStoreUnreachable {
                    self.isStoreUnreachable = true
                    self.logger.warning(
                        "Cannot follow the metadata store; serving the image at the revision applied and retrying",
                        metadata: ["revision": "\(self.progress.followed.revision)", "error": "\(error)"]
                    )
                }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, self.backoff.upperBound)
            }
        }
    }

    /// Applies one watched transaction, unless the image is already at or past its revision.
    func apply(_ transaction: MetadataTransactionEvents) {
        guard transaction.revision > self.progress.followed.revision else { return }
        var next = self.progress.followed
        var topics: Set<String> = []
        var resources: Set<String> = []
        for event in transaction.events {
            do {
                try next.apply(event)
            } catch {
                self.logger.error(
                    "A metadata key does not decode; keeping its previous value",
                    metadata: ["key": "\(event.key)", "revision": "\(transaction.revision)", "error": "\(error)"]
                )
                continue
            }
            if event.key.hasPrefix(ImageKeys.topicsPrefix) {
                topics.insert(String(event.key.dropFirst(ImageKeys.topicsPrefix.count)))
            } else if event.key.hasPrefix(ImageKeys.brokerConfigsPrefix) {
                resources.insert(String(event.key.dropFirst(ImageKeys.brokerConfigsPrefix.count)))
            }
        }
        next.image.revision = transaction.revision
        let before = self.progress.followed.image
        self.progress.followed = next
        // Only the keys this transaction touched can change anything, so the changes are computed on them alone.
        let changes = MetadataChange.changes(
            from: Self.restricted(before, topics: topics, resources: resources),
            to: Self.restricted(next.image, topics: topics, resources: resources),
            node: self.nodeID
        )
        self.publishUnlessHeld(changes, revision: transaction.revision)
        self.waiters.resume(with: self.progress)
    }

    /// Replaces the image with a whole read, unless the read is older than the image applied, and publishes the
    /// difference. A key that does not decode is logged and left out (its next write applies).
    private func reload(_ range: MetadataRange) {
        guard range.revision >= self.progress.followed.revision else { return }
        var next = FollowedImage()
        for entry in range.entries {
            do {
                try next.apply(.put(entry))
            } catch {
                self.logger.error(
                    "A metadata key does not decode",
                    metadata: ["key": "\(entry.key)", "error": "\(error)"]
                )
            }
        }
        next.image.revision = range.revision
        let before = self.progress.followed.image
        self.progress.followed = next
        self.publishUnlessHeld(
            MetadataChange.changes(from: before, to: next.image, node: self.nodeID),
            revision: next.revision
        )
        self.waiters.resume(with: self.progress)
    }

    /// Sets the first image read, and publishes it whole unless publication is held back.
    private func replace(with followed: FollowedImage) {
        self.progress.followed = followed
        let image = followed.image
        self.publishUnlessHeld(
            MetadataChange.changes(from: ClusterImage(clusterID: image.clusterID), to: image, node: self.nodeID),
            revision: image.revision
        )
        self.waiters.resume(with: self.progress)
    }

    private func publishUnlessHeld(_ changes: [MetadataChange], revision: Int64) {
        guard !self.holding else { return }
        self.publish(changes, revision: revision, to: self.listeners)
    }

    /// Chains a publication after the previous one; the published revision moves once every listener returned.
    @discardableResult
    private func publish(_ changes: [MetadataChange], revision: Int64, to listeners: [BatchListener]) -> Task<
        Void, Never
    > {
        let previous = self.publication
        let task = Task {
            await previous?.value
            if !changes.isEmpty {
                for listener in listeners { await listener(changes) }
            }
            self.published(revision)
        }
        self.publication = task
        return task
    }

    private func published(_ revision: Int64) {
        guard revision > self.progress.published else { return }
        self.progress.published = revision
        self.waiters.resume(with: self.progress)
    }

    /// `image` with only the named topics and broker config resources.
    private static func restricted(_ image: ClusterImage, topics: Set<String>, resources: Set<String>) -> ClusterImage {
        ClusterImage(
            clusterID: image.clusterID,
            topics: image.topics.filter(keys: topics),
            brokerConfigs: image.brokerConfigs.filter(keys: resources),
            revision: image.revision
        )
    }
}

extension Dictionary {
    /// The entries of `keys` only, looked up one by one.
    fileprivate func filter(keys: Set<Key>) -> Self {
        var result: Self = [:]
        for key in keys { result[key] = self[key] }
        return result
    }
}
