public import HeraldKafka
public import HeraldCore
public import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization

/// The data plane as one service, built complete from the topic's topology: one shard per event
/// loop, the hot window and the replay service exist before it runs. Running, it opens the public port
/// and dispatches every batch the consumer reads. On graceful shutdown it stops accepting, closes
/// every connection with 1012 (reconnect elsewhere and resume) and stops dispatching.
public final class Gateway: Service, Sendable {
    public let configuration: GatewayConfiguration
    public let topology: TopicTopology
    public let registry: SessionRegistry
    /// The cluster's view of sessions (presence, the per-user limit across nodes); nil when the node
    /// has no sessions topic. A service of its own, run by the node.
    public let clusterSessions: ClusterSessions?
    public let admission: Admission
    /// Connections without a token: their own cap and accept rate (`anonymousMaxConnections`).
    public let anonymousAdmission: Admission
    public let counters = DispatchCounters()
    public let replayStats = ReplayStats()
    /// History reads from Kafka; nil without a replay reader (then there is no history to read).
    public let history: StreamHistory?
    public let outbound = OutboundStats()
    let metrics = GatewayMetrics()

    private let consumer: KafkaLiveConsumer
    /// The node's pushes acknowledged but not yet delivered (the push API's back-pressure).
    private let backlog: DeliveryBacklog?
    private let admin: KafkaAdmin
    private let tokens: TokenVerifier
    private let group: any EventLoopGroup
    private let logger: Logger
    private let shards: [Shard]
    private let window: HotWindow
    private let sessions: SessionServices
    private let site: PublicSite
    private let clock: WallClock
    private let listening = AnnouncedPort()
    private let readinessQueries = Atomic<Int>(0)

    public init(
        configuration: GatewayConfiguration, topology: TopicTopology, consumer: KafkaLiveConsumer, admin: KafkaAdmin,
        tokens: TokenVerifier, group: any EventLoopGroup, logger: Logger,
        replayReader: KafkaReplayReader? = nil, upstream: UpstreamPublisher? = nil, developmentTools: DevelopmentTools? = nil,
        backlog: DeliveryBacklog? = nil, clock: WallClock = .system, cursors: DeviceCursors? = nil, cluster: ClusterSessions.Parts? = nil
    ) {
        self.backlog = backlog
        self.configuration = configuration
        self.clock = clock
        self.topology = topology
        self.consumer = consumer
        self.admin = admin
        self.tokens = tokens
        self.group = group
        self.logger = logger
        // With the cluster's view, the limit is the cluster's, applied to the oldest anywhere; the node
        // keeps a bound of its own at twice it, for when the sessions topic cannot be read.
        let registry = SessionRegistry(perUserLimit: configuration.perUserConnectionLimit * (cluster == nil ? 1 : 2))
        self.registry = registry
        self.clusterSessions = cluster.map {
            ClusterSessions(
                parts: $0, nodeID: configuration.nodeID, registry: registry, perUserLimit: configuration.perUserConnectionLimit,
                clock: clock, logger: logger
            )
        }
        self.admission = Admission(maxConnections: configuration.maxConnections, acceptsPerSecond: configuration.acceptsPerSecond)
        self.anonymousAdmission = Admission(
            maxConnections: configuration.anonymousMaxConnections, acceptsPerSecond: configuration.anonymousAcceptsPerSecond
        )
        let metrics = self.metrics
        let shards = group.makeIterator().map { loop in
            Shard(eventLoop: loop, startOffsets: topology.startOffsets, partitionCount: topology.partitionCount, metrics: metrics, clock: clock)
        }
        self.shards = shards
        window = HotWindow(
            startOffsets: topology.startOffsets, maxAgeMillis: Int64(configuration.hotWindowAge.components.seconds * 1000),
            maxBytes: configuration.hotWindowBytes
        )
        let replay = ReplayService(
            window: window, reader: replayReader, limit: configuration.replayLimit, maxBytes: configuration.replayMaxBytes,
            stats: replayStats, clock: clock, repeats: RepeatedMessages(capacity: configuration.messageIDMemory)
        )
        let history = replayReader.map {
            StreamHistory(reader: $0, partitionCount: topology.partitionCount, bounds: configuration.history, clock: clock)
        }
        self.history = history
        sessions = SessionServices(
            nodeID: configuration.nodeID, epoch: topology.epoch,
            settings: .init(
                maxMessageBytes: configuration.maxMessageBytes, replayDeadline: configuration.replayDeadline,
                clientMessagesPerSecond: configuration.clientMessagesPerSecond, maxQueuedPublishes: configuration.maxQueuedPublishes
            ),
            registry: registry, replay: replay, history: history,
            publishing: upstream.map { publisher in
                SessionServices.Publishing(publisher: publisher, limits: PublishLimiter(.init(
                    messagesPerSecond: configuration.publishesPerSecondPerUser, bytesPerSecond: configuration.publishBytesPerSecondPerUser,
                    maxMessageBytes: configuration.maxMessageBytes
                )))
            },
            metrics: metrics, clock: clock, shards: shards, namespaces: configuration.namespaces, tokens: tokens, cursors: cursors, cluster: clusterSessions
        )
        site = PublicSite(
            allowedOrigins: configuration.allowedOrigins, developmentTools: developmentTools,
            closeConnections: { user, disconnect in registry.closeConnections(of: user, disconnect) }
        )
    }

    /// How many times readiness asked Kafka (`/readyz` answers from a cache refreshed in the background).
    public var readinessQueryCount: Int { readinessQueries.load(ordering: .relaxed) }

    /// Why this node should not get traffic now, or nil when it should: it has joined its partitions
    /// and opened its port, is not draining, and Kafka answers a metadata request.
    public func notReadyReason() async -> String? {
        guard listening.known != nil else { return "the node has not joined its partitions and opened its port yet" }
        if admission.isDraining { return "the node is draining" }
        readinessQueries.add(1, ordering: .relaxed)
        let topic = topology.topic
        do {
            guard try await admin.partitionCount(topic: topic) != nil else {
                logger.warning("not ready: the events topic does not exist", metadata: ["kafka.topic": "\(topic)"])
                return "the events topic does not exist"
            }
        } catch {
            // The probe's body is for anyone who reaches the port: librdkafka's reasons go to the log.
            logger.warning("not ready: Kafka does not answer", metadata: ["kafka.error": "\(error)"])
            return "Kafka does not answer"
        }
        return nil
    }

    /// Message ids remembered per stream, to drop retried copies (`RepeatedMessages`).
    public var repeatedMessages: RepeatedMessages { sessions.replay.repeats }
    /// The node's stored device cursors, when it has a cursors topic.
    public var deviceCursors: DeviceCursors? { sessions.cursors }

    /// The hot window's size now: records and bytes (0 before the gateway runs).
    public var hotWindowSize: (records: Int, bytes: Int) { (window.entryCount, window.byteCount) }

    /// Sets the gauges that are read rather than counted (connections, users, hot window, Kafka lag);
    /// called before each scrape.
    public func updateMetrics() {
        metrics.connections.record(admission.openConnections + anonymousAdmission.openConnections)
        metrics.users.record(registry.userCount)
        let window = hotWindowSize
        metrics.hotWindowBytes.record(window.bytes)
        metrics.hotWindowRecords.record(window.records)
        metrics.resumesInFlight.record(replayStats.resumesInFlight)
        metrics.recordLag(consumer.lag())
        if let clusterSessions {
            let size = clusterSessions.viewSize
            metrics.sessionViewConnections.record(size.connections)
            metrics.sessionViewUsers.record(size.users)
            metrics.sessionViewNodes.record(size.nodes)
        }
    }

    /// This node's state for `GET /v1/node`, read from the same counters `/metrics` exports.
    public func status() -> NodeStatus {
        let stats = replayStats
        let window = hotWindowSize
        return NodeStatus(
            node: configuration.nodeID, connections: admission.openConnections + anonymousAdmission.openConnections, draining: admission.isDraining,
            resumes: .init(
                recovered: stats.recoveredCount, fromWindow: stats.servedFromWindow, fromKafka: stats.servedFromKafka,
                inFlight: stats.resumesInFlight, kafkaReads: stats.kafkaReadCount,
                recordsScanned: stats.recordsScanned, readsCancelled: stats.readsCancelled, unavailable: stats.unavailable,
                notRecovered: Dictionary(uniqueKeysWithValues: stats.failuresByReason.map { ($0.key.rawValue, $0.value) })
            ),
            hotWindow: .init(records: window.records, bytes: window.bytes), acks: sessions.acksReceived,
            outbound: .init(
                budgetBytes: configuration.outboundCapBytes, peakQueuedBytes: outbound.peakQueuedBytes,
                slowConsumerCloses: outbound.slowConsumerCloses
            )
        )
    }

    /// The bound public port, once listening (useful with port 0).
    public func waitUntilListening() async -> Int { await listening.value() }

    public func run() async throws {
        let window = self.window
        let epoch = topology.epoch
        let clock = self.clock
        var timers = shards.map { startSweeping($0) }
        timers.append(group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            window.evict(now: clock.nowMillis())
        })
        defer { timers.forEach { $0.cancel() } }

        let server = try await WebSocketListener(
            configuration: configuration, admission: admission, anonymousAdmission: anonymousAdmission, tokens: tokens, outbound: outbound, metrics: metrics,
            sessions: sessions, site: site, group: group
        ).bind(host: configuration.host, port: configuration.port)
        let port = server.localAddress?.port ?? configuration.port
        logger.notice("WebSocket listener open", metadata: ["port": "\(port)", "path": "/v1/ws", "epoch": "\(epoch)"])
        // Ready means ready: not before the consumer reads every partition, or the first pushes would
        // wait for it.
        await consumer.waitUntilAssigned()
        listening.announce(port)

        var dispatcher = Dispatcher(shards: shards, window: window, logger: logger, counters: counters, metrics: metrics, clock: clock, registry: registry)
        dispatcher.repeats = sessions.replay.repeats
        dispatcher.backlog = backlog
        dispatcher.serverSentEvents = sessions.serverSentEvents
        dispatcher.revocations = tokens.revocations
        // The topic changed under the node (partitions added, recreated): its epoch, positions and shards
        // no longer describe it. The node closes its connections so they resume elsewhere and ends with
        // an error, to be restarted on the new epoch.
        let (topicChanges, topicChanged) = AsyncStream<KafkaLiveEvent>.makeStream()
        dispatcher.topicChanged = { event in topicChanged.yield(event) }
        let change: KafkaLiveEvent? = await withTaskGroup(of: KafkaLiveEvent?.self) { tasks in
            tasks.addTask { [dispatcher] in
                await dispatcher.run(self.consumer.batches)
                return nil
            }
            tasks.addTask {
                for await event in topicChanges { return event }
                return nil
            }
            tasks.addTask {
                // Until SIGTERM (or the group's shutdown); then drain, while the dispatcher still delivers.
                guard (try? await gracefulShutdown()) != nil else { return nil }
                await self.drain(server: server, shards: self.shards)
                return nil
            }
            let first = await tasks.next() ?? nil
            tasks.cancelAll()
            return first
        }
        topicChanged.finish()
        try? await server.close()
        for shard in shards {
            shard.eventLoop.execute { shard.assumeIsolated { $0.closeAll(change == nil ? .shuttingDown : .topicChanged) } }
        }
        if let change {
            logger.critical("the events topic changed under this node; stopping to restart on its new epoch", metadata: ["change": "\(change)"])
            throw KafkaError(.unknownTopicOrPartition, "the events topic \(topology.topic) changed (\(change)); restart the node to take its new epoch")
        }
    }

    /// The graceful drain: readiness turns 503 and handshakes are refused at once; after `drainDelay`
    /// (load balancers notice the readiness) the listener closes; then the connections are closed with
    /// 1012 in batches every 100 ms, spread evenly over the rest of the window, so that their clients
    /// reconnect to other nodes as a trickle, not a storm.
    private func drain(server: any Channel, shards: [Shard]) async {
        admission.startDraining()
        anonymousAdmission.startDraining()
        let start = ContinuousClock.now
        await clusterSessions?.sayGoodbye(within: .seconds(2))
        logger.notice("draining", metadata: ["connections": "\(admission.openConnections)", "window": "\(configuration.drainDuration)"])
        try? await Task.sleep(for: configuration.drainDelay)
        try? await server.close()
        // Leave a second of the window for the last close handshakes.
        let tick = Duration.milliseconds(100)
        let window = max(.zero, configuration.drainDuration - configuration.drainDelay - .seconds(1))
        let ticks = max(1, Int(window / tick))
        for step in 0..<ticks {
            var open = 0
            for shard in shards {
                let remaining = await shard.openCount
                let share = (remaining + (ticks - step) - 1) / (ticks - step)
                open += await shard.drainStep(closing: share)
            }
            if open == 0 { break }
            try? await Task.sleep(until: start + configuration.drainDelay + tick * (step + 1))
        }
        // The close handshakes finish (or their grace runs out) before the dispatcher stops.
        let deadline = ContinuousClock.now + .seconds(3)
        while admission.openConnections > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        logger.notice("drained", metadata: ["seconds": "\(ContinuousClock.now - start)", "left": "\(admission.openConnections)"])
    }

    private func startSweeping(_ shard: Shard) -> RepeatedTask {
        let pingEvery = max(1, Int(configuration.pingInterval.components.seconds))
        let missedPongLimit = configuration.missedPongLimit
        let clock = self.clock
        return shard.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            shard.assumeIsolated {
                $0.sweep(now: clock.nowMillis(), pingEverySeconds: pingEvery, missedPongLimit: missedPongLimit)
            }
        }
    }
}
