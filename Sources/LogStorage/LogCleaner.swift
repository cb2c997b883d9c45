import Dispatch
import KafkaWire
import Logging
import Synchronization
import SystemPackage

/// Kafka's log cleaner manager: every `log.cleaner.backoff.ms` it picks the compacted logs (`cleanup.policy`
/// with `compact`) whose dirty part is the largest share of their cleanable bytes, above their
/// `min.cleanable.dirty.ratio` (or overdue by `max.compaction.lag.ms`), and cleans up to `log.cleaner.threads`
/// of them at once (`PartitionLog.clean`, one thread each); the periodic task that starts the round waits for
/// it. Its progress, each partition's first dirty offset, is kept in `cleaner-offset-checkpoint` in each log
/// directory.
///
/// Thread-safe: state behind a `Mutex`; cleaning happens outside it.
public final class LogCleaner: Sendable {
    public struct Configuration: Hashable, Sendable {
        /// `log.cleaner.enable`.
        public var enabled = true
        /// `log.cleaner.threads`: logs cleaned per round (0 disables the cleaner).
        public var threads = 1
        /// `log.cleaner.dedupe.buffer.size`: bytes of the key map of one pass.
        public var dedupeBufferBytes = 128 * 1024 * 1024
        /// `log.cleaner.backoff.ms`: the pause between rounds.
        public var backoffMs: Int64 = 15_000

        public init() {}
    }

    private struct State {
        var firstDirty: [TopicPartition: Int64]
        var lastRoundMs: Int64 = 0
    }

    public let configuration: Configuration
    private let state: Mutex<State>
    private let logger: Logger

    /// Reads `cleaner-offset-checkpoint` in each of `directories`. An unreadable one is logged and ignored: cleaning
    /// those logs again from their start is safe, only slower.
    init(configuration: Configuration, directories: [FilePath], logger: Logger) {
        var firstDirty: [TopicPartition: Int64] = [:]
        for directory in directories {
            do {
                let path = directory.appending(OffsetCheckpointFile.cleanerOffset)
                firstDirty.merge(try OffsetCheckpointFile(path).read()) { $1 }
            } catch {
                logger.warning("Ignoring an unreadable cleaner checkpoint", metadata: ["error": "\(error)"])
            }
        }
        self.configuration = configuration
        self.state = Mutex(State(firstDirty: firstDirty))
        self.logger = logger
    }

    /// The partition's first dirty offset as recorded (0 for one never cleaned).
    public func firstDirtyOffset(_ partition: TopicPartition) -> Int64 {
        self.state.withLock { $0.firstDirty[partition] ?? 0 }
    }

    /// A deleted partition's progress goes with it.
    func forget(_ partition: TopicPartition) {
        self.state.withLock { _ = $0.firstDirty.removeValue(forKey: partition) }
    }

    /// One round if `log.cleaner.backoff.ms` has passed since the last.
    func runIfDue(_ logs: [ManagedLog], directories: [FilePath], nowMs: Int64) {
        guard self.configuration.enabled, self.configuration.threads > 0 else { return }
        let due = self.state.withLock { state in
            guard nowMs - state.lastRoundMs >= self.configuration.backoffMs else { return false }
            state.lastRoundMs = nowMs
            return true
        }
        guard due else { return }
        var candidates: [(log: ManagedLog, ratio: Double)] = []
        for log in logs where log.config.compacts {
            let firstDirty = self.firstDirtyOffset(log.topicPartition)
            let highWatermark = log.highWatermark
            guard let dirtiness = try? log.withLog({ (log) throws(StorageError) in
                try log.dirtiness(firstDirtyOffset: firstDirty, highWatermark: highWatermark, nowMs: nowMs)
            }) else { continue }
            if dirtiness.ratio >= log.config.minCleanableDirtyRatio || dirtiness.overdue {
                candidates.append((log, dirtiness.ratio))
            }
        }
        let chosen = candidates.sorted { $0.ratio > $1.ratio }.prefix(self.configuration.threads)
        guard !chosen.isEmpty else { return }
        let logs = chosen.map(\.log)
        DispatchQueue.concurrentPerform(iterations: logs.count) { self.clean(logs[$0], nowMs: nowMs) }
        self.writeCheckpoints(logs, directories: directories)
    }

    /// One pass over `log`, its progress recorded and logged.
    func clean(_ log: ManagedLog, nowMs: Int64) {
        let partition = log.topicPartition
        let firstDirty = self.firstDirtyOffset(partition)
        let highWatermark = log.highWatermark
        let started = ContinuousClock.now
        do {
            let dedupeBytes = self.configuration.dedupeBufferBytes
            guard let result = try log.withLog({ (log) throws(StorageError) in
                try log.clean(firstDirtyOffset: firstDirty, highWatermark: highWatermark,
                              dedupeBufferBytes: dedupeBytes, nowMs: nowMs)
            }) else { return }
            self.state.withLock { $0.firstDirty[partition] = result.firstDirtyOffset }
            let elapsed = ContinuousClock.now - started
            self.logger.info(
                "Cleaned log",
                metadata: [
                    "partition": "\(partition)", "bytesRead": "\(result.bytesRead)",
                    "bytesWritten": "\(result.bytesWritten)", "recordsRemoved": "\(result.recordsRemoved)",
                    "segmentsRewritten": "\(result.segmentsRewritten)",
                    "durationMs": "\(elapsed / .milliseconds(1))",
                    "dirtyRatioBefore": "\(result.dirtyRatioBefore)", "dirtyRatioAfter": "\(result.dirtyRatioAfter)",
                    "firstDirtyOffset": "\(result.firstDirtyOffset)",
                ]
            )
        } catch {
            self.logger.error("Cleaning a log failed", metadata: ["partition": "\(partition)", "error": "\(error)"])
        }
    }

    /// Writes each directory's `cleaner-offset-checkpoint` for the logs it holds.
    func writeCheckpoints(_ logs: [ManagedLog], directories: [FilePath]) {
        let firstDirty = self.state.withLock { $0.firstDirty }
        for directory in directories {
            var offsets: [TopicPartition: Int64] = [:]
            for log in logs where log.logDirectory == directory {
                if let offset = firstDirty[log.topicPartition] { offsets[log.topicPartition] = offset }
            }
            do {
                try OffsetCheckpointFile(directory.appending(OffsetCheckpointFile.cleanerOffset)).write(offsets)
            } catch {
                self.logger.error("Writing the cleaner checkpoint failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
