import KafkaProperties
import LogBrokerServer
import Testing

/// The cluster settings (`process.roles`, `metadata.*`, `controller.listener.names`, `broker.*`): Kafka's names and
/// defaults, each parsed, and each refused combination stopping start-up with one line naming the setting.
@Suite struct ClusterSettingsTests {
    static func resolve(_ pairs: [(String, String)]) throws -> BrokerConfiguration {
        try BrokerConfiguration.resolve(Properties([("node.id", "1")] + pairs)).configuration
    }

    /// The refusal of `pairs` (with `node.id=1`), or nil when they are accepted.
    static func error(_ pairs: [(String, String)]) -> String? {
        do {
            _ = try Self.resolve(pairs)
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// What a cluster of processes sharing etcd writes (the settings a refusal below leaves out).
    static let etcd: [(String, String)] = [
        ("metadata.store", "etcd"), ("metadata.etcd.endpoints", "http://127.0.0.1:2379"),
    ]

    @Test func kafkasDefaultsAreTheStandaloneProcess() throws {
        let configuration = try Self.resolve([])
        #expect(configuration.processRoles == [.broker, .controller])
        #expect(configuration.metadataStore.kind == .local)
        #expect(configuration.metadataStore.etcdEndpoints == [])
        #expect(configuration.metadataStore.etcdPrefix == "/logbroker")
        #expect(configuration.controllerListenerNames == [])
        #expect(configuration.controllerListeners == [])
        #expect(configuration.brokerHeartbeatIntervalMs == 2000)
        #expect(configuration.brokerSessionTimeoutMs == 9000)
        #expect(configuration.brokerRack == nil)
        #expect(configuration.defaultReplicationFactor == 1)
        #expect(configuration.nodeID == 1)
    }

    @Test func everyClusterSettingIsParsed() throws {
        let configuration = try Self.resolve([
            ("process.roles", "controller, broker"), ("metadata.store", "etcd"),
            ("metadata.etcd.endpoints", "http://127.0.0.1:2379, http://etcd-2.example:2379/,http://[::1]:2381"),
            ("metadata.etcd.prefix", "/clusters/blue"),
            ("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"),
            ("controller.listener.names", "CONTROLLER"), ("broker.heartbeat.interval.ms", "500"),
            ("broker.session.timeout.ms", "3000"), ("broker.rack", "rack-a"), ("default.replication.factor", "3"),
        ])
        #expect(configuration.processRoles == [.broker, .controller])
        #expect(configuration.metadataStore.kind == .etcd)
        #expect(
            configuration.metadataStore.etcdEndpoints.map(\.description) == [
                "http://127.0.0.1:2379", "http://etcd-2.example:2379", "http://[::1]:2381",
            ]
        )
        #expect(configuration.metadataStore.etcdEndpoints[2] == .init(host: "::1", port: 2381))
        #expect(configuration.metadataStore.etcdPrefix == "/clusters/blue")
        #expect(configuration.controllerListenerNames == ["CONTROLLER"])
        #expect(configuration.brokerHeartbeatIntervalMs == 500)
        #expect(configuration.brokerSessionTimeoutMs == 3000)
        #expect(configuration.brokerRack == "rack-a")
        #expect(configuration.defaultReplicationFactor == 3)
    }

    /// Kafka's KRaft layout: the CONTROLLER entry of `listeners` is the controller's, never a client listener nor
    /// an advertised one; with the default protocol map it is PLAINTEXT, as in Kafka.
    @Test func theControllerListenerIsKeptApartFromTheClientListeners() throws {
        let configuration = try Self.resolve([
            ("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"),
            ("controller.listener.names", "CONTROLLER"),
        ])
        #expect(configuration.listeners.map(\.description) == ["PLAINTEXT://127.0.0.1:9092"])
        #expect(configuration.advertisedListeners == configuration.listeners)
        #expect(
            configuration.controllerListeners == [
                .init(name: "CONTROLLER", host: "127.0.0.1", port: 9093, securityProtocol: "PLAINTEXT")
            ]
        )
        // An explicit map names it, as Kafka's sample KRaft configuration does.
        let mapped = try Self.resolve([
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"), ("controller.listener.names", "CONTROLLER"),
            ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
        ])
        #expect(mapped.controllerListeners.map(\.description) == ["CONTROLLER://:9093"])
    }

    @Test func theRolesOfAClusterAreAcceptedWithEtcd() throws {
        let brokerOnly = try Self.resolve(
            Self.etcd + [("process.roles", "broker"), ("controller.listener.names", "CONTROLLER")]
        )
        #expect(brokerOnly.processRoles == [.broker])
        #expect(brokerOnly.controllerListeners == [])
        let controllerOnly = try Self.resolve(
            Self.etcd + [
                ("process.roles", "controller"), ("listeners", "CONTROLLER://127.0.0.1:9093"),
                ("controller.listener.names", "CONTROLLER"),
            ]
        )
        #expect(controllerOnly.processRoles == [.controller])
        #expect(controllerOnly.listeners == [])
        #expect(controllerOnly.controllerListeners.map(\.port) == [9093])
    }

    @Test func processRolesAreBrokerControllerOrBothEachOnce() {
        #expect(
            Self.error([("process.roles", "broker,zookeeper")])
                == "Invalid value broker,zookeeper for configuration process.roles: String must be one of: broker, controller"
        )
        #expect(
            Self.error([("process.roles", "broker,broker,controller")])
                == "Invalid value broker,broker,controller for configuration process.roles: each role may appear once"
        )
        #expect(
            Self.error([("process.roles", "")])
                == "Invalid value  for configuration process.roles: a process needs the broker role, the controller "
                + "role, or both"
        )
    }

    /// A local store is one process's file: another process cannot share it.
    @Test func theLocalStoreRefusesASingleRole() {
        for role in ["broker", "controller"] {
            #expect(
                Self.error([("process.roles", role), ("controller.listener.names", "CONTROLLER")])
                    == "Invalid value \(role) for configuration process.roles: with metadata.store=local (the "
                    + "default) a process must have both roles, broker,controller: a local metadata store cannot be "
                    + "shared by processes; set metadata.store=etcd"
            )
        }
    }

    @Test func theMetadataStoreIsLocalOrEtcd() {
        #expect(
            Self.error([("metadata.store", "zookeeper")])
                == "Invalid value zookeeper for configuration metadata.store: String must be one of: local, etcd"
        )
    }

    @Test func etcdNeedsEndpoints() {
        #expect(
            Self.error([("metadata.store", "etcd"), ("controller.listener.names", "CONTROLLER")])
                == "Invalid value  for configuration metadata.etcd.endpoints: metadata.store=etcd needs the etcd "
                + "endpoints, comma-separated http://host:port"
        )
    }

    @Test func etcdEndpointsAreHTTPURLsWithHostAndPort() {
        for bad in [
            "127.0.0.1:2379", "https://127.0.0.1:2379", "http://127.0.0.1", "http://:2379", "http://h:0",
            "http://h:70000", "http://h:2379/v3", "http://::1:2379", "http://user@h:2379", "http://h:port",
        ] {
            #expect(
                Self.error([("metadata.etcd.endpoints", "http://ok:1,\(bad)")])
                    == "Invalid value http://ok:1,\(bad) for configuration metadata.etcd.endpoints: \(bad) is not of "
                    + "the form http://host:port",
                "\(bad)"
            )
        }
    }

    @Test func theEtcdPrefixStartsWithASlash() {
        for bad in ["logbroker", "/", "/logbroker/", ""] {
            #expect(
                Self.error([("metadata.etcd.prefix", bad)])
                    == "Invalid value \(bad) for configuration metadata.etcd.prefix: the prefix must start with / and "
                    + "not end with one (as /logbroker), as a ZooKeeper chroot",
                "\(bad)"
            )
        }
    }

    @Test func aControllerInAClusterNeedsAControllerListener() {
        #expect(
            Self.error(Self.etcd)
                == "Invalid value  for configuration controller.listener.names: a controller in a cluster "
                + "(metadata.store=etcd) needs a controller listener: name it here and give it a "
                + "CONTROLLER://host:port entry in listeners"
        )
        #expect(
            Self.error(Self.etcd + [("process.roles", "controller")])?.hasPrefix(
                "Invalid value  for configuration controller.listener.names: a controller in a cluster"
            ) == true
        )
    }

    @Test func aControllerListenerNameMustBeInListenersAndInTheProtocolMap() {
        #expect(
            Self.error([("controller.listener.names", "CONTROLLER")])
                == "Invalid value CONTROLLER for configuration controller.listener.names: listener name CONTROLLER "
                + "is not in listeners (PLAINTEXT://127.0.0.1:9092); a controller listens on its controller listeners"
        )
        #expect(
            Self.error([
                ("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"),
                ("controller.listener.names", "CONTROLLER"),
                ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT"),
            ])
                == "Invalid value CONTROLLER for configuration controller.listener.names: listener name CONTROLLER "
                + "is not in listener.security.protocol.map (PLAINTEXT)"
        )
    }

    @Test func aBrokerOnlyProcessNamesTheControllerListenerAndDoesNotListenOnIt() {
        #expect(
            Self.error(Self.etcd + [("process.roles", "broker")])
                == "Invalid value  for configuration controller.listener.names: a broker-only process needs the name "
                + "of the controller listener it connects to"
        )
        #expect(
            Self.error(
                Self.etcd + [
                    ("process.roles", "broker"), ("controller.listener.names", "CONTROLLER"),
                    ("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"),
                ]
            )
                == "Invalid value CONTROLLER for configuration controller.listener.names: CONTROLLER is in listeners; "
                + "a broker-only process connects to the controller listener and does not listen on it"
        )
    }

    @Test func aBrokerKeepsAClientListenerAndAControllerOnlyProcessHasNone() {
        #expect(
            Self.error([("listeners", "CONTROLLER://127.0.0.1:9093"), ("controller.listener.names", "CONTROLLER")])
                == "Invalid value CONTROLLER://127.0.0.1:9093 for configuration listeners: a broker needs a listener "
                + "for Kafka clients, and every listener is a controller listener (controller.listener.names)"
        )
        #expect(
            Self.error(
                Self.etcd + [
                    ("process.roles", "controller"), ("controller.listener.names", "CONTROLLER"),
                    ("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"),
                ]
            )
                == "Invalid value PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093 for configuration listeners: "
                + "with process.roles=controller, listeners holds only controller listeners "
                + "(controller.listener.names); PLAINTEXT is not one"
        )
    }

    @Test func clientsAreNeverAdvertisedAControllerListener() {
        #expect(
            Self.error([
                ("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"),
                ("controller.listener.names", "CONTROLLER"),
                ("advertised.listeners", "CONTROLLER://broker.example:9093"),
            ])
                == "Invalid value CONTROLLER://broker.example:9093 for configuration advertised.listeners: CONTROLLER "
                + "is a controller listener (controller.listener.names); Kafka clients are not served there"
        )
    }

    @Test func theHeartbeatIntervalIsBelowTheSessionTimeout() throws {
        #expect(
            Self.error([("broker.heartbeat.interval.ms", "9000")])
                == "Invalid value 9000 for configuration broker.heartbeat.interval.ms: the heartbeat interval must be "
                + "below broker.session.timeout.ms (9000), or a live broker is fenced between two heartbeats"
        )
        #expect(
            Self.error([("broker.session.timeout.ms", "1000")])?.hasPrefix(
                "Invalid value 2000 for configuration broker.heartbeat.interval.ms: the heartbeat interval must be"
            ) == true
        )
        #expect(
            Self.error([("broker.heartbeat.interval.ms", "0")])
                == "Invalid value 0 for configuration broker.heartbeat.interval.ms: Value must be at least 1"
        )
        #expect(try Self.resolve([("broker.heartbeat.interval.ms", "8999")]).brokerHeartbeatIntervalMs == 8999)
    }

    /// The file and the overrides are named, as for every other setting.
    @Test func aRefusalSaysWhereTheSettingCameFrom() throws {
        let (properties, source) = try BrokerConfiguration.merge(
            file: Properties([("node.id", "1"), ("metadata.store", "etcd"), ("controller.listener.names", "C")]),
            fileName: "server.properties",
            overrides: ["metadata.etcd.endpoints=etcd:2379"]
        )
        #expect(throws: LogBrokerServerError.self) { try BrokerConfiguration.resolve(properties, source: source) }
        do {
            _ = try BrokerConfiguration.resolve(properties, source: source)
        } catch {
            #expect(
                "\(error)"
                    == "--override: Invalid value etcd:2379 for configuration metadata.etcd.endpoints: etcd:2379 is "
                    + "not of the form http://host:port"
            )
        }
    }
}
