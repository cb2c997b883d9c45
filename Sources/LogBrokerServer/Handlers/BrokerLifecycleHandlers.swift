import ClusterControl
import KafkaMessages
import KafkaWire
import Logging

/// BrokerRegistration (key 62), v0–4, served on the controller listener as Kafka's `ControllerApis` and
/// `ClusterControlManager.registerBroker` do: a broker of another cluster gets INCONSISTENT_CLUSTER_ID, a node id
/// whose registered process (another incarnation) still has a live session DUPLICATE_BROKER_REGISTRATION, and a
/// process whose controller is not the active one NOT_CONTROLLER. A registration is recorded fenced, with its
/// endpoints, rack and incarnation id; the answer carries its broker epoch (the store revision that recorded it).
/// The same incarnation registering again (a retry) is accepted. The supported features are not checked: nothing is
/// finalized here (Kafka would refuse a broker that cannot run the finalized `metadata.version`).
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct BrokerRegistrationHandler: KafkaHandler {
    public typealias Request = BrokerRegistrationRequest

    public var versions: ClosedRange<Int16> { 0...4 }

    let controller: Controller

    public init(controller: Controller) {
        self.controller = controller
    }

    public func handle(
        _ request: BrokerRegistrationRequest,
        context: RequestContext
    ) async -> BrokerRegistrationResponse {
        guard let active = self.controller.activeController else {
            return BrokerRegistrationResponse(errorCode: ErrorCode.notController.rawValue)
        }
        let clusterID = await self.controller.follower.followed.image.clusterID
        guard request.clusterID == clusterID else {
            context.logger.warning(
                "Refused a broker registration from another cluster",
                metadata: ["node.id": "\(request.brokerID)", "cluster.id": "\(request.clusterID)"]
            )
            return BrokerRegistrationResponse(errorCode: ErrorCode.inconsistentClusterID.rawValue)
        }
        let registration = BrokerRegistration(
            nodeID: request.brokerID,
            endpoints: request.listeners.map {
                BrokerEndpoint(listener: $0.name, host: $0.host, port: Int32($0.port))
            },
            rack: request.rack.flatMap { $0.isEmpty ? nil : $0 },
            incarnationID: request.incarnationID,
            fenced: true
        )
        do {
            let brokerEpoch = try await active.register(registration)
            return BrokerRegistrationResponse(errorCode: 0, brokerEpoch: brokerEpoch)
        } catch {
            context.logger.info(
                "Refused a broker registration",
                metadata: ["node.id": "\(request.brokerID)", "error": "\(error)"]
            )
            return BrokerRegistrationResponse(errorCode: error.kafkaErrorCode.rawValue)
        }
    }
}

/// BrokerHeartbeat (key 63), v0–1, served on the controller listener as Kafka's `BrokerHeartbeatManager` does: the
/// broker's liveness, its metadata offset (the revision its image follower applied), and its wishes (to stay
/// fenced, to shut down). A registered broker is unfenced by a heartbeat once it has caught up with its own
/// registration; the answer says whether it is caught up, fenced, and may shut down. An unknown broker gets
/// BROKER_ID_NOT_REGISTERED, an epoch other than its registration's STALE_BROKER_EPOCH, a process whose controller
/// is not active NOT_CONTROLLER.
///
/// Beyond Kafka: once a broker has heartbeated on a connection, that connection closing (a crashed process closes
/// its sockets) fences the broker at once, instead of after `broker.session.timeout.ms`.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct BrokerHeartbeatHandler: KafkaHandler {
    public typealias Request = BrokerHeartbeatRequest

    public var versions: ClosedRange<Int16> { 0...1 }

    let controller: Controller

    public init(controller: Controller) {
        self.controller = controller
    }

    public func handle(_ request: BrokerHeartbeatRequest, context: RequestContext) async -> BrokerHeartbeatResponse {
        guard let active = self.controller.activeController else {
            return BrokerHeartbeatResponse(errorCode: ErrorCode.notController.rawValue)
        }
        let heartbeat = BrokerHeartbeat(
            nodeID: request.brokerID,
            brokerEpoch: request.brokerEpoch,
            appliedRevision: request.currentMetadataOffset,
            wantFence: request.wantFence,
            wantShutDown: request.wantShutDown
        )
        do {
            let answer = try await active.heartbeat(heartbeat)
            let (nodeID, brokerEpoch) = (request.brokerID, request.brokerEpoch)
            context.connection.whenClosed(key: "broker-heartbeat-\(nodeID)") {
                await active.heartbeatConnectionClosed(nodeID: nodeID, brokerEpoch: brokerEpoch)
            }
            return BrokerHeartbeatResponse(
                errorCode: 0,
                isCaughtUp: answer.isCaughtUp,
                isFenced: answer.isFenced,
                shouldShutDown: answer.shouldShutDown
            )
        } catch {
            context.logger.debug(
                "Refused a broker heartbeat",
                metadata: ["node.id": "\(request.brokerID)", "error": "\(error)"]
            )
            return BrokerHeartbeatResponse(errorCode: error.kafkaErrorCode.rawValue)
        }
    }
}

/// AllocateProducerIds (key 67), v0, served on the controller listener: a block of producer ids for a broker whose
/// controller runs in another process, recorded in the image before the answer (Kafka's `ProducerIdControlManager`).
/// As Kafka checks, the broker must be registered at the epoch it sends (else STALE_BROKER_EPOCH); a process whose
/// controller is not active answers NOT_CONTROLLER.
///
/// A `Sendable` value sharing the controller (an actor); thread-safe.
public struct AllocateProducerIdsHandler: KafkaHandler {
    public typealias Request = AllocateProducerIdsRequest

    public var versions: ClosedRange<Int16> { 0...0 }

    let controller: Controller

    public init(controller: Controller) {
        self.controller = controller
    }

    public func handle(
        _ request: AllocateProducerIdsRequest,
        context: RequestContext
    ) async -> AllocateProducerIdsResponse {
        guard let active = self.controller.activeController, await active.epoch != nil else {
            return AllocateProducerIdsResponse(errorCode: ErrorCode.notController.rawValue)
        }
        let registered = await self.controller.follower.followed.image.brokers[request.brokerID]
        guard let registered, registered.brokerEpoch == request.brokerEpoch else {
            return AllocateProducerIdsResponse(errorCode: ErrorCode.staleBrokerEpoch.rawValue)
        }
        do {
            let block = try await self.controller.allocateProducerIDBlock()
            return AllocateProducerIdsResponse(
                errorCode: 0,
                producerIDStart: block.lowerBound,
                producerIDLen: Int32(block.count)
            )
        } catch {
            context.logger.warning("Cannot allocate a producer id block", metadata: ["error": "\(error)"])
            return AllocateProducerIdsResponse(errorCode: error.kafkaErrorCode.rawValue)
        }
    }
}
