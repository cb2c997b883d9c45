#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A small pool of dedicated threads for blocking disk calls (write, fsync, open, unlink, mmap faults), so that a
/// stalled disk never blocks a NIO event loop or Swift's cooperative pool. Jobs run in submission order, each on
/// whichever thread is free; callers await the result.
///
/// Thread-safe: `run` may be called from any thread or task. The pool lives until `shutdown()`, which runs the jobs
/// already queued and then joins the threads.
public final class DiskIOPool: @unchecked Sendable {  // state is guarded by `mutex` (a pthread mutex) with `condition`
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [() -> Void] = []
    private var head = 0
    private var isShuttingDown = false
    private var threads: [pthread_t] = []
    public let threadCount: Int

    /// Starts `threadCount` threads.
    public init(threadCount: Int = 2) {
        precondition(threadCount > 0)
        self.threadCount = threadCount
        pthread_mutex_init(self.mutex, nil)
        pthread_cond_init(self.condition, nil)
        for number in 0..<threadCount {
            let context = Unmanaged.passRetained(ThreadContext(pool: self, name: "LogStorage-io-\(number)"))
            var thread = pthread_t()
            let result = pthread_create(
                &thread, nil,
                { raw in
                    let context = Unmanaged<ThreadContext>.fromOpaque(raw!).takeRetainedValue()
                    context.pool.workLoop()
                    return nil
                }, context.toOpaque())
            precondition(result == 0, "pthread_create failed: \(result)")
            self.threads.append(thread)
        }
    }

    private final class ThreadContext {
        let pool: DiskIOPool
        let name: String
        init(pool: DiskIOPool, name: String) {
            self.pool = pool
            self.name = name
        }
    }

    deinit {
        pthread_cond_destroy(self.condition)
        pthread_mutex_destroy(self.mutex)
        self.condition.deallocate()
        self.mutex.deallocate()
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    /// - Throws: what `body` throws, or `CancellationError` if the pool was shut down before the job was queued.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let accepted = self.enqueue {
                continuation.resume(with: Result { try body() })
            }
            if !accepted { continuation.resume(throwing: CancellationError()) }
        }
    }

    /// Queues `job` without waiting for it; false if the pool is shutting down.
    @discardableResult
    public func execute(_ job: @escaping @Sendable () -> Void) -> Bool {
        self.enqueue(job)
    }

    private func enqueue(_ job: @escaping () -> Void) -> Bool {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        guard !self.isShuttingDown else { return false }
        self.jobs.append(job)
        pthread_cond_signal(self.condition)
        return true
    }

    private func workLoop() {
        while true {
            pthread_mutex_lock(self.mutex)
            while self.head == self.jobs.count && !self.isShuttingDown {
                pthread_cond_wait(self.condition, self.mutex)
            }
            if self.head == self.jobs.count {
                pthread_mutex_unlock(self.mutex)
                return
            }
            let job = self.jobs[self.head]
            self.head += 1
            if self.head > 64 && self.head * 2 > self.jobs.count {
                self.jobs.removeFirst(self.head)
                self.head = 0
            }
            pthread_mutex_unlock(self.mutex)
            job()
        }
    }

    /// Refuses new jobs, finishes the queued ones and joins the threads. Call once, not from a pool thread.
    public func shutdown() {
        pthread_mutex_lock(self.mutex)
        self.isShuttingDown = true
        pthread_cond_broadcast(self.condition)
        let threads = self.threads
        self.threads = []
        pthread_mutex_unlock(self.mutex)
        for thread in threads { pthread_join(thread, nil) }
    }
}
