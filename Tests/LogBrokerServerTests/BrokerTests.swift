import Foundation
import KafkaMessages
import KafkaNIO
import KafkaWire
import LogBrokerClient
import LogBrokerServer
import NIOCore
import NIOPosix
import Testing

/// `Broker`, the whole node as `logbroker-server` assembles it, started in-process; its controller listener, and
/// what it does with an etcd it cannot reach.
@Suite(.timeLimit(.minutes(2))) struct BrokerTests {
    /// A port nothing listens on now.
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try requireNonNilValue(channel.localAddress?.port)
        try await channel.close()
        return port
    }

    /// Connections that arrive while the broker stops are closed, and none is dropped half set up: NIO drops the
    /// connections still queued when a listening channel closes, and such a connection used to trap the process
    /// (swift-nio#2813; seen once in CI as SIGILL at SIGTERM).
    @Test func connectionsArrivingAsTheBrokerStopsAreClosed() async throws {
        for _ in 0..<10 {
            let clients = try await withInProcessBroker { broker in
                let port = try requireNonNilValue(broker.localAddresses.first?.port)
                // Started, not awaited: the graceful shutdown begins while they are being accepted.
                return (0..<64).map { _ in
                    ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port)
                }
            }
            for client in clients {
                // Refused, reset or closed by the broker: no connection is left open.
                guard let channel = try? await client.get() else { continue }
                try? await channel.closeFuture.get()
            }
        }
    }

    @Test func aWholeBrokerInProcessServesProduceAndFetchToTheClientLibrary() async throws {
        try await withInProcessBroker { broker in
            let port = try #require(broker.localAddresses.first?.port)
            let client = try LogBrokerClient(bootstrapServers: "127.0.0.1:\(port)")
            try await Admin(client: client).createTopic("in-process", partitions: 2, replicationFactor: 1)
            let producer = try Producer(client: client)
            var sent: [String] = []
            for index in 0..<50 {
                let value = "value-\(index)"
                let metadata = try await producer.send(
                    ProducerRecord(topic: "in-process", partition: Int32(index % 2), value: Array(value.utf8))
                )
                #expect(metadata.offset == Int64(index / 2))
                sent.append(value)
            }
            let consumer = Consumer(client: client)
            await consumer.assign([TopicPartition("in-process", 0), TopicPartition("in-process", 1)])
            var received: [ConsumerRecord] = []
            let deadline = ContinuousClock.now + .seconds(30)
            while received.count < sent.count, ContinuousClock.now < deadline {
                received += try await consumer.poll()
            }
            #expect(Set(received.map { String(decoding: $0.value ?? [], as: UTF8.self) }) == Set(sent))
            #expect(received.allSatisfy { $0.broker == 1 })
            // The records are in the broker's own log directory.
            let logDirectory = try #require(broker.configuration.logDirs.first)
            for partition in 0..<2 {
                let segment = "\(logDirectory)/in-process-\(partition)/00000000000000000000.log"
                let size = try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int
                #expect((size ?? 0) > 0, "\(segment)")
            }
        }
    }

    /// A pasted KRaft configuration: the CONTROLLER listener is bound with the controller's handlers only (ApiVersions
    /// lists the admin writes brokers forward, not Metadata, Produce or Fetch), and it is not advertised: clients see
    /// the PLAINTEXT listener only, and a client API on the controller port closes that connection.
    @Test func theControllerListenerServesTheControllerAPIsAndIsNotAdvertised() async throws {
        try await withInProcessBroker(
            [
                ("listeners", "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0"),
                ("controller.listener.names", "CONTROLLER"),
            ]
        ) { broker in
            #expect(broker.localAddresses.count == 1)
            let port = try #require(broker.localAddresses.first?.port)
            let controllerPort = try #require(broker.controllerAddresses.first?.port)
            #expect(port != controllerPort)
            let versions = try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: controllerPort) {
                try await $0.send(ApiVersionsRequest(), version: 2)
            }
            #expect(
                Set(versions.apiKeys.map(\.apiKey))
                    == Set(
                        [
                            APIKey.apiVersions, .createTopics, .deleteTopics, .createPartitions, .alterConfigs,
                            .incrementalAlterConfigs, .electLeaders, .describeQuorum, .brokerRegistration,
                            .brokerHeartbeat, .allocateProducerIDs, .alterPartition,
                        ].map(\.rawValue)
                    )
            )
            // The standalone controller is the active one: a topic created on the controller listener is served on
            // the client listener.
            let created = try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: controllerPort) {
                try await $0.send(
                    CreateTopicsRequest(
                        topics: [.init(name: "via-controller", numPartitions: 2, replicationFactor: 1)],
                        timeoutMs: 10_000
                    ),
                    version: 5
                )
            }
            #expect(created.topics.map(\.errorCode) == [0])
            let metadata = try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) {
                try await $0.send(MetadataRequest(topics: nil), version: 12)
            }
            #expect(metadata.brokers.map(\.port) == [Int32(port)])
            #expect(metadata.topics.first { $0.name == "via-controller" }?.partitions.count == 2)
            // Metadata is a client API: the controller listener closes the connection rather than answer it.
            await #expect(throws: (any Error).self) {
                try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: controllerPort) {
                    try await $0.send(MetadataRequest(topics: []), version: 12)
                }
            }
        }
    }

    /// `metadata.store=etcd` with an etcd that does not answer: start-up stops once the connect timeout has passed,
    /// with an error naming `metadata.etcd.endpoints`, before any log directory is opened or any port bound.
    @Test func anUnreachableEtcdStopsStartUpNamingTheEndpointsBeforeAnythingIsOpened() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-\(UUID())").path
        let etcdPort = try await Self.freePort()
        let configuration = try testConfiguration([
            ("log.dirs", directory), ("metadata.store", "etcd"),
            ("metadata.etcd.endpoints", "http://127.0.0.1:\(etcdPort)"),
            ("listeners", "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0"),
            ("controller.listener.names", "CONTROLLER"),
        ])
        let log = CapturedLog()
        let started = ContinuousClock.now
        do {
            _ = try await Broker.start(
                configuration: configuration,
                metadataStoreConnectTimeout: .seconds(1),
                logger: log.logger()
            )
            Issue.record("started without etcd")
        } catch let error as LogBrokerServerError {
            #expect(error.settingName == "metadata.etcd.endpoints")
            #expect(
                "\(error)".hasPrefix(
                    "Cannot reach the metadata store metadata.etcd.endpoints=http://127.0.0.1:\(etcdPort): no etcd "
                        + "member answered within 1.0 seconds"
                ),
                "\(error)"
            )
        }
        // Bounded (the process test measures how close to the timeout: this one shares a busy cooperative pool with
        // the rest of the suite, seen taking 16 s).
        #expect(ContinuousClock.now - started < .seconds(60))
        // One warning, naming the setting.
        #expect(log.all.filter { $0.contains("etcd does not answer") }.count == 1, "\(log.all)")
        #expect(!FileManager.default.fileExists(atPath: directory))
    }

    /// The binary started on a KRaft-style file (Kafka's sample layout): it serves clients on PLAINTEXT and the
    /// controller APIs on CONTROLLER; kcat sees one broker, on PLAINTEXT, and is never told of the CONTROLLER port.
    @Test func theBinaryRunsAKRaftStyleConfiguration() async throws {
        let controllerPort = try await Self.freePort()
        try await BrokerProcess.withBroker([
            ("listeners", "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:\(controllerPort)"),
            ("controller.listener.names", "CONTROLLER"),
            ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
            ("broker.heartbeat.interval.ms", "2000"), ("broker.session.timeout.ms", "9000"), ("broker.rack", "r1"),
        ]) { broker in
            #expect(
                broker.stderr.contains("listener=CONTROLLER port=\(controllerPort)"),
                "\(broker.stderr)"
            )
            let kcat = try await ExternalClientTests.run(["kcat", "-b", broker.bootstrap, "-L"])
            #expect(kcat.status == 0, "\(kcat.output)")
            #expect(kcat.output.contains(" 1 brokers:"), "\(kcat.output)")
            #expect(kcat.output.contains("broker 1 at 127.0.0.1:\(broker.port)"), "\(kcat.output)")
            #expect(!kcat.output.contains("\(controllerPort)"), "\(kcat.output)")
        }
    }
}
