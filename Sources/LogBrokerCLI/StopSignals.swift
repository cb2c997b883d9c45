import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// SIGINT and SIGTERM turned into a call, so a program can stop tidily (a group consumer commits what it printed
/// and leaves its group) instead of dying at once. The first signal calls `onStop`; a second one ends the process
/// at once (status 128 + the signal), for a tidy stop that hangs.
///
/// Thread-safe: the handler runs on its own dispatch queue; `cancel` may be called from anywhere.
public final class StopSignals: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]
    private let signals: [Int32]

    public init(_ signals: [Int32] = [SIGINT, SIGTERM], onStop: @escaping @Sendable (Int32) -> Void) {
        self.signals = signals
        let queue = DispatchQueue(label: "stop-signals")
        let received = SignalCount()
        self.sources = signals.map { number in
            // Ignored, so that only the dispatch source sees the signal and the default action does not end the
            // process first.
            Glibc.signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                if received.increment() > 1 { _exit(128 + number) }
                onStop(number)
            }
            source.resume()
            return source
        }
    }

    /// Stops listening and gives the signals their default action back.
    public func cancel() {
        for source in self.sources { source.cancel() }
        for number in self.signals { Glibc.signal(number, SIG_DFL) }
    }
}

/// How many stop signals came. Thread-safe.
private final class SignalCount: Sendable {
    private let count = Atomic(0)

    /// Counts one more and returns the new count.
    func increment() -> Int { self.count.add(1, ordering: .relaxed).newValue }
}
