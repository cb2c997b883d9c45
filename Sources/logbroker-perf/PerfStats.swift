import Foundation
import Histogram
import Synchronization

/// What a perf run counts, shared by the tasks that send, acknowledge and receive: records and bytes per outcome,
/// latencies in microseconds (an HdrHistogram over the run, and the sum and maximum of the current reporting
/// window), as Kafka's perf tools report them.
///
/// Thread-safe: one `Mutex`; each record costs one short critical section.
final class PerfStats: Sendable {
    struct Window {
        var records = 0
        var bytes = 0
        var latencySumMicros: UInt64 = 0
        var latencyMaxMicros: UInt64 = 0
    }

    private struct State {
        var sent = 0
        var acknowledged = 0
        var failed = 0
        var received = 0
        var bytes = 0
        var latencies = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        var window = Window()
        var firstFailure: String?
    }

    private let state = Mutex(State())
    let started = ContinuousClock.now

    func sent(_ count: Int = 1) { self.state.withLock { $0.sent += count } }

    /// A record acknowledged (producer) or received (consumer, end-to-end) after `latencyMicros` (nil: none measured).
    func completed(bytes: Int, latencyMicros: UInt64?, received: Bool) {
        self.state.withLock { state in
            if received { state.received += 1 } else { state.acknowledged += 1 }
            state.bytes += bytes
            state.window.records += 1
            state.window.bytes += bytes
            if let latency = latencyMicros {
                state.latencies.record(latency)
                state.window.latencySumMicros += latency
                state.window.latencyMaxMicros = max(state.window.latencyMaxMicros, latency)
            }
        }
    }

    /// An acknowledged record of an end-to-end run (counted, no bytes or latency: those come on receipt).
    func acknowledged() { self.state.withLock { $0.acknowledged += 1 } }

    func failed(_ error: any Error) {
        self.state.withLock { state in
            state.failed += 1
            if state.firstFailure == nil { state.firstFailure = "\(error)" }
        }
    }

    var counts: (sent: Int, acknowledged: Int, failed: Int, received: Int) {
        self.state.withLock { ($0.sent, $0.acknowledged, $0.failed, $0.received) }
    }

    var firstFailure: String? { self.state.withLock { $0.firstFailure } }

    /// The window since the last call, and a fresh one.
    func takeWindow() -> Window {
        self.state.withLock { state in
            defer { state.window = Window() }
            return state.window
        }
    }

    /// The whole run: totals, rates over the elapsed time and latency percentiles in milliseconds.
    func summary(mode: String, elapsed: Duration) -> Summary {
        let seconds = max(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, 1e-9)
        return self.state.withLock { state in
            let histogram = state.latencies
            let measured = histogram.totalCount > 0
            func ms(_ micros: UInt64) -> Double { Double(micros) / 1000 }
            let completed = mode == "producer" ? state.acknowledged : state.received
            return Summary(
                mode: mode,
                elapsedSeconds: seconds,
                sent: state.sent,
                acknowledged: state.acknowledged,
                failed: state.failed,
                received: state.received,
                recordsPerSecond: Double(completed) / seconds,
                megabytesPerSecond: Double(state.bytes) / seconds / 1_048_576,
                latencyMs: measured
                    ? Summary.Latency(
                        average: histogram.mean / 1000,
                        p50: ms(histogram.valueAtPercentile(50)),
                        p95: ms(histogram.valueAtPercentile(95)),
                        p99: ms(histogram.valueAtPercentile(99)),
                        p999: ms(histogram.valueAtPercentile(99.9)),
                        max: ms(histogram.max)
                    ) : nil
            )
        }
    }
}

/// A run's figures, as the closing lines and `--json` give them.
struct Summary: Codable {
    struct Latency: Codable {
        var average, p50, p95, p99, p999, max: Double
    }

    var mode: String
    var elapsedSeconds: Double
    var sent: Int
    var acknowledged: Int
    var failed: Int
    var received: Int
    var recordsPerSecond: Double
    var megabytesPerSecond: Double
    var latencyMs: Latency?

    enum CodingKeys: String, CodingKey {
        case mode
        case elapsedSeconds = "elapsed_seconds"
        case sent = "records_sent"
        case acknowledged = "records_acknowledged"
        case failed = "records_failed"
        case received = "records_received"
        case recordsPerSecond = "records_per_second"
        case megabytesPerSecond = "mb_per_second"
        case latencyMs = "latency_ms"
    }

    /// Kafka's closing line, then the percentiles and the audit count.
    var text: String {
        var lines: [String] = []
        let completed = self.mode == "producer" ? self.acknowledged : self.received
        var line = String(
            format: "%d records %@, %.1f records/sec (%.2f MB/sec)", completed,
            self.mode == "producer" ? "sent" : "received", self.recordsPerSecond, self.megabytesPerSecond
        )
        if let latency = self.latencyMs {
            line += String(
                format: ", %.2f ms avg latency, %.2f ms max latency, %.2f ms 50th, %.2f ms 95th, %.2f ms 99th, %.2f ms 99.9th.",
                latency.average, latency.max, latency.p50, latency.p95, latency.p99, latency.p999
            )
        } else {
            line += "."
        }
        lines.append(line)
        lines.append(
            "audit: \(self.sent) sent, \(self.acknowledged) acknowledged, \(self.failed) failed, \(self.received) received"
        )
        return lines.joined(separator: "\n")
    }

    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}

/// Prints a progress line every `interval` (to stderr with `--json`, so stdout stays one JSON document) until
/// cancelled.
func reportProgress(_ stats: PerfStats, every interval: Duration, toStandardError: Bool) async {
    var last = ContinuousClock.now
    // Cancelled at the end of the run: the closing summary follows, not another window.
    while (try? await Task.sleep(for: interval)) != nil {
        let now = ContinuousClock.now
        let window = stats.takeWindow()
        let seconds = max(Double((now - last).components.seconds) + Double((now - last).components.attoseconds) / 1e18, 1e-9)
        last = now
        var line = String(
            format: "%d records, %.1f records/sec (%.2f MB/sec)", window.records, Double(window.records) / seconds,
            Double(window.bytes) / seconds / 1_048_576
        )
        if window.latencySumMicros > 0 {
            line += String(
                format: ", %.2f ms avg latency, %.2f ms max latency",
                Double(window.latencySumMicros) / Double(max(window.records, 1)) / 1000,
                Double(window.latencyMaxMicros) / 1000
            )
        }
        line += ".\n"
        if toStandardError {
            FileHandle.standardError.write(Data(line.utf8))
        } else {
            FileHandle.standardOutput.write(Data(line.utf8))
        }
    }
}
