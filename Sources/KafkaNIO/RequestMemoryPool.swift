import Synchronization

/// The bytes all connections may hold in request frames being read or served at once: Kafka's memory pool, sized by
/// `queued.max.request.bytes`. A connection reserves a frame's size as soon as the frame's 4-byte size is read,
/// before it buffers any of it, and gives it back once the request has been handled; while the pool cannot cover a
/// frame, that connection is not read from (`KafkaRequestFrameReader` withholds NIO's `read()`), so its bytes wait
/// in the kernel's socket buffer and not in the broker's memory.
///
/// Unlike Kafka's pool (which lends to any request while a single byte is free, and so may exceed its size by one
/// request), a frame is admitted only when the pool covers all of it, so the bound holds. Waiters are served in
/// arrival order, but one that does not fit does not hold up a smaller one behind it that does, so a few huge
/// frames waiting cannot starve ordinary clients.
///
/// Thread-safe: the state is behind a `Mutex`; grants are delivered outside it.
public final class RequestMemoryPool: Sendable {
    /// The pool's size in bytes, or nil when unbounded (`queued.max.request.bytes` ≤ 0, Kafka's default -1).
    public let capacity: Int?

    private struct Waiter {
        var id: UInt64
        var size: Int
        var grant: @Sendable (RequestMemoryReservation) -> Void
    }

    private struct State {
        var available: Int
        var waiters: [Waiter] = []
        var nextWaiterID: UInt64 = 0
    }

    private let state: Mutex<State>

    /// A pool of `capacity` bytes; nil or a value ≤ 0 makes it unbounded (nothing is counted).
    public init(capacity: Int?) {
        let bounded = capacity.flatMap { $0 > 0 ? $0 : nil }
        self.capacity = bounded
        self.state = Mutex(State(available: bounded ?? 0))
    }

    /// An unbounded pool.
    public static let unbounded = RequestMemoryPool(capacity: nil)

    /// Bytes not reserved now (nil when unbounded).
    public var availableBytes: Int? {
        guard self.capacity != nil else { return nil }
        return self.state.withLock { $0.available }
    }

    /// Connections waiting for memory now.
    public var waitingCount: Int { self.state.withLock { $0.waiters.count } }

    /// What `reserve` decided.
    public enum Outcome: Sendable {
        /// The bytes are reserved.
        case reserved(RequestMemoryReservation)
        /// Not enough free now: `grant` will be called (from the thread of a later release) with the reservation,
        /// unless `cancelWait(id)` comes first.
        case waiting(id: UInt64)
        /// The frame is larger than the whole pool and can never be admitted.
        case tooLarge
    }

    /// Reserves `size` bytes, or queues `grant` until they are free.
    public func reserve(
        _ size: Int,
        orWait grant: @escaping @Sendable (RequestMemoryReservation) -> Void
    ) -> Outcome {
        guard let capacity = self.capacity else { return .reserved(RequestMemoryReservation(pool: nil, size: size)) }
        guard size <= capacity else { return .tooLarge }
        return self.state.withLock { state in
            if state.available >= size {
                state.available -= size
                return .reserved(RequestMemoryReservation(pool: self, size: size))
            }
            state.nextWaiterID += 1
            state.waiters.append(Waiter(id: state.nextWaiterID, size: size, grant: grant))
            return .waiting(id: state.nextWaiterID)
        }
    }

    /// Withdraws a waiting request for memory (its connection closed). A grant already made is not undone: the
    /// caller releases the reservation it receives.
    public func cancelWait(_ id: UInt64) {
        self.state.withLock { state in state.waiters.removeAll { $0.id == id } }
    }

    fileprivate func release(_ size: Int) {
        var granted: [(Waiter, RequestMemoryReservation)] = []
        self.state.withLock { state in
            state.available += size
            var index = 0
            while index < state.waiters.count, state.available > 0 {
                let waiter = state.waiters[index]
                if waiter.size <= state.available {
                    state.available -= waiter.size
                    state.waiters.remove(at: index)
                    granted.append((waiter, RequestMemoryReservation(pool: self, size: waiter.size)))
                } else {
                    index += 1
                }
            }
        }
        for (waiter, reservation) in granted { waiter.grant(reservation) }
    }
}

/// Bytes reserved from a `RequestMemoryPool` for one request frame. Released once, by `release()` or, for a frame
/// dropped unread (its connection closed with it queued), when the last reference goes.
///
/// Thread-safe.
public final class RequestMemoryReservation: Sendable {
    private let pool: RequestMemoryPool?
    /// The bytes reserved.
    public let size: Int
    private let released = Atomic<Bool>(false)

    fileprivate init(pool: RequestMemoryPool?, size: Int) {
        self.pool = pool
        self.size = size
    }

    /// Gives the bytes back to the pool (once; later calls do nothing).
    public func release() {
        guard !self.released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        self.pool?.release(self.size)
    }

    deinit {
        self.release()
    }
}
