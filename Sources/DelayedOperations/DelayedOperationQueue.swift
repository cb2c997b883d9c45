import Synchronization

/// Kafka's "purgatory": requests that cannot be answered yet (a Fetch below min.bytes, later acks=all produces and
/// the group coordinator's joins) park here, keyed by what can complete them (a partition, a group), without holding
/// a thread. A parked operation completes when its condition holds, checked when it parks and again every time one
/// of its keys is notified (an append, a high-watermark move), or ends at its timeout, or when its task is cancelled
/// (its connection closed).
///
/// Conditions run outside the queue's lock, on the notifier's task: they must be cheap and non-blocking (read
/// counters, never touch the disk).
///
/// Thread-safe: all state is behind one `Mutex`; `wait` and `notify` may be called from any task.
public final class DelayedOperationQueue<Key: Hashable & Sendable>: Sendable {
    private struct Waiter {
        var keys: [Key]
        var continuation: CheckedContinuation<Bool, Never>
        var isComplete: @Sendable () -> Bool
        var timer: Task<Void, Never>?
    }

    private struct State {
        var nextID: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]
        var watchers: [Key: Set<UInt64>] = [:]
        /// Operations given an id but not parked yet, with whether their task was cancelled meanwhile (then they end
        /// at once instead of parking).
        var unparked: [UInt64: Bool] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Operations parked now (for tests and metrics).
    public var parkedCount: Int { self.state.withLock { $0.waiters.count } }

    /// Waits until `isComplete` returns true or `timeout` passes.
    /// - Returns: true if the condition held (possibly at once), false on timeout or cancellation.
    public func wait(
        on keys: [Key],
        timeout: Duration,
        until isComplete: @escaping @Sendable () -> Bool
    ) async -> Bool {
        if isComplete() { return true }
        guard timeout > .zero, !Task.isCancelled else { return false }
        let id = self.state.withLock { state in
            state.nextID += 1
            state.unparked[state.nextID] = false
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let parked = self.state.withLock { state in
                    if state.unparked.removeValue(forKey: id) == true { return false }
                    state.waiters[id] = Waiter(keys: keys, continuation: continuation, isComplete: isComplete)
                    for key in keys { state.watchers[key, default: []].insert(id) }
                    return true
                }
                guard parked else {
                    continuation.resume(returning: false)
                    return
                }
                let timer = Task {
                    guard (try? await Task.sleep(for: timeout)) != nil else { return }
                    self.finish(id, completed: false)
                }
                let stored = self.state.withLock { state in
                    guard state.waiters[id] != nil else { return false }
                    state.waiters[id]!.timer = timer
                    return true
                }
                if !stored { timer.cancel() }
                // A notify between the first check and parking would have been missed: check once more.
                if isComplete() { self.finish(id, completed: true) }
            }
        } onCancel: {
            self.finish(id, completed: false, fromCancellation: true)
        }
    }

    /// Checks the operations parked on `key` and completes those whose condition now holds.
    public func notify(_ key: Key) {
        let candidates: [(UInt64, @Sendable () -> Bool)] = self.state.withLock { state in
            guard let ids = state.watchers[key] else { return [] }
            return ids.compactMap { id in state.waiters[id].map { (id, $0.isComplete) } }
        }
        for (id, isComplete) in candidates where isComplete() {
            self.finish(id, completed: true)
        }
    }

    /// Ends every parked operation as timed out (shutdown).
    public func expireAll() {
        let ids = self.state.withLock { Array($0.waiters.keys) }
        for id in ids { self.finish(id, completed: false) }
    }

    private func finish(_ id: UInt64, completed: Bool, fromCancellation: Bool = false) {
        let waiter: Waiter? = self.state.withLock { state in
            guard let waiter = state.waiters.removeValue(forKey: id) else {
                // Cancelled before parking: remembered until it tries to park. Already finished: nothing to do.
                if fromCancellation, state.unparked[id] != nil { state.unparked[id] = true }
                return nil
            }
            for key in waiter.keys {
                state.watchers[key]?.remove(id)
                if state.watchers[key]?.isEmpty == true { state.watchers[key] = nil }
            }
            return waiter
        }
        guard let waiter else { return }
        waiter.timer?.cancel()
        waiter.continuation.resume(returning: completed)
    }
}
