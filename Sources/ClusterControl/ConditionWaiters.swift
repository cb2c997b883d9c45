/// Tasks suspended until a condition on an actor's state holds: the actor calls `resume(with:)` after every
/// change of its state, and `cancel(_:)` when a waiter's task is cancelled or its deadline passed. Each waiter is
/// resumed exactly once: true when its condition held, false when cancelled. Not thread-safe: a value inside one
/// actor.
struct ConditionWaiters<State> {
    private struct Waiter {
        var condition: (State) -> Bool
        var continuation: CheckedContinuation<Bool, Never>
    }

    private var waiters: [Int: Waiter] = [:]
    private var nextID = 0

    /// A new waiter's id, for `add` and `cancel`.
    mutating func makeID() -> Int {
        defer { self.nextID += 1 }
        return self.nextID
    }

    mutating func add(
        _ id: Int,
        condition: @escaping (State) -> Bool,
        continuation: CheckedContinuation<Bool, Never>
    ) {
        self.waiters[id] = Waiter(condition: condition, continuation: continuation)
    }

    /// Resumes, with true, every waiter whose condition holds for `state`.
    mutating func resume(with state: State) {
        for (id, waiter) in self.waiters where waiter.condition(state) {
            self.waiters[id] = nil
            waiter.continuation.resume(returning: true)
        }
    }

    /// Resumes waiter `id` with false, if it still waits.
    mutating func cancel(_ id: Int) {
        self.waiters.removeValue(forKey: id)?.continuation.resume(returning: false)
    }

    /// Resumes every waiter with false.
    mutating func cancelAll() {
        let waiters = self.waiters.values
        self.waiters = [:]
        for waiter in waiters { waiter.continuation.resume(returning: false) }
    }
}

/// An actor whose tasks wait on conditions over its state: it keeps a `ConditionWaiters` and resumes it after each
/// change; `suspend` does the waiting, with cancellation and a deadline.
protocol ConditionWaiting: Actor {
    associatedtype WaitedState
    var waiters: ConditionWaiters<WaitedState> { get set }
}

extension ConditionWaiting {
    /// Suspends until `condition` holds (true), or until the task is cancelled or `timeout` passed (false). The
    /// caller checks the current state first.
    func suspend(timeout: Duration?, until condition: @escaping @Sendable (WaitedState) -> Bool) async -> Bool {
        let id = self.waiters.makeID()
        if let timeout {
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                await self?.cancelWaiter(id)
            }
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled {
                    continuation.resume(returning: false)
                } else {
                    self.waiters.add(id, condition: condition, continuation: continuation)
                }
            }
        } onCancel: {
            Task { await self.cancelWaiter(id) }
        }
    }

    private func cancelWaiter(_ id: Int) {
        self.waiters.cancel(id)
    }
}
