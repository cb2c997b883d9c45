import ClusterControl
import KafkaMessages
import KafkaWire
import Logging

/// InitProducerId (key 22), v0–4, for idempotent producers: as Kafka's transaction coordinator does without a
/// transactional id, the producer id and epoch in the request (v3+) are ignored and a fresh producer id with epoch
/// 0 is returned, taken from a block of ids the controller recorded in the image before any was handed out, so a
/// restarted broker never gives out an id that is already in a log. An empty transactional id answers
/// INVALID_REQUEST, as Kafka's coordinator does; any other is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
/// as FindCoordinator refuses it, until transactions exist. v5 (transactions v2, KIP-890) is not advertised.
///
/// A `Sendable` value sharing the id source (an actor); thread-safe.
public struct InitProducerIdHandler: KafkaHandler {
    public typealias Request = InitProducerIdRequest

    public var versions: ClosedRange<Int16> { 0...4 }

    let producerIDs: ProducerIDSource

    public init(controller: Controller) {
        self.producerIDs = ProducerIDSource { try await controller.allocateProducerIDBlock() }
    }

    /// On a broker of a cluster: blocks come from the local controller while it is the active one, else from the
    /// active controller by AllocateProducerIds over its CONTROLLER listener, with this broker's epoch.
    init(forwarding: ControllerForwarding, lifecycle: BrokerLifecycle, nodeID: Int32) {
        self.producerIDs = ProducerIDSource {
            if await forwarding.isLocal() { return try await forwarding.controller.allocateProducerIDBlock() }
            guard let brokerEpoch = await lifecycle.brokerEpoch else {
                throw ClusterControlError.brokerNotRegistered(nodeID)
            }
            let response = try await forwarding.channel.send(
                AllocateProducerIdsRequest(brokerID: nodeID, brokerEpoch: brokerEpoch),
                version: 0,
                deadline: .now + .seconds(10)
            )
            guard response.errorCode == 0, response.producerIDLen > 0 else {
                if response.errorCode == ErrorCode.notController.rawValue { await forwarding.channel.reset() }
                throw ProducerIDBlockRefused(code: ErrorCode(response.errorCode))
            }
            return response.producerIDStart..<(response.producerIDStart + Int64(response.producerIDLen))
        }
    }

    public func handle(_ request: InitProducerIdRequest, context: RequestContext) async -> InitProducerIdResponse {
        if let transactionalID = request.transactionalID {
            let error: ErrorCode = transactionalID.isEmpty ? .invalidRequest : .transactionalIDAuthorizationFailed
            return InitProducerIdResponse(errorCode: error.rawValue, producerID: -1, producerEpoch: -1)
        }
        do {
            return InitProducerIdResponse(errorCode: 0, producerID: try await self.producerIDs.next(), producerEpoch: 0)
        } catch {
            context.logger.warning("Cannot allocate a producer id block", metadata: ["error": "\(error)"])
            // Retriable for clients: they look the coordinator up again and retry.
            return InitProducerIdResponse(
                errorCode: ErrorCode.coordinatorNotAvailable.rawValue,
                producerID: -1,
                producerEpoch: -1
            )
        }
    }
}

/// Producer ids for this broker, one at a time from blocks the controller allocates (Kafka's `ProducerIdManager`).
/// Thread safety: an actor. Two callers that find the block empty at once each get a block; the rest of the first
/// is skipped, never handed out twice.
actor ProducerIDSource {
    private let allocate: @Sendable () async throws -> Range<Int64>
    private var block: Range<Int64> = 0..<0

    /// - Parameter allocate: a new block, recorded by the controller before it is returned.
    init(allocate: @escaping @Sendable () async throws -> Range<Int64>) {
        self.allocate = allocate
    }

    func next() async throws -> Int64 {
        if self.block.isEmpty { self.block = try await self.allocate() }
        let id = self.block.lowerBound
        self.block = (id + 1)..<self.block.upperBound
        return id
    }
}

/// The active controller answered AllocateProducerIds with an error.
struct ProducerIDBlockRefused: Error, CustomStringConvertible {
    let code: ErrorCode
    var description: String { "the controller refused a producer id block: \(self.code)" }
}
