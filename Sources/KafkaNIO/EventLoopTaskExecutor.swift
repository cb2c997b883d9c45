import NIOCore

/// A task executor that runs every job of the tasks preferring it on one NIO event loop.
///
/// The broker serves each connection in tasks that prefer its channel's event loop, so request handling never
/// queues behind whatever else holds Swift's cooperative pool (two threads on a 2-core machine: synchronous work of
/// other tasks in the process, such as tests running beside an in-process broker, could stall every connection).
/// Default actors called from such a task run on the event loop too; disk work still goes to the `DiskIOPool`.
///
/// Thread-safe: the event loop orders the jobs.
public final class EventLoopTaskExecutor: TaskExecutor {
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
