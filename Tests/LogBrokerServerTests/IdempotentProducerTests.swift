import Foundation
import KafkaMessages
import KafkaNIO
import KafkaRecords
import KafkaWire
import NIOCore
import Testing

/// Idempotent producers against the real `logbroker-server`, with raw frames: InitProducerId's ids, Kafka's
/// sequence checks on Produce, and both across a SIGKILL and restart (the producer state is recovered from the
/// snapshots and the log, the id blocks from the metadata image).
@Suite(.timeLimit(.minutes(3))) struct IdempotentProducerTests {
    static let topic = "idempotent"

    /// One batch of `count` records of producer `id` at `epoch`, starting at `sequence`.
    static func batch(id: Int64, epoch: Int16 = 0, sequence: Int32, count: Int = 3) throws -> ByteBuffer {
        var builder = RecordBatchBuilder(producerID: id, producerEpoch: epoch, baseSequence: sequence)
        for index in 0..<count {
            builder.append(timestamp: Int64(Date().timeIntervalSince1970 * 1000), key: nil,
                           value: ByteBuffer(string: "seq-\(Int(sequence) + index)"))
        }
        return try builder.build().buffer
    }

    static func produce(
        _ records: ByteBuffer,
        on connection: KafkaClientConnection
    ) async throws -> ProduceResponse.PartitionProduceResponse {
        let response = try await connection.send(
            ProduceRequest(
                acks: -1,
                timeoutMs: 30_000,
                topicData: [.init(name: Self.topic, partitionData: [.init(index: 0, records: records)])]
            ),
            version: 9
        )
        return try #require(response.responses.first?.partitionResponses.first)
    }

    static func initProducerID(on connection: KafkaClientConnection) async throws -> Int64 {
        let response = try await connection.send(InitProducerIdRequest(transactionalID: nil), version: 4)
        #expect(response.errorCode == 0 && response.producerEpoch == 0)
        return response.producerID
    }

    static func logEndOffset(on connection: KafkaClientConnection) async throws -> Int64 {
        let response = try await connection.send(
            ListOffsetsRequest(replicaID: -1, topics: [.init(name: Self.topic, partitions: [.init(partitionIndex: 0, timestamp: -1)])]),
            version: 7
        )
        return try #require(response.topics.first?.partitions.first?.offset)
    }

    @Test func retriesAreDeduplicatedAndGapsRefusedAcrossASIGKILL() async throws {
        try await BrokerProcess.withBroker { broker in
            let (id, lastBatch) = try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) {
                connection in
                _ = try await connection.send(
                    CreateTopicsRequest(topics: [.init(name: Self.topic, numPartitions: 1, replicationFactor: 1)]),
                    version: 7
                )
                let id = try await Self.initProducerID(on: connection)
                #expect(try await Self.initProducerID(on: connection) != id)
                let first = try Self.batch(id: id, sequence: 0)
                #expect(try await Self.produce(first, on: connection).baseOffset == 0)
                let second = try Self.batch(id: id, sequence: 3)
                #expect(try await Self.produce(second, on: connection).baseOffset == 3)
                // A retry of either: NONE with the original offset, nothing written.
                let retry = try await Self.produce(second, on: connection)
                #expect(retry.errorCode == 0 && retry.baseOffset == 3)
                #expect(try await Self.produce(first, on: connection).baseOffset == 0)
                #expect(try await Self.logEndOffset(on: connection) == 6)
                // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER; a new epoch not at sequence 0 as well; an older epoch after a
                // newer one INVALID_PRODUCER_EPOCH.
                #expect(try await Self.produce(Self.batch(id: id, sequence: 9), on: connection).errorCode == 45)
                #expect(try await Self.produce(Self.batch(id: id, epoch: 1, sequence: 6), on: connection).errorCode == 45)
                #expect(try await Self.logEndOffset(on: connection) == 6)
                return (id, second)
            }

            _ = try await broker.kill()
            try await broker.start()
            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: broker.port) { connection in
                // The state came back from the log: the retry is still a duplicate, the gap still refused.
                let retry = try await Self.produce(lastBatch, on: connection)
                #expect(retry.errorCode == 0 && retry.baseOffset == 3)
                #expect(try await Self.produce(Self.batch(id: id, sequence: 9), on: connection).errorCode == 45)
                #expect(try await Self.produce(Self.batch(id: id, sequence: 6), on: connection).baseOffset == 6)
                // A bumped epoch starting at 0 is accepted; then the old epoch is fenced.
                #expect(try await Self.produce(Self.batch(id: id, epoch: 1, sequence: 0), on: connection).baseOffset == 9)
                #expect(try await Self.produce(Self.batch(id: id, sequence: 9), on: connection).errorCode == 47)
                #expect(try await Self.logEndOffset(on: connection) == 12)

                // A new id is never one handed out before the restart (the block was recorded before use).
                let fresh = try await Self.initProducerID(on: connection)
                #expect(fresh > id)

                let producers = try await connection.send(
                    DescribeProducersRequest(topics: [.init(name: Self.topic, partitionIndexes: [0, 1])]),
                    version: 0
                )
                let partitions = try #require(producers.topics.first?.partitions)
                #expect(partitions.map(\.errorCode) == [0, 3])
                let state = try #require(partitions.first?.activeProducers.first)
                #expect(state.producerID == id && state.producerEpoch == 1 && state.lastSequence == 2)

                let transactional = try await connection.send(
                    InitProducerIdRequest(transactionalID: "txn", transactionTimeoutMs: 60_000),
                    version: 4
                )
                #expect(transactional.errorCode == 53)
            }
        }
    }
}
