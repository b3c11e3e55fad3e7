// swift-tools-version:6.2
import PackageDescription

// Every target of this package, tests included. A warning fails the build: SwiftPM applies
// `treatAllWarnings` to this package's own targets only, never to a remote dependency's.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .treatAllWarnings(as: .error),
]

// What both tiers of the gateway tests build on.
let nodeTestDependencies: [Target.Dependency] = [
    "HeraldNodeTestSupport",
    "HeraldGateway",
    "HeraldAPI",
    "HeraldNode",
    .product(name: "Hummingbird", package: "hummingbird"),
    "HeraldClient",
    "HeraldKafka",
    "HeraldCore",
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOEmbedded", package: "swift-nio"),
    .product(name: "NIOWebSocket", package: "swift-nio"),
    .product(name: "NIOHTTP1", package: "swift-nio"),
    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
    .product(name: "JWTKit", package: "jwt-kit"),
    .product(name: "NIOSSL", package: "swift-nio-ssl"),
]

let package = Package(
    name: "herald",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "herald", targets: ["herald"]),
        .executable(name: "herald-bench", targets: ["herald-bench"]),
        .library(name: "HeraldCore", targets: ["HeraldCore"]),
        .library(name: "HeraldKafka", targets: ["HeraldKafka"]),
        .library(name: "HeraldGateway", targets: ["HeraldGateway"]),
        .library(name: "HeraldClient", targets: ["HeraldClient"]),
        .library(name: "HeraldNode", targets: ["HeraldNode"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // The C boundary: only HeraldKafka imports this.
        .systemLibrary(
            name: "CKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        // Pure protocol logic: record format, streams, partitioner. No sockets, no C.
        .target(
            name: "HeraldCore",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        // The only Swift code that calls rd_kafka_*.
        .target(
            name: "HeraldKafka",
            dependencies: [
                "CKafka",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The NIO data plane: WebSocket listener, auth, shards, dispatcher. The only code that touches
        // channel pipelines.
        .target(
            name: "HeraldGateway",
            dependencies: [
                "HeraldCore",
                "HeraldKafka",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The control plane on Hummingbird: push API, presence and kick, metrics, health.
        .target(
            name: "HeraldAPI",
            dependencies: [
                "HeraldCore",
                "HeraldKafka",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        // The composition root: one node (Kafka clients, data plane, control plane, metrics, service
        // group) built from one configuration, for `herald serve` and the tests alike.
        .target(
            name: "HeraldNode",
            dependencies: [
                "HeraldCore",
                "HeraldKafka",
                "HeraldGateway",
                "HeraldAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        // A Swift WebSocket client that speaks Herald's protocol: tests, the load tool, Swift apps.
        .target(
            name: "HeraldClient",
            dependencies: [
                "HeraldCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        // The server: `serve` and the operator's commands. No client code and no load generator.
        .executableTarget(
            name: "herald",
            dependencies: [
                "HeraldCore",
                "HeraldKafka",
                "HeraldGateway",
                "HeraldAPI",
                "HeraldNode",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The load generator (connections, broadcast, push, resume, kafka), apart from the server: it
        // drives nodes from outside through HeraldClient and re-executes itself for its worker processes.
        .executableTarget(
            name: "herald-bench",
            dependencies: [
                "HeraldCore",
                "HeraldKafka",
                "HeraldGateway",
                "HeraldClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Helpers shared by the test targets: kcat, the outside tools a test drives (named when missing), failures.
        .target(
            name: "HeraldTestSupport",
            dependencies: ["HeraldKafka", .product(name: "NIOCore", package: "swift-nio")],
            path: "Tests/Support",
            swiftSettings: strict
        ),
        .testTarget(
            name: "HeraldCoreTests",
            dependencies: ["HeraldCore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HeraldKafkaTests",
            dependencies: [
                "HeraldTestSupport",
                "HeraldKafka",
                "HeraldCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // A whole node on loopback (the same HeraldNode as `herald serve`), node processes, an HTTP client.
        .target(
            name: "HeraldNodeTestSupport",
            dependencies: [
                "HeraldTestSupport",
                "HeraldNode",
                "HeraldGateway",
                "HeraldAPI",
                "HeraldClient",
                "HeraldKafka",
                "HeraldCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/NodeSupport",
            swiftSettings: strict
        ),
        // The fast tier of the data plane: the state machine, handlers on EmbeddedChannel, whole nodes in
        // this process on the mock cluster, the API over loopback.
        .testTarget(
            name: "HeraldGatewayTests",
            dependencies: nodeTestDependencies,
            swiftSettings: strict
        ),
        // The integration tier: tests that drive outside tools (Chromium, promtool, Prometheus,
        // Alertmanager, kubectl, schemathesis, the Autobahn suite, node, kcat, Python) or several node
        // processes. A missing tool is named by the test that needs it.
        .testTarget(
            name: "HeraldIntegrationTests",
            dependencies: nodeTestDependencies,
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
