import ClusterControl
import KafkaMessages
import KafkaWire
import Logging
import Replication
import Synchronization

/// Sends a leader's ISR changes to the active controller as AlterPartition v3 (Kafka's `AlterPartitionManager`),
/// over a `ControllerChannel` of its own, with this broker's epoch from its lifecycle. Until `connect` (the broker's
/// lifecycle exists) and while the broker is not registered, changes fail without an answer and are proposed again
/// by the next check.
///
/// Thread-safe: the channel and lifecycle are set once behind a `Mutex`; `ControllerChannel` is an actor.
final class AlterPartitionSender: ISRChangeSending {
    private struct Connection {
        var channel: ControllerChannel
        var lifecycle: BrokerLifecycle
    }

    private let connection = Mutex<Connection?>(nil)
    private let logger: Logger
    /// How long one AlterPartition may wait for a controller and its answer (Kafka's request timeout).
    static let timeout: Duration = .seconds(30)

    init(logger: Logger) {
        self.logger = logger
    }

    /// Starts sending through a channel to the controller the image follower's election key names.
    func connect(follower: ImageFollower, lifecycle: BrokerLifecycle, nodeID: Int32) {
        let channel = ControllerChannel(
            follower: follower,
            clientID: "broker-\(nodeID)-alter-partition",
            logger: self.logger
        )
        self.connection.withLock { $0 = Connection(channel: channel, lifecycle: lifecycle) }
    }

    /// Closes the channel (at shutdown).
    func close() async {
        let connection = self.connection.withLock { $0 }
        await connection?.channel.close()
    }

    func send(_ change: ISRChange, topic: String) async -> ISRChangeAnswer {
        guard let connection = self.connection.withLock({ $0 }),
            let brokerEpoch = await connection.lifecycle.brokerEpoch
        else { return .failed }
        let request = Self.request(change, brokerEpoch: brokerEpoch, topic: topic)
        let response: AlterPartitionResponse
        do {
            response = try await connection.channel.send(request, version: 3, deadline: .now + Self.timeout)
        } catch {
            self.logger.warning("AlterPartition got no answer", metadata: ["error": "\(error)"])
            return .failed
        }
        let topLevel = ErrorCode(response.errorCode)
        if topLevel == .notController { await connection.channel.reset() }
        guard topLevel == .none else { return topLevel == .notController ? .failed : .refused(topLevel) }
        guard
            let answer = response.topics.first(where: { $0.topicID == change.topicID })?.partitions.first(where: {
                $0.partitionIndex == change.partition
            })
        else { return .failed }
        let error = ErrorCode(answer.errorCode)
        guard error == .none else { return .refused(error) }
        return .committed(isr: answer.isr, leaderEpoch: answer.leaderEpoch, partitionEpoch: answer.partitionEpoch)
    }

    /// The AlterPartition v3 request of `change`: topic by id, the new ISR with the broker epochs the leader saw
    /// (KIP-903).
    static func request(_ change: ISRChange, brokerEpoch: Int64, topic: String) -> AlterPartitionRequest {
        var partition = AlterPartitionRequest.PartitionData()
        partition.partitionIndex = change.partition
        partition.leaderEpoch = change.leaderEpoch
        partition.newIsrWithEpochs = change.newISR.map {
            AlterPartitionRequest.BrokerState(brokerID: $0.brokerID, brokerEpoch: $0.brokerEpoch)
        }
        partition.newIsr = change.newISR.map(\.brokerID)
        partition.leaderRecoveryState = 0
        partition.partitionEpoch = change.partitionEpoch
        var request = AlterPartitionRequest()
        request.brokerID = change.leaderID
        request.brokerEpoch = brokerEpoch
        request.topics = [
            AlterPartitionRequest.TopicData(topicName: topic, topicID: change.topicID, partitions: [partition])
        ]
        return request
    }
}
