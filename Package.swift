// swift-tools-version:6.1
import PackageDescription

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")

/// Every Swift target is compiled in language mode 6 with these upcoming features.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The programs LogBroker ships; each is a thin command over the libraries.
let tools = ["logbroker-server", "logcat", "logbroker-perf", "logbroker-mirror", "logbroker-admin"]

let package = Package(
    name: "LogBroker",
    products: tools.map { .executable(name: $0, targets: [$0]) } + [
        .executable(name: "kafka-message-gen", targets: ["kafka-message-gen"]),
        .executable(name: "logbroker-microbench", targets: ["logbroker-microbench"]),
        .executable(name: "logbroker-storagebench", targets: ["logbroker-storagebench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        // C: CRC-32C with an SSE4.2 path chosen at run time, and the system compression libraries.
        .target(name: "CCRC32C"),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CSnappy", pkgConfig: "snappy", providers: [.apt(["libsnappy-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),

        // Kafka's wire primitives, the generated message codecs, and record batches.
        .target(name: "KafkaWire", dependencies: [nioCore], swiftSettings: swiftSettings),
        .target(
            name: "KafkaMessages",
            dependencies: ["KafkaWire", nioCore],
            exclude: ["Definitions", "allowlist.txt"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KafkaRecords",
            dependencies: ["KafkaWire", "CCRC32C", "CZlib", "CLZ4", "CSnappy", "CZstd", nioCore],
            swiftSettings: swiftSettings
        ),

        // `.properties` files and typed setting tables (Kafka's ConfigDef); partition logs on disk.
        .target(name: "KafkaProperties", swiftSettings: swiftSettings),
        .target(
            name: "LogStorage",
            dependencies: [
                "KafkaRecords", "KafkaWire", "KafkaProperties", nioCore,
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // The code generator behind Sources/KafkaMessages/Generated.
        .target(name: "KafkaMessageGen", swiftSettings: swiftSettings),
        .executableTarget(
            name: "kafka-message-gen",
            dependencies: ["KafkaMessageGen", argumentParser],
            swiftSettings: swiftSettings
        ),

        // The network edge shared by the broker and the client: bounded framing, request headers.
        .target(
            name: "KafkaNIO",
            dependencies: ["KafkaMessages", "KafkaWire", nioCore, .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),

        // Cluster metadata: a versioned key-value store with compare-and-set, and the controller over it.
        .target(
            name: "MetadataStore",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // The clustered store: etcd v3 through its HTTP/JSON gateway (its own target, so the local store's users do
        // not build the HTTP client).
        .target(
            name: "EtcdMetadataStore",
            dependencies: [
                "MetadataStore", nioCore,
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ClusterControl",
            dependencies: [
                "MetadataStore", "KafkaWire", "KafkaNIO", .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // The delayed-operation queue ("purgatory"): requests parked until a key is notified or a timeout passes.
        .target(name: "DelayedOperations", swiftSettings: swiftSettings),

        // Partitions this broker hosts: leaders, high watermarks, and their parked fetches.
        .target(
            name: "Replication",
            dependencies: [
                "DelayedOperations", "LogStorage", "ClusterControl", "KafkaNIO", "KafkaMessages", "KafkaRecords",
                "KafkaWire", nioCore, .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // The broker: configuration, listeners, the connection loop and one handler per API.
        .target(
            name: "LogBrokerServer",
            dependencies: [
                "KafkaNIO", "KafkaMessages", "KafkaRecords", "KafkaWire", "KafkaProperties", "LogStorage",
                "MetadataStore", "EtcdMetadataStore", "ClusterControl", "DelayedOperations", "Replication",
                "GroupCoordinator", nioCore,
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        // The classic consumer group coordinator: membership, rebalances, committed offsets.
        .target(name: "GroupCoordinator", dependencies: ["DelayedOperations", "KafkaWire"], swiftSettings: swiftSettings),

        // The client library: connections, metadata, producer, consumer and admin client.
        .target(
            name: "LogBrokerClient",
            dependencies: ["KafkaNIO", "KafkaMessages", "KafkaRecords", "KafkaWire", nioCore],
            swiftSettings: swiftSettings
        ),

        // Command-line habits shared by the programs.
        .target(name: "LogBrokerCLI", dependencies: [argumentParser], swiftSettings: swiftSettings),
        // The daemon: command line and configuration, then the broker's services.
        .executableTarget(
            name: "logbroker-server",
            dependencies: [
                "LogBrokerServer", "KafkaProperties", argumentParser,
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
    ] + ["logcat", "logbroker-admin"].map {
        .executableTarget(
            name: $0,
            dependencies: ["LogBrokerClient", "LogBrokerCLI", "KafkaRecords", "KafkaWire", argumentParser],
            swiftSettings: swiftSettings
        )
    } + [
        .executableTarget(
            name: "logbroker-perf",
            dependencies: [
                "LogBrokerClient", "LogBrokerCLI", "KafkaRecords", "KafkaWire", argumentParser,
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(name: "logbroker-mirror", dependencies: ["LogBrokerCLI", argumentParser], swiftSettings: swiftSettings),
    ] + [
        .executableTarget(
            name: "logbroker-microbench",
            dependencies: ["KafkaRecords", nioCore],
            path: "benchmarks/micro",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "logbroker-storagebench",
            dependencies: [
                "LogStorage", "KafkaRecords", "KafkaWire", nioCore, .product(name: "SystemPackage", package: "swift-system"),
            ],
            path: "benchmarks/storage",
            swiftSettings: swiftSettings
        ),
        // libFuzzer target over the request decoder (fuzz/README.md); a normal build replays files instead.
        .executableTarget(
            name: "logbroker-fuzz-requests",
            dependencies: ["KafkaNIO", "KafkaMessages", "KafkaRecords", "KafkaWire", nioCore],
            path: "fuzz/requests",
            swiftSettings: swiftSettings
        ),

        // Starts a real etcd on free loopback ports for the tests of the clustered store and the cluster.
        .target(name: "EtcdTestSupport", path: "Tests/EtcdTestSupport", swiftSettings: swiftSettings),
        .testTarget(
            name: "MetadataStoreTests",
            dependencies: [
                "MetadataStore", "EtcdMetadataStore", "EtcdTestSupport", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ClusterControlTests",
            dependencies: ["ClusterControl", "MetadataStore", "EtcdMetadataStore", "EtcdTestSupport", "KafkaWire"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ReplicationTests",
            dependencies: [
                "DelayedOperations", "Replication", "LogStorage", "ClusterControl", "KafkaMessages", "KafkaRecords",
                "KafkaWire", nioCore,
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "KafkaWireTests", dependencies: ["KafkaWire", nioCore], swiftSettings: swiftSettings),
        .testTarget(
            name: "KafkaMessagesTests",
            dependencies: ["KafkaMessages", "KafkaMessageGen", "KafkaRecords", "KafkaWire", nioCore],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KafkaRecordsTests",
            dependencies: ["KafkaRecords", "KafkaWire", nioCore],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "KafkaPropertiesTests", dependencies: ["KafkaProperties"], swiftSettings: swiftSettings),
        .testTarget(
            name: "LogStorageTests",
            dependencies: [
                "LogStorage", "KafkaRecords", "KafkaWire", "KafkaProperties", "CCRC32C", nioCore,
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KafkaNIOTests",
            dependencies: [
                "KafkaNIO", "KafkaMessages", "KafkaWire", nioCore,
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LogBrokerServerTests",
            dependencies: [
                "LogBrokerServer", "LogBrokerClient", "KafkaNIO", "KafkaMessages", "KafkaRecords", "KafkaWire",
                "KafkaProperties", "DelayedOperations", "LogStorage", "Replication", "ClusterControl", "MetadataStore", "EtcdMetadataStore",
                "EtcdTestSupport", nioCore,
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "KafkaMessageGenTests", dependencies: ["KafkaMessageGen"], swiftSettings: swiftSettings),
        .testTarget(
            name: "GroupCoordinatorTests",
            dependencies: ["GroupCoordinator", "KafkaWire"],
            swiftSettings: swiftSettings
        ),
    ]
)
