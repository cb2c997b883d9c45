/// The transactions a `MetadataStore.watch` sees, in revision order, each whole. Iterate it once; stopping the
/// iteration (leaving the loop, cancelling the task) ends the watch in the store.
///
/// It fails with a `MetadataStoreError` only: `compacted` when its start revision left the store's history, or
/// another store error (a closed store, an unreadable answer). Thread-safe to pass around; one consumer iterates.
public struct MetadataWatch: AsyncSequence, Sendable {
    public typealias Element = MetadataTransactionEvents
    public typealias Failure = MetadataStoreError

    private let stream: AsyncThrowingStream<MetadataTransactionEvents, any Error>

    /// A watch and the continuation its store feeds: `yield` each transaction, `finish(throwing:)` with a
    /// `MetadataStoreError` to fail it. `onTermination` of the continuation runs when the consumer stops.
    public static func makeWatch() -> (
        watch: MetadataWatch, continuation: AsyncThrowingStream<MetadataTransactionEvents, any Error>.Continuation
    ) {
        let (stream, continuation) = AsyncThrowingStream<MetadataTransactionEvents, any Error>.makeStream()
        return (MetadataWatch(stream: stream), continuation)
    }

    private init(stream: AsyncThrowingStream<MetadataTransactionEvents, any Error>) {
        self.stream = stream
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: self.stream.makeAsyncIterator())
    }

    /// Not thread-safe: one consumer.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<MetadataTransactionEvents, any Error>.AsyncIterator

        public mutating func next() async throws(MetadataStoreError) -> MetadataTransactionEvents? {
            do {
                return try await self.base.next()
            } catch let error as MetadataStoreError {
                throw error
            } catch {
                throw .closed("the watch ended: \(error)")
            }
        }

        public mutating func next(
            isolation actor: isolated (any Actor)?
        ) async throws(MetadataStoreError) -> MetadataTransactionEvents? {
            do {
                return try await self.base.next(isolation: actor)
            } catch let error as MetadataStoreError {
                throw error
            } catch {
                throw .closed("the watch ended: \(error)")
            }
        }
    }
}

@available(*, unavailable)
extension MetadataWatch.AsyncIterator: Sendable {}
