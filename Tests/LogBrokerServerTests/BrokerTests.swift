import Foundation
import KafkaMessages
import KafkaNIO
import LogBrokerClient
import LogBrokerServer
import NIOCore
import NIOPosix
import Testing

/// `Broker`, the whole node as `logbroker-server` assembles it, started in-process; and what the binary does with the
/// cluster settings it cannot act on yet.
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

    /// A pasted KRaft configuration: the CONTROLLER listener is neither bound nor advertised (nothing would answer
    /// the KRaft RPCs there yet), and the log says so; clients see the PLAINTEXT listener only.
    @Test func theControllerListenerIsNotBoundNorAdvertised() async throws {
        let controllerPort = try await Self.freePort()
        let log = CapturedLog()
        try await withInProcessBroker(
            [
                ("listeners", "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:\(controllerPort)"),
                ("controller.listener.names", "CONTROLLER"),
            ],
            log: log
        ) { broker in
            #expect(broker.localAddresses.count == 1)
            let port = try #require(broker.localAddresses.first?.port)
            #expect(port != controllerPort)
            #expect(
                log.all.contains {
                    $0.contains("Controller listener not bound")
                        && $0.contains("listener=CONTROLLER://127.0.0.1:\(controllerPort)")
                }
            )
            // Nothing listens there: the port can be bound by someone else.
            let squatter = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: "127.0.0.1", port: controllerPort).get()
            try await squatter.close()
            let metadata = try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) {
                try await $0.send(MetadataRequest(topics: []), version: 12)
            }
            #expect(metadata.brokers.map(\.port) == [Int32(port)])
        }
    }

    /// `metadata.store=etcd` parses, but the server has no etcd store yet: start-up stops before anything is opened
    /// or bound, rather than running standalone.
    @Test func anEtcdStoreStopsStartUpBeforeAnythingIsOpened() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-\(UUID())").path
        let configuration = try testConfiguration([
            ("log.dirs", directory), ("metadata.store", "etcd"), ("metadata.etcd.endpoints", "http://127.0.0.1:2379"),
            ("listeners", "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0"),
            ("controller.listener.names", "CONTROLLER"),
        ])
        await #expect(
            throws: LogBrokerServerError.notBuiltYet(
                setting: "metadata.store",
                value: "etcd",
                reason: "the etcd metadata store is not built into the server yet; only metadata.store=local runs "
                    + "so far (one process with both roles)"
            )
        ) {
            _ = try await Broker.start(configuration: configuration, logger: CapturedLog().logger())
        }
        #expect(!FileManager.default.fileExists(atPath: directory))
    }

    /// The binary: one line on stderr naming the setting, and status 1, as for a bad configuration.
    @Test func theBinaryRefusesTheEtcdStoreWithOneLineAndStatus1() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-binary-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("server.properties")
        try """
        node.id=1
        listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0
        controller.listener.names=CONTROLLER
        metadata.store=etcd
        metadata.etcd.endpoints=http://127.0.0.1:2379
        log.dirs=\(directory.appendingPathComponent("logs").path)

        """.write(to: config, atomically: true, encoding: .utf8)
        let result = try await ExternalClientTests.run([BrokerProcess.binary.path, config.path])
        #expect(result.status == 1)
        #expect(
            result.output
                == "logbroker-server: Cannot run configuration metadata.store=etcd: the etcd metadata store is not "
                + "built into the server yet; only metadata.store=local runs so far (one process with both roles)\n"
        )
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("logs").path))
    }

    /// The binary started on a KRaft-style file (Kafka's sample layout): it serves clients on PLAINTEXT, and kcat
    /// sees one broker there and nothing on the CONTROLLER port.
    @Test func theBinaryRunsAKRaftStyleConfiguration() async throws {
        let controllerPort = try await Self.freePort()
        try await BrokerProcess.withBroker([
            ("listeners", "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:\(controllerPort)"),
            ("controller.listener.names", "CONTROLLER"),
            ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
            ("broker.heartbeat.interval.ms", "2000"), ("broker.session.timeout.ms", "9000"), ("broker.rack", "r1"),
        ]) { broker in
            #expect(broker.stderr.contains("Controller listener not bound"), "\(broker.stderr)")
            let kcat = try await ExternalClientTests.run(["kcat", "-b", broker.bootstrap, "-L"])
            #expect(kcat.status == 0, "\(kcat.output)")
            #expect(kcat.output.contains(" 1 brokers:"), "\(kcat.output)")
            #expect(kcat.output.contains("broker 1 at 127.0.0.1:\(broker.port)"), "\(kcat.output)")
            #expect(!kcat.output.contains("\(controllerPort)"), "\(kcat.output)")
        }
    }
}
