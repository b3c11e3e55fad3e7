package import Foundation
@_exported import HeraldTestSupport
package import HeraldAPI
package import HeraldClient
package import HeraldCore
package import HeraldGateway
package import HeraldKafka
package import HeraldNode
package import Logging
import NIOCore
package import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing

package let testLogger: Logger = {
    var logger = Logger(label: "herald.gateway.test")
    logger.logLevel = ProcessInfo.processInfo.environment["HERALD_TEST_LOG"] != nil ? .debug : .critical
    return logger
}()

package let testSecret = "test-secret-that-is-at-least-32-bytes-long"
package let testAPIKey = "test-api-key"
package let upstreamTopic = "herald.upstream"

/// The control plane's bound port, set once the server runs.
package final class PortBox: Sendable {
    package init() {}
    private let value = Mutex<Int?>(nil)
    package func set(_ port: Int) { value.withLock { $0 = port } }
    package func wait() async -> Int {
        while true {
            if let port = value.withLock({ $0 }) { return port }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// A count shared between tasks.
package final class CallCounter: Sendable {
    package init() {}
    private let value = Atomic<Int>(0)
    package func add(_ amount: Int) { value.add(amount, ordering: .relaxed) }
    package var count: Int { value.load(ordering: .relaxed) }
}

/// A whole node on loopback, built by `HeraldNode` as `herald serve` builds it: the embedded Kafka,
/// the gateway on a free port, the control plane on another, an HS256 token key. Torn down (with the
/// node's own graceful shutdown) when `body` returns.
package struct GatewayHarness {
    package let cluster: EmbeddedKafkaCluster
    package let node: HeraldNode
    package let port: Int
    package let topic: String
    package let issuer: TokenIssuer
    /// The control plane's port (API key `testAPIKey`).
    package let apiPort: Int

    package var producer: KafkaProducer { node.producer }
    package var gateway: Gateway { node.gateway }
    package var group: MultiThreadedEventLoopGroup { node.group }
    /// How many times readiness asked Kafka.
    package var readinessChecks: Int { node.gateway.readinessQueryCount }

    package static func run<T>(
        configure: (inout GatewayConfiguration) -> Void = { _ in },
        configureAPI: (inout ControlPlaneConfiguration) -> Void = { _ in },
        configureTokens: (inout TokenConfiguration) -> Void = { _ in },
        producerTimeoutMilliseconds: Int = 30_000,
        developmentTools: Bool = false,
        consumer configureConsumer: (inout KafkaLiveConsumerConfiguration) -> Void = { _ in },
        replay configureReplay: (inout KafkaReplayReaderConfiguration) -> Void = { _ in },
        cursorsTopic: String? = nil,
        _ body: (GatewayHarness) async throws -> T
    ) async throws -> T {
        let topic = "herald.events"
        let cluster = try EmbeddedKafkaCluster(
            topics: [KafkaTopicSpec(name: topic, partitions: 4), KafkaTopicSpec(name: upstreamTopic, partitions: 2)]
                + (cursorsTopic.map { [KafkaTopicSpec(name: $0, partitions: 2)] } ?? []),
            logger: testLogger
        )
        defer { cluster.shutdown() }
        var tokens = TokenConfiguration(hmacSecret: testSecret)
        configureTokens(&tokens)
        var configuration = NodeConfiguration(
            nodeID: "test-node", kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), tokens: tokens, apiKeys: [testAPIKey]
        )
        configuration.useEventsTopic(topic)
        configuration.upstreamTopic = upstreamTopic
        configuration.cursorsTopic = cursorsTopic
        configuration.producer.deliveryTimeoutMilliseconds = producerTimeoutMilliseconds
        configuration.producer.flushTimeoutMilliseconds = 2_000
        configureConsumer(&configuration.consumer)
        configureReplay(&configuration.replayReader)
        configuration.adminTimeout = .seconds(2)
        configuration.eventLoopThreads = 2
        configuration.developmentTools = developmentTools
        configuration.gateway.host = "127.0.0.1"
        configuration.gateway.port = 0
        configuration.gateway.maxConnections = 5_000
        configuration.gateway.acceptsPerSecond = 5_000
        configuration.gateway.drainDuration = .milliseconds(500)
        configuration.gateway.drainDelay = .zero
        configure(&configuration.gateway)
        configuration.api.host = "127.0.0.1"
        configuration.api.port = 0
        configureAPI(&configuration.api)
        let node = try await HeraldNode.prepare(configuration, logger: testLogger)
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        let result: Result<T, any Error> = try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await node.run() }
            let ports = await node.waitUntilListening()
            let harness = GatewayHarness(cluster: cluster, node: node, port: ports.public, topic: topic, issuer: issuer, apiPort: ports.api)
            let result: Result<T, any Error>
            do {
                result = .success(try await body(harness))
            } catch {
                result = .failure(error)
            }
            await node.shutDown()
            // The node's own failure (a shutdown that did not finish cleanly) fails the test too.
            try await tasks.waitForAll()
            return result
        }
        return try result.get()
    }

    package var client: HeraldClient { HeraldClient(host: "127.0.0.1", port: port, group: group) }

    package func token(_ user: String, device: String? = nil, channels: [String] = [], ttl: TimeInterval = 3_600) async throws -> String {
        try await issuer.token(user: user, device: device, channels: channels, expiresAt: Date().addingTimeInterval(ttl))
    }

    /// Connects and returns the connection, its welcome frame already read.
    package func connect(
        _ user: String, device: String? = nil, channels: [String] = [], subscribe: [String] = [], cursor: String? = nil, epoch: String? = nil
    ) async throws -> TestConnection {
        let session = try await client.connect(
            token: try await token(user, device: device, channels: channels), channels: subscribe, cursor: cursor, epoch: epoch
        )
        return try await TestConnection.open(session)
    }

    /// Produces a Herald record and waits for Kafka's acknowledgement.
    @discardableResult
    package func produce(_ record: HeraldRecord, _ payload: String) async throws -> KafkaDelivery {
        try await producer.send(KafkaOutgoingRecord(
            topic: topic, key: Array(record.key.utf8), value: ByteBuffer(string: payload),
            headers: record.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
        ))
    }
}

/// A connection whose events are collected in the background, read with a liveness bound.
package final class TestConnection: Sendable {
    package let session: HeraldSession
    package let welcome: ServerEvent.Welcome
    private let inbox: Inbox<ServerEvent>
    private let reader: Task<Void, Never>

    private init(session: HeraldSession, welcome: ServerEvent.Welcome, inbox: Inbox<ServerEvent>, reader: Task<Void, Never>) {
        self.session = session
        self.welcome = welcome
        self.inbox = inbox
        self.reader = reader
    }

    package static func open(_ session: HeraldSession) async throws -> TestConnection {
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

    package func next(within limit: Duration = .seconds(10)) async throws -> ServerEvent {
        try await inbox.next(within: limit)
    }

    package func nextMessage(within limit: Duration = .seconds(10)) async throws -> ServerEvent.Message {
        let event = try await next(within: limit)
        guard case .message(let message) = event else { throw TestFailure("expected a message, got \(event)") }
        return message
    }

    /// Waits for the connection to close and returns the server's close code.
    package func closeCode(within limit: Duration = .seconds(15)) async throws -> UInt16? {
        while true {
            let event = try await next(within: limit)
            if case .closed(let code, _) = event { return code }
        }
    }

    /// Events received so far and not yet read.
    package func pending() async -> [ServerEvent] { await inbox.drain() }
}

package actor Inbox<Event: Sendable> {
    package init() {}
    private var events: [Event] = []

    package func append(_ event: Event) { events.append(event) }

    package func drain() -> [Event] {
        defer { events = [] }
        return events
    }

    package func next(within limit: Duration) async throws -> Event {
        let deadline = ContinuousClock.now + limit
        while events.isEmpty {
            guard ContinuousClock.now < deadline else { throw TestFailure("no event within \(limit)") }
            try await Task.sleep(for: .milliseconds(5))
        }
        return events.removeFirst()
    }
}

