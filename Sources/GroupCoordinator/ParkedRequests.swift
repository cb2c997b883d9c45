import DelayedOperations
import Synchronization

/// JoinGroup and SyncGroup requests waiting for their group, parked on the broker's delayed-operation queue under
/// the group id (Kafka parks them in its purgatory too). Each parked request holds a ticket; the coordinator posts
/// the answer to the ticket and notifies the group, and the request takes it. A request that gives up (its
/// connection closed, or the safety timeout passed) withdraws its ticket first, so no answer is left behind.
///
/// Thread-safe: the answers are behind a `Mutex`; the queue is thread-safe.
final class ParkedRequests: Sendable {
    enum Answer: Sendable {
        case join(JoinResult)
        case sync(SyncResult)
    }

    private struct State {
        var nextTicket: UInt64 = 0
        var answers: [UInt64: Answer] = [:]
    }

    private let queue = DelayedOperationQueue<String>()
    private let state = Mutex(State())

    /// Requests parked now.
    var count: Int { self.queue.parkedCount }

    func ticket() -> UInt64 {
        self.state.withLock { state in
            state.nextTicket += 1
            return state.nextTicket
        }
    }

    /// Hands `answer` to the request holding `ticket` and wakes the requests parked on `groupID`.
    func post(_ answer: Answer, to ticket: UInt64, groupID: String) {
        self.state.withLock { $0.answers[ticket] = answer }
        self.queue.notify(groupID)
    }

    /// Parks until the ticket's answer is posted; nil when `timeout` passed or the task was cancelled first.
    func wait(for ticket: UInt64, groupID: String, timeout: Duration) async -> Answer? {
        _ = await self.queue.wait(on: [groupID], timeout: timeout) {
            self.state.withLock { $0.answers[ticket] != nil }
        }
        return self.take(ticket)
    }

    /// Removes and returns the ticket's answer, if one was posted.
    func take(_ ticket: UInt64) -> Answer? {
        self.state.withLock { $0.answers.removeValue(forKey: ticket) }
    }
}
