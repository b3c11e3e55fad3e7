import Foundation
import HeraldAPI
import HeraldCore
public import HeraldGateway
public import HeraldKafka
public import Logging
import NIOCore
public import NIOPosix
import ServiceLifecycle

/// One Herald node, built in one place for `herald serve` and for the tests alike.
///
/// `prepare` finds the events topic (its epoch, partitions and where the consumer begins each one)
/// before anything runs, so every part is complete when built. `run` starts the parts in one order
/// and stops them in the reverse: the data plane drains first (readiness 503 at once, served by the
/// control plane, which stays up meanwhile; connections closed with 1012 spread over the drain),
/// then the control plane stops, then the consumer, and the producer flushes last; the replay
/// reader, the admin client and the event loops are closed after the group.
public final class HeraldNode: Sendable {
    public let configuration: NodeConfiguration
    public let gateway: Gateway
    public let producer: KafkaProducer
    public let tokens: TokenVerifier
    public let group: MultiThreadedEventLoopGroup
    public let consumer: KafkaLiveConsumer
    /// Follows the cursors topic from its beginning, when the node has one.
    private let cursorsConsumer: KafkaLiveConsumer?
    private let admin: KafkaAdmin
    private let replayReader: KafkaReplayReader
    private let serviceGroup: ServiceGroup
    private let apiPort: AnnouncedPort
    private let logger: Logger

    /// Builds a node; it waits (logging) until the events topic exists. `metrics` is the process's one
    /// Prometheus registry, or nil for no `/metrics`.
    public static func prepare(_ configuration: NodeConfiguration, metrics: NodeMetrics? = nil, logger: Logger) async throws -> HeraldNode {
        let tokens = try await TokenVerifier(configuration: configuration.tokens)
        let admin = try KafkaAdmin(kafka: configuration.consumer.kafka, logger: logger, timeout: configuration.adminTimeout)
        let topology: TopicTopology
        do {
            topology = try await TopicTopology.discover(
                topic: configuration.eventsTopic, admin: admin, start: configuration.consumer.start, logger: logger
            )
        } catch {
            await admin.close()
            throw error
        }
        var consumerConfiguration = configuration.consumer
        consumerConfiguration.start = .offsets(topology.startOffsets)
        let producer = try KafkaProducer(configuration: configuration.producer, logger: logger)
        do {
            try await producer.prepare(topics: [configuration.eventsTopic, configuration.upstreamTopic], timeout: configuration.adminTimeout)
        } catch {
            // Not fatal: the producer learns the topics on its first send instead, which is only slower.
            logger.warning("the producer could not look up its topics before the node became ready", metadata: ["kafka.error": "\(error)"])
        }
        let consumer = try KafkaLiveConsumer(configuration: consumerConfiguration, logger: logger)
        let replayReader = try KafkaReplayReader(configuration: configuration.replayReader, logger: logger)
        var cursorsConsumer: KafkaLiveConsumer? = nil
        if let topic = configuration.cursorsTopic {
            var cursors = KafkaLiveConsumerConfiguration(kafka: configuration.consumer.kafka, topic: topic)
            cursors.start = .beginning
            cursorsConsumer = try KafkaLiveConsumer(configuration: cursors, logger: logger)
        }
        let cluster = await clusterSessionsParts(configuration, admin: admin, producer: producer, logger: logger)
        return try await HeraldNode(
            configuration: configuration, topology: topology, tokens: tokens, admin: admin, producer: producer,
            consumer: consumer, cursorsConsumer: cursorsConsumer, replayReader: replayReader, cluster: cluster, metrics: metrics, logger: logger
        )
    }

    /// The cluster's view of sessions when the sessions topic exists; nil (presence and the per-user
    /// limit of this node alone, said in the log) when it does not or cannot be read.
    private static func clusterSessionsParts(
        _ configuration: NodeConfiguration, admin: KafkaAdmin, producer: KafkaProducer, logger: Logger
    ) async -> ClusterSessions.Parts? {
        let topic = configuration.sessions.topic
        do {
            guard let count = try await admin.partitionCount(topic: topic), count > 0 else {
                logger.warning("no sessions topic: presence and the per-user connection limit cover this node only", metadata: ["kafka.topic": "\(topic)"])
                return nil
            }
            let low = try await admin.startOffsets(topic: topic, partitionCount: count, start: .beginning)
            let high = try await admin.startOffsets(topic: topic, partitionCount: count, start: .end)
            var consumer = KafkaLiveConsumerConfiguration(kafka: configuration.consumer.kafka, topic: topic)
            consumer.start = .beginning
            return ClusterSessions.Parts(
                configuration: configuration.sessions, producer: producer,
                consumer: try KafkaLiveConsumer(configuration: consumer, logger: logger), partitionCount: count,
                endOffsets: high.filter { $0.value > (low[$0.key] ?? 0) }, upstreamTopic: configuration.upstreamTopic
            )
        } catch {
            logger.error("the sessions topic cannot be read: presence and the per-user connection limit cover this node only", metadata: [
                "kafka.topic": "\(topic)", "error": "\(error)",
            ])
            return nil
        }
    }

    private init(
        configuration: NodeConfiguration, topology: TopicTopology, tokens: TokenVerifier, admin: KafkaAdmin,
        producer: KafkaProducer, consumer: KafkaLiveConsumer, cursorsConsumer: KafkaLiveConsumer?, replayReader: KafkaReplayReader,
        cluster: ClusterSessions.Parts?, metrics: NodeMetrics?, logger: Logger
    ) async throws {
        self.cursorsConsumer = cursorsConsumer
        self.configuration = configuration
        self.tokens = tokens
        self.admin = admin
        self.producer = producer
        self.consumer = consumer
        self.replayReader = replayReader
        self.logger = logger
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        self.group = group
        let developmentTools = try await Self.developmentTools(configuration, producer: producer)
        let backlog = DeliveryBacklog(maxAgeMillis: configuration.api.limits.maxDeliveryDelayMillis)
        let cursors = configuration.cursorsTopic.map {
            DeviceCursors(topic: $0, producer: producer, store: StoredCursors(capacity: configuration.storedCursors), logger: logger)
        }
        let gateway = Gateway(
            configuration: configuration.gateway, topology: topology, consumer: consumer, admin: admin, tokens: tokens,
            group: group, logger: logger, replayReader: replayReader,
            upstream: UpstreamPublisher(
                producer: producer, upstreamTopic: configuration.upstreamTopic, eventsTopic: configuration.eventsTopic,
                nodeID: configuration.nodeID
            ),
            developmentTools: developmentTools, backlog: backlog, clock: configuration.clock, cursors: cursors, cluster: cluster
        )
        self.gateway = gateway
        let apiPort = AnnouncedPort()
        self.apiPort = apiPort
        let revocations = tokens.revocations
        var scrape: (@Sendable () -> [UInt8])? = nil
        if let metrics {
            scrape = { metrics.scrape(gateway: gateway, producer: producer) }
        }
        let hooks = NodeHooks(
            nodeID: configuration.nodeID,
            sessions: { user in gateway.registry.sessions(of: user).map { ($0.session, $0.device, $0.openedAt) } },
            notReadyReason: { await gateway.notReadyReason() },
            status: { gateway.status() },
            metrics: scrape,
            localNotReadyReason: { gateway.admission.isDraining ? "the node is draining" : nil },
            revoke: { user, before in revocations.revoke(user: user, before: before, now: RevocationList.nowMillis()) },
            history: gateway.history.map(Self.historyHook),
            cluster: gateway.clusterSessions.map { cluster in
                NodeHooks.Cluster(
                    connections: { user in
                        cluster.connections(of: user).map { ($0.node, $0.session, $0.device, $0.openedAt) }
                    },
                    isOnline: { user in cluster.isOnline(user) }
                )
            }
        )
        let configuredAPIPort = configuration.api.port
        let controlPlane = try ControlPlane.application(
            configuration: configuration.api, push: PushService(
                producer: producer, topic: configuration.eventsTopic, backlog: backlog, logger: logger,
                seenCopies: { stream, id in
                    gateway.repeatedMessages.firstOffset(of: id, in: stream).map {
                        KafkaDelivery(partition: stream.partition(partitionCount: gateway.topology.partitionCount), offset: $0)
                    }
                },
                apiKeys: configuration.api.apiKeys
            ),
            node: hooks,
            logger: logger, onServerRunning: { channel in apiPort.announce(channel.localAddress?.port ?? configuredAPIPort) }
        )
        var cursorServices: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let cursors, let cursorsConsumer {
            // Stopped before the producer (connections closed in the drain commit their cursors
            // through it) and after the data plane.
            cursorServices = [
                .init(service: CursorFeed(cursors: cursors, consumer: cursorsConsumer), serviceName: "cursor-feed"),
                .init(service: cursorsConsumer, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "kafka-cursors-consumer"),
            ]
        }
        // The shutdown order is the reverse of this list.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: producer, serviceName: "kafka-producer")]
        services += cursorServices
        // The consumer stops reading when the data plane stops taking batches at the end of its drain,
        // and ends in its own turn (a service that ended out of order would fail the group).
        services.append(.init(service: consumer, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "kafka-live-consumer"))
        services.append(.init(service: controlPlane, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "control-plane"))
        if let clusterSessions = gateway.clusterSessions {
            // Stops after the gateway, so the view stays current while the node drains (the gateway
            // says the node is gone as its drain begins).
            services.append(.init(service: clusterSessions, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "cluster-sessions"))
        }
        services.append(.init(service: gateway, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "gateway"))
        serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services,
                gracefulShutdownSignals: configuration.gracefulShutdownSignals,
                logger: logger
            )
        )
    }

    /// `GET /v1/streams/{stream}/history` reads through the gateway's history, its refusals as the API's.
    private static func historyHook(_ history: StreamHistory) -> @Sendable (HeraldStream, String, HistoryQuery) async throws -> HistoryPage {
        { stream, name, query in
            switch await history.page(of: stream, named: name, query: query) {
            case .success(let page): return page
            case .failure(.busy(let reads)):
                throw APIError(.busy, "this node is answering \(reads) history requests already", retryAfter: 1)
            case .failure(.unavailable(let message)):
                throw APIError(.kafkaUnavailable, "the history could not be read: \(message)", retryAfter: 1)
            }
        }
    }

    /// Runs the node until its graceful shutdown (a signal, or `shutDown()`) has finished, or a part
    /// fails; then closes what the service group does not own.
    public func run() async throws {
        logger.info("herald node starting", metadata: [
            "kafka.bootstrap": "\(configuration.consumer.kafka.bootstrapServers)", "kafka.events": "\(configuration.eventsTopic)",
            "epoch": "\(gateway.topology.epoch)",
        ])
        let outcome: Result<Void, any Error>
        do {
            try await serviceGroup.run()
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        await replayReader.close()
        await admin.close()
        try? await group.shutdownGracefully()
        logger.info("herald node stopped")
        try outcome.get()
    }

    /// Starts the graceful shutdown, as SIGTERM does.
    public func shutDown() async {
        await serviceGroup.triggerGracefulShutdown()
    }

    /// The bound public (WebSocket) and internal (API) ports, once both listen (useful with port 0).
    public func waitUntilListening() async -> (public: Int, api: Int) {
        let publicPort = await gateway.waitUntilListening()
        return (publicPort, await apiPort.value())
    }

    private static func developmentTools(_ configuration: NodeConfiguration, producer: KafkaProducer) async throws -> DevelopmentTools? {
        guard configuration.developmentTools, let secret = configuration.tokens.hmacSecret else { return nil }
        let issuer = try await TokenIssuer(hmacSecret: secret)
        let events = configuration.eventsTopic
        return DevelopmentTools(
            issueToken: { user, device in
                try await issuer.token(user: user, device: device, channels: ["news"], expiresAt: Date().addingTimeInterval(3_600))
            },
            push: { user, text in
                let envelope = HeraldRecord(stream: .user(user), id: UUID().uuidString.lowercased(), contentType: .text)
                return try await producer.send(KafkaOutgoingRecord(
                    topic: events, key: Array(user.utf8), value: ByteBuffer(string: text),
                    headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
                )).offset
            }
        )
    }
}
