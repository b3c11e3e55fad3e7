import Foundation
@_exported import HeraldTestSupport
import HeraldAPI
import HeraldClient
import HeraldCore
import HeraldGateway
import HeraldKafka
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing

let testLogger: Logger = {
    var logger = Logger(label: "herald.gateway.test")
    logger.logLevel = ProcessInfo.processInfo.environment["HERALD_TEST_LOG"] != nil ? .debug : .critical
    return logger
}()

let testSecret = "test-secret-that-is-at-least-32-bytes-long"
let testAPIKey = "test-api-key"
let upstreamTopic = "herald.upstream"

/// The control plane's bound port, set once the server runs.
final class PortBox: Sendable {
    private let value = Mutex<Int?>(nil)
    func set(_ port: Int) { value.withLock { $0 = port } }
    func wait() async -> Int {
        while true {
            if let port = value.withLock({ $0 }) { return port }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// A count shared between tasks.
final class CallCounter: Sendable {
    private let value = Atomic<Int>(0)
    func add(_ amount: Int) { value.add(amount, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

/// A whole node on loopback: the embedded Kafka, a producer, the live consumer and the gateway on a
/// free port, with an HS256 token key. Torn down when `body` returns.
struct GatewayHarness {
    let cluster: EmbeddedKafkaCluster
    let producer: KafkaProducer
    let gateway: Gateway
    let port: Int
    let topic: String
    let group: MultiThreadedEventLoopGroup
    let issuer: TokenIssuer
    let serviceGroup: ServiceGroup
    /// The control plane's port (API key `testAPIKey`).
    let apiPort: Int
    /// How many times the control plane asked the gateway whether it is ready (a Kafka query each).
    let readinessChecks: CallCounter

    static func run<T>(
        configure: (inout GatewayConfiguration) -> Void = { _ in },
        configureAPI: (inout ControlPlaneConfiguration) -> Void = { _ in },
        configureTokens: (inout TokenConfiguration) -> Void = { _ in },
        producerTimeoutMilliseconds: Int = 30_000,
        developmentTools: Bool = false,
        consumer configureConsumer: (inout KafkaLiveConsumerConfiguration) -> Void = { _ in },
        _ body: (GatewayHarness) async throws -> T
    ) async throws -> T {
        let topic = "herald.events"
        let cluster = try EmbeddedKafkaCluster(
            topics: [KafkaTopicSpec(name: topic, partitions: 4), KafkaTopicSpec(name: upstreamTopic, partitions: 2)], logger: testLogger
        )
        defer { cluster.shutdown() }
        let kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)
        var producerConfiguration = KafkaProducerConfiguration(kafka: kafka)
        producerConfiguration.deliveryTimeoutMilliseconds = producerTimeoutMilliseconds
        producerConfiguration.flushTimeoutMilliseconds = 2_000
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: testLogger)
        var consumerConfiguration = KafkaLiveConsumerConfiguration(kafka: kafka, topic: topic)
        configureConsumer(&consumerConfiguration)
        let consumer = try KafkaLiveConsumer(configuration: consumerConfiguration, logger: testLogger)
        let admin = try KafkaAdmin(kafka: kafka, logger: testLogger, timeout: .seconds(2))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var configuration = GatewayConfiguration(nodeID: "test-node")
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.maxConnections = 5_000
        configuration.acceptsPerSecond = 5_000
        configuration.drainDuration = .milliseconds(500)
        configuration.drainDelay = .zero
        configure(&configuration)
        var tokenConfiguration = TokenConfiguration(hmacSecret: testSecret)
        configureTokens(&tokenConfiguration)
        let tokens = try await TokenVerifier(configuration: tokenConfiguration)
        let replayReader = try KafkaReplayReader(configuration: KafkaReplayReaderConfiguration(kafka: kafka, topic: topic), logger: testLogger)
        let devIssuer = try await TokenIssuer(hmacSecret: testSecret)
        let tools = DevelopmentTools(
            issueToken: { user, device in
                try await devIssuer.token(user: user, device: device, channels: ["news"], expiresAt: Date().addingTimeInterval(600))
            },
            push: { user, text in
                try await producer.send(KafkaOutgoingRecord(
                    topic: topic, key: Array(user.utf8), value: ByteBuffer(string: text),
                    headers: [KafkaHeader(name: HeraldHeader.contentType, value: Array(HeraldContentType.text.rawValue.utf8))]
                )).offset
            }
        )
        let gateway = Gateway(
            configuration: configuration, consumer: consumer, admin: admin, topic: topic, tokens: tokens, group: group,
            logger: testLogger, replayReader: replayReader,
            upstream: UpstreamPublisher(producer: producer, upstreamTopic: upstreamTopic, eventsTopic: topic, nodeID: configuration.nodeID),
            developmentTools: developmentTools ? tools : nil
        )
        var apiConfiguration = ControlPlaneConfiguration(apiKeys: [testAPIKey])
        apiConfiguration.host = "127.0.0.1"
        apiConfiguration.port = 0
        configureAPI(&apiConfiguration)
        let apiPort = PortBox()
        let readinessChecks = CallCounter()
        let controlPlane = ControlPlane.application(
            configuration: apiConfiguration,
            push: PushService(producer: producer, topic: topic),
            node: NodeHooks(
                nodeID: configuration.nodeID,
                sessions: { user in gateway.registry.sessions(of: user).map { ($0.session, $0.device, $0.openedAt) } },
                notReadyReason: {
                    readinessChecks.add(1)
                    return await gateway.notReadyReason()
                },
                status: { gateway.statusJSON() },
                localNotReadyReason: { gateway.admission.isDraining ? "the node is draining" : nil },
                revoke: { user, before in tokens.revocations.revoke(user: user, before: before, now: RevocationList.nowMillis()) }
            ),
            logger: testLogger,
            onServerRunning: { channel in apiPort.set(channel.localAddress?.port ?? 0) }
        )
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: producer), .init(service: consumer), .init(service: gateway), .init(service: controlPlane)],
                logger: testLogger
            )
        )
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        let result: Result<T, any Error> = await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try? await serviceGroup.run() }
            let port = await gateway.waitUntilListening()
            let api = await apiPort.wait()
            let harness = GatewayHarness(
                cluster: cluster, producer: producer, gateway: gateway, port: port, topic: topic, group: group, issuer: issuer,
                serviceGroup: serviceGroup, apiPort: api, readinessChecks: readinessChecks
            )
            let result: Result<T, any Error>
            do {
                result = .success(try await body(harness))
            } catch {
                result = .failure(error)
            }
            await serviceGroup.triggerGracefulShutdown()
            await tasks.waitForAll()
            return result
        }
        await replayReader.close()
        await admin.close()
        try await group.shutdownGracefully()
        return try result.get()
    }

    var client: HeraldClient { HeraldClient(host: "127.0.0.1", port: port, group: group) }

    func token(_ user: String, device: String? = nil, channels: [String] = [], ttl: TimeInterval = 3_600) async throws -> String {
        try await issuer.token(user: user, device: device, channels: channels, expiresAt: Date().addingTimeInterval(ttl))
    }

    /// Connects and returns the connection, its welcome frame already read.
    func connect(
        _ user: String, device: String? = nil, channels: [String] = [], subscribe: [String] = [], cursor: String? = nil, epoch: String? = nil
    ) async throws -> TestConnection {
        let session = try await client.connect(
            token: try await token(user, device: device, channels: channels), channels: subscribe, cursor: cursor, epoch: epoch
        )
        return try await TestConnection.open(session)
    }

    /// Produces a Herald record and waits for Kafka's acknowledgement.
    @discardableResult
    func produce(_ record: HeraldRecord, _ payload: String) async throws -> KafkaDelivery {
        try await producer.send(KafkaOutgoingRecord(
            topic: topic, key: Array(record.key.utf8), value: ByteBuffer(string: payload),
            headers: record.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
        ))
    }
}

/// A connection whose events are collected in the background, read with a liveness bound.
final class TestConnection: Sendable {
    let session: HeraldSession
    let welcome: ServerEvent.Welcome
    private let inbox: Inbox<ServerEvent>
    private let reader: Task<Void, Never>

    private init(session: HeraldSession, welcome: ServerEvent.Welcome, inbox: Inbox<ServerEvent>, reader: Task<Void, Never>) {
        self.session = session
        self.welcome = welcome
        self.inbox = inbox
        self.reader = reader
    }

    static func open(_ session: HeraldSession) async throws -> TestConnection {
        let inbox = Inbox<ServerEvent>()
        let reader = Task {
            for await event in session.events { await inbox.append(event) }
        }
        let first = try await inbox.next(within: .seconds(10))
        guard case .welcome(let welcome) = first else {
            throw TestFailure("the first frame was not a welcome but \(first)")
        }
        return TestConnection(session: session, welcome: welcome, inbox: inbox, reader: reader)
    }

    deinit { reader.cancel() }

    func next(within limit: Duration = .seconds(10)) async throws -> ServerEvent {
        try await inbox.next(within: limit)
    }

    func nextMessage(within limit: Duration = .seconds(10)) async throws -> ServerEvent.Message {
        let event = try await next(within: limit)
        guard case .message(let message) = event else { throw TestFailure("expected a message, got \(event)") }
        return message
    }

    /// Waits for the connection to close and returns the server's close code.
    func closeCode(within limit: Duration = .seconds(15)) async throws -> UInt16? {
        while true {
            let event = try await next(within: limit)
            if case .closed(let code, _) = event { return code }
        }
    }

    /// Events received so far and not yet read.
    func pending() async -> [ServerEvent] { await inbox.drain() }
}

actor Inbox<Event: Sendable> {
    private var events: [Event] = []

    func append(_ event: Event) { events.append(event) }

    func drain() -> [Event] {
        defer { events = [] }
        return events
    }

    func next(within limit: Duration) async throws -> Event {
        let deadline = ContinuousClock.now + limit
        while events.isEmpty {
            guard ContinuousClock.now < deadline else { throw TestFailure("no event within \(limit)") }
            try await Task.sleep(for: .milliseconds(5))
        }
        return events.removeFirst()
    }
}

