import KafkaWire
import MetadataStore

/// Why a controller operation failed, with the Kafka error code a handler answers with. One struct around a
/// private code (STYLE.md §8.10). A plain value; thread-safe.
public struct ClusterControlError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case invalidTopic(String, reason: String)
        case topicAlreadyExists(String)
        case invalidPartitions(Int32, reason: String)
        case invalidReplicationFactor(Int16, liveBrokers: Int)
        case invalidReplicaAssignment(String)
        case unknownTopic(String, partition: Int32?)
        case unknownTopicID(KafkaUUID)
        case invalidConfig(String)
        case invalidRequest(String)
        case electionNotNeeded
        case eligibleLeadersNotAvailable
        case preferredLeaderNotAvailable(String, partition: Int32)
        case store(MetadataStoreError)
        case corruptImage(key: String, reason: String)
        case notStarted
        case notController(activeNodeID: Int32?)
        case duplicateBrokerRegistration(Int32)
        case brokerNotRegistered(Int32)
        case staleBrokerEpoch(Int32, epoch: Int64, current: Int64)
        case fencedLeaderEpoch(String, partition: Int32, epoch: Int32, current: Int32)
        case invalidUpdateVersion(String, partition: Int32, epoch: Int32, current: Int32)
        case ineligibleReplica(Int32, reason: String)
        case aheadOfController(String)
    }

    private let code: Code

    private init(_ code: Code) { self.code = code }

    public static func invalidTopic(_ name: String, reason: String) -> Self {
        Self(.invalidTopic(name, reason: reason))
    }
    public static func topicAlreadyExists(_ name: String) -> Self { Self(.topicAlreadyExists(name)) }
    public static func invalidPartitions(_ count: Int32) -> Self {
        Self(.invalidPartitions(count, reason: "at least 1 is needed"))
    }
    public static func invalidPartitions(_ count: Int32, reason: String) -> Self {
        Self(.invalidPartitions(count, reason: reason))
    }
    public static func invalidReplicaAssignment(_ reason: String) -> Self { Self(.invalidReplicaAssignment(reason)) }
    public static func unknownTopic(_ name: String, partition: Int32? = nil) -> Self {
        Self(.unknownTopic(name, partition: partition))
    }
    public static func unknownTopicID(_ id: KafkaUUID) -> Self { Self(.unknownTopicID(id)) }
    /// A config the broker refused; `reason` names the key.
    public static func invalidConfig(_ reason: String) -> Self { Self(.invalidConfig(reason)) }
    public static func invalidRequest(_ reason: String) -> Self { Self(.invalidRequest(reason)) }
    /// The preferred replica already leads (ElectLeaders reports it per partition, as Kafka does).
    public static let electionNotNeeded = Self(.electionNotNeeded)
    /// No replica may lead: no ISR member is live, and unclean election is not enabled.
    public static let eligibleLeadersNotAvailable = Self(.eligibleLeadersNotAvailable)
    public static func preferredLeaderNotAvailable(_ name: String, partition: Int32) -> Self {
        Self(.preferredLeaderNotAvailable(name, partition: partition))
    }
    public static func invalidReplicationFactor(_ factor: Int16, liveBrokers: Int) -> Self {
        Self(.invalidReplicationFactor(factor, liveBrokers: liveBrokers))
    }
    public static func store(_ error: MetadataStoreError) -> Self { Self(.store(error)) }
    public static func corruptImage(key: String, reason: String) -> Self {
        Self(.corruptImage(key: key, reason: reason))
    }
    /// The controller was used before `start`.
    public static let notStarted = Self(.notStarted)
    /// This process's controller is not the active one (a standby, or one that lost its election key); the request
    /// belongs to controller `activeNodeID` when one is known (Kafka's NOT_CONTROLLER).
    public static func notController(activeNodeID: Int32?) -> Self { Self(.notController(activeNodeID: activeNodeID)) }
    /// Another incarnation of the node is registered and alive.
    public static func duplicateBrokerRegistration(_ nodeID: Int32) -> Self {
        Self(.duplicateBrokerRegistration(nodeID))
    }
    public static func brokerNotRegistered(_ nodeID: Int32) -> Self { Self(.brokerNotRegistered(nodeID)) }
    public static func staleBrokerEpoch(_ nodeID: Int32, epoch: Int64, current: Int64) -> Self {
        Self(.staleBrokerEpoch(nodeID, epoch: epoch, current: current))
    }

    /// An AlterPartition from a leader epoch older than the partition's (Kafka's FENCED_LEADER_EPOCH).
    public static func fencedLeaderEpoch(_ topic: String, partition: Int32, epoch: Int32, current: Int32) -> Self {
        Self(.fencedLeaderEpoch(topic, partition: partition, epoch: epoch, current: current))
    }
    /// An AlterPartition from a partition epoch older than the partition's (Kafka's INVALID_UPDATE_VERSION).
    public static func invalidUpdateVersion(_ topic: String, partition: Int32, epoch: Int32, current: Int32) -> Self {
        Self(.invalidUpdateVersion(topic, partition: partition, epoch: epoch, current: current))
    }
    /// A proposed ISR member that is not registered, is fenced or shutting down, or whose broker epoch is not its
    /// registration's (KIP-903; Kafka's INELIGIBLE_REPLICA).
    public static func ineligibleReplica(_ brokerID: Int32, reason: String) -> Self {
        Self(.ineligibleReplica(brokerID, reason: reason))
    }
    /// A request that has seen a newer image than this controller's: this one is likely no longer the active one
    /// (Kafka answers NOT_CONTROLLER, so the sender looks for the controller again).
    public static func aheadOfController(_ reason: String) -> Self { Self(.aheadOfController(reason)) }

    /// The code a Kafka handler answers with.
    public var kafkaErrorCode: ErrorCode {
        switch self.code {
        case .invalidTopic: return .invalidTopicException
        case .topicAlreadyExists: return .topicAlreadyExists
        case .invalidPartitions: return .invalidPartitions
        case .invalidReplicationFactor: return .invalidReplicationFactor
        case .invalidReplicaAssignment: return .invalidReplicaAssignment
        case .unknownTopic: return .unknownTopicOrPartition
        case .unknownTopicID: return .unknownTopicID
        case .invalidConfig: return .invalidConfig
        case .invalidRequest: return .invalidRequest
        case .electionNotNeeded: return .electionNotNeeded
        case .eligibleLeadersNotAvailable: return .eligibleLeadersNotAvailable
        case .preferredLeaderNotAvailable: return .preferredLeaderNotAvailable
        case .notController: return .notController
        case .duplicateBrokerRegistration: return .duplicateBrokerRegistration
        case .brokerNotRegistered: return .brokerIDNotRegistered
        case .staleBrokerEpoch: return .staleBrokerEpoch
        case .fencedLeaderEpoch: return .fencedLeaderEpoch
        case .invalidUpdateVersion: return .invalidUpdateVersion
        case .ineligibleReplica: return .ineligibleReplica
        case .aheadOfController: return .notController
        case .store, .corruptImage, .notStarted: return .unknownServerError
        }
    }

    public var description: String {
        switch self.code {
        case .invalidTopic(let name, let reason): return "invalid topic name '\(name)': \(reason)"
        case .topicAlreadyExists(let name): return "topic '\(name)' already exists"
        case .invalidPartitions(let count, let reason): return "\(count) partitions: \(reason)"
        case .invalidReplicationFactor(let factor, let live):
            return "replication factor \(factor) is not between 1 and the \(live) live broker(s)"
        case .invalidReplicaAssignment(let reason): return "invalid replica assignment: \(reason)"
        case .unknownTopic(let name, nil): return "topic '\(name)' does not exist"
        case .unknownTopic(let name, let partition?): return "partition \(partition) of topic '\(name)' does not exist"
        case .unknownTopicID(let id): return "no topic has id \(id)"
        case .invalidConfig(let reason), .invalidRequest(let reason): return reason
        case .electionNotNeeded: return "the preferred replica already leads"
        case .eligibleLeadersNotAvailable:
            return "no replica can lead: no ISR member is live and unclean leader election is not enabled"
        case .preferredLeaderNotAvailable(let name, let partition):
            return "the preferred replica of \(name)-\(partition) is not live or not in the ISR"
        case .store(let error): return "\(error)"
        case .corruptImage(let key, let reason): return "metadata key \(key) does not decode: \(reason)"
        case .notStarted: return "the controller is not started"
        case .notController(nil): return "this process is not the active controller, and none is elected"
        case .notController(let nodeID?): return "this process is not the active controller; node \(nodeID) is"
        case .duplicateBrokerRegistration(let nodeID):
            return "node.id \(nodeID) is registered by another live process (another incarnation)"
        case .brokerNotRegistered(let nodeID): return "broker \(nodeID) is not registered"
        case .staleBrokerEpoch(let nodeID, let epoch, let current):
            return "broker \(nodeID) sent broker epoch \(epoch); its registration has epoch \(current)"
        case .fencedLeaderEpoch(let topic, let partition, let epoch, let current):
            return "\(topic)-\(partition) is at leader epoch \(current), not \(epoch)"
        case .invalidUpdateVersion(let topic, let partition, let epoch, let current):
            return "\(topic)-\(partition) is at partition epoch \(current), not \(epoch)"
        case .ineligibleReplica(let brokerID, let reason):
            return "broker \(brokerID) cannot join the ISR: \(reason)"
        case .aheadOfController(let reason): return reason
        }
    }
}
