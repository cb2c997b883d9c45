/// A Kafka API key: the int16 at the start of every request header that names the request type.
///
/// Known keys have static names (Kafka's `ApiKeys`, spelled lowerCamelCase); any other value still round-trips.
/// A plain value: freely shareable across threads.
public struct APIKey: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int16

    public init(rawValue: Int16) {
        self.rawValue = rawValue
    }

    public init(_ rawValue: Int16) {
        self.rawValue = rawValue
    }

    public static func < (lhs: APIKey, rhs: APIKey) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    public static let produce = APIKey(0)
    public static let fetch = APIKey(1)
    public static let listOffsets = APIKey(2)
    public static let metadata = APIKey(3)
    public static let leaderAndIsr = APIKey(4)
    public static let stopReplica = APIKey(5)
    public static let updateMetadata = APIKey(6)
    public static let controlledShutdown = APIKey(7)
    public static let offsetCommit = APIKey(8)
    public static let offsetFetch = APIKey(9)
    public static let findCoordinator = APIKey(10)
    public static let joinGroup = APIKey(11)
    public static let heartbeat = APIKey(12)
    public static let leaveGroup = APIKey(13)
    public static let syncGroup = APIKey(14)
    public static let describeGroups = APIKey(15)
    public static let listGroups = APIKey(16)
    public static let saslHandshake = APIKey(17)
    public static let apiVersions = APIKey(18)
    public static let createTopics = APIKey(19)
    public static let deleteTopics = APIKey(20)
    public static let deleteRecords = APIKey(21)
    public static let initProducerID = APIKey(22)
    public static let offsetForLeaderEpoch = APIKey(23)
    public static let addPartitionsToTxn = APIKey(24)
    public static let addOffsetsToTxn = APIKey(25)
    public static let endTxn = APIKey(26)
    public static let writeTxnMarkers = APIKey(27)
    public static let txnOffsetCommit = APIKey(28)
    public static let describeAcls = APIKey(29)
    public static let createAcls = APIKey(30)
    public static let deleteAcls = APIKey(31)
    public static let describeConfigs = APIKey(32)
    public static let alterConfigs = APIKey(33)
    public static let alterReplicaLogDirs = APIKey(34)
    public static let describeLogDirs = APIKey(35)
    public static let saslAuthenticate = APIKey(36)
    public static let createPartitions = APIKey(37)
    public static let createDelegationToken = APIKey(38)
    public static let renewDelegationToken = APIKey(39)
    public static let expireDelegationToken = APIKey(40)
    public static let describeDelegationToken = APIKey(41)
    public static let deleteGroups = APIKey(42)
    public static let electLeaders = APIKey(43)
    public static let incrementalAlterConfigs = APIKey(44)
    public static let alterPartitionReassignments = APIKey(45)
    public static let listPartitionReassignments = APIKey(46)
    public static let offsetDelete = APIKey(47)
    public static let describeClientQuotas = APIKey(48)
    public static let alterClientQuotas = APIKey(49)
    public static let describeUserScramCredentials = APIKey(50)
    public static let alterUserScramCredentials = APIKey(51)
    public static let vote = APIKey(52)
    public static let beginQuorumEpoch = APIKey(53)
    public static let endQuorumEpoch = APIKey(54)
    public static let describeQuorum = APIKey(55)
    public static let alterPartition = APIKey(56)
    public static let updateFeatures = APIKey(57)
    public static let envelope = APIKey(58)
    public static let fetchSnapshot = APIKey(59)
    public static let describeCluster = APIKey(60)
    public static let describeProducers = APIKey(61)
    public static let brokerRegistration = APIKey(62)
    public static let brokerHeartbeat = APIKey(63)
    public static let unregisterBroker = APIKey(64)
    public static let describeTransactions = APIKey(65)
    public static let listTransactions = APIKey(66)
    public static let allocateProducerIDs = APIKey(67)
    public static let consumerGroupHeartbeat = APIKey(68)
    public static let consumerGroupDescribe = APIKey(69)
    public static let controllerRegistration = APIKey(70)
    public static let getTelemetrySubscriptions = APIKey(71)
    public static let pushTelemetry = APIKey(72)
    public static let assignReplicasToDirs = APIKey(73)
    public static let listClientMetricsResources = APIKey(74)
    public static let describeTopicPartitions = APIKey(75)
    public static let shareGroupHeartbeat = APIKey(76)
    public static let shareGroupDescribe = APIKey(77)
    public static let shareFetch = APIKey(78)
    public static let shareAcknowledge = APIKey(79)
    public static let addRaftVoter = APIKey(80)
    public static let removeRaftVoter = APIKey(81)
    public static let updateRaftVoter = APIKey(82)
    public static let initializeShareGroupState = APIKey(83)
    public static let readShareGroupState = APIKey(84)
    public static let writeShareGroupState = APIKey(85)
    public static let deleteShareGroupState = APIKey(86)
    public static let readShareGroupStateSummary = APIKey(87)

    /// One more than the highest key named here; the size of a lookup table indexed by key.
    public static let tableSize = 88

    /// Kafka's name for the API (`ApiKeys.name`'s UpperCamelCase message prefix), or nil for unknown keys.
    public var name: String? {
        switch self.rawValue {
        case 0: "Produce"
        case 1: "Fetch"
        case 2: "ListOffsets"
        case 3: "Metadata"
        case 4: "LeaderAndIsr"
        case 5: "StopReplica"
        case 6: "UpdateMetadata"
        case 7: "ControlledShutdown"
        case 8: "OffsetCommit"
        case 9: "OffsetFetch"
        case 10: "FindCoordinator"
        case 11: "JoinGroup"
        case 12: "Heartbeat"
        case 13: "LeaveGroup"
        case 14: "SyncGroup"
        case 15: "DescribeGroups"
        case 16: "ListGroups"
        case 17: "SaslHandshake"
        case 18: "ApiVersions"
        case 19: "CreateTopics"
        case 20: "DeleteTopics"
        case 21: "DeleteRecords"
        case 22: "InitProducerId"
        case 23: "OffsetForLeaderEpoch"
        case 24: "AddPartitionsToTxn"
        case 25: "AddOffsetsToTxn"
        case 26: "EndTxn"
        case 27: "WriteTxnMarkers"
        case 28: "TxnOffsetCommit"
        case 29: "DescribeAcls"
        case 30: "CreateAcls"
        case 31: "DeleteAcls"
        case 32: "DescribeConfigs"
        case 33: "AlterConfigs"
        case 34: "AlterReplicaLogDirs"
        case 35: "DescribeLogDirs"
        case 36: "SaslAuthenticate"
        case 37: "CreatePartitions"
        case 38: "CreateDelegationToken"
        case 39: "RenewDelegationToken"
        case 40: "ExpireDelegationToken"
        case 41: "DescribeDelegationToken"
        case 42: "DeleteGroups"
        case 43: "ElectLeaders"
        case 44: "IncrementalAlterConfigs"
        case 45: "AlterPartitionReassignments"
        case 46: "ListPartitionReassignments"
        case 47: "OffsetDelete"
        case 48: "DescribeClientQuotas"
        case 49: "AlterClientQuotas"
        case 50: "DescribeUserScramCredentials"
        case 51: "AlterUserScramCredentials"
        case 52: "Vote"
        case 53: "BeginQuorumEpoch"
        case 54: "EndQuorumEpoch"
        case 55: "DescribeQuorum"
        case 56: "AlterPartition"
        case 57: "UpdateFeatures"
        case 58: "Envelope"
        case 59: "FetchSnapshot"
        case 60: "DescribeCluster"
        case 61: "DescribeProducers"
        case 62: "BrokerRegistration"
        case 63: "BrokerHeartbeat"
        case 64: "UnregisterBroker"
        case 65: "DescribeTransactions"
        case 66: "ListTransactions"
        case 67: "AllocateProducerIds"
        case 68: "ConsumerGroupHeartbeat"
        case 69: "ConsumerGroupDescribe"
        case 70: "ControllerRegistration"
        case 71: "GetTelemetrySubscriptions"
        case 72: "PushTelemetry"
        case 73: "AssignReplicasToDirs"
        case 74: "ListClientMetricsResources"
        case 75: "DescribeTopicPartitions"
        case 76: "ShareGroupHeartbeat"
        case 77: "ShareGroupDescribe"
        case 78: "ShareFetch"
        case 79: "ShareAcknowledge"
        case 80: "AddRaftVoter"
        case 81: "RemoveRaftVoter"
        case 82: "UpdateRaftVoter"
        case 83: "InitializeShareGroupState"
        case 84: "ReadShareGroupState"
        case 85: "WriteShareGroupState"
        case 86: "DeleteShareGroupState"
        case 87: "ReadShareGroupStateSummary"
        default: nil
        }
    }

    public var description: String {
        if let name = self.name { return "\(name)(\(self.rawValue))" }
        return "APIKey(\(self.rawValue))"
    }
}
