public import HeraldKafka
import HeraldCore
public import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization

/// The data plane as one service: once the live consumer has its partitions, it makes one shard per
/// event loop, opens the public port and dispatches every batch the consumer reads. On graceful
/// shutdown it stops accepting, closes every connection with 1012 (reconnect elsewhere and resume)
/// and stops dispatching.
public final class Gateway: Service, Sendable {
    public let configuration: GatewayConfiguration
    public let registry: SessionRegistry
    public let admission: Admission
    public let counters = DispatchCounters()
    public let replayStats = ReplayStats()
    public let outbound = OutboundStats()
    let metrics = GatewayMetrics()

    private let consumer: KafkaLiveConsumer
    private let admin: KafkaAdmin
    private let topic: String
    private let tokens: TokenVerifier
    private let replayReader: KafkaReplayReader?
    private let upstream: UpstreamPublisher?
    private let developmentTools: DevelopmentTools?
    private let group: any EventLoopGroup
    private let logger: Logger
    private let listening = Mutex<(port: Int?, waiters: [CheckedContinuation<Int, Never>])>((nil, []))
    private let contextStorage = Mutex<GatewayContext?>(nil)

    public init(
        configuration: GatewayConfiguration, consumer: KafkaLiveConsumer, admin: KafkaAdmin, topic: String,
        tokens: TokenVerifier, group: any EventLoopGroup, logger: Logger,
        replayReader: KafkaReplayReader? = nil, upstream: UpstreamPublisher? = nil, developmentTools: DevelopmentTools? = nil
    ) {
        self.developmentTools = developmentTools
        self.replayReader = replayReader
        self.upstream = upstream
        self.configuration = configuration
        self.consumer = consumer
        self.admin = admin
        self.topic = topic
        self.tokens = tokens
        self.group = group
        self.logger = logger
        self.registry = SessionRegistry(perUserLimit: configuration.perUserConnectionLimit)
        self.admission = Admission(maxConnections: configuration.maxConnections, acceptsPerSecond: configuration.acceptsPerSecond)
    }

    /// Why this node should not get traffic now, or nil when it should: it has joined its partitions
    /// and opened its port, is not draining, and Kafka answers a metadata request.
    public func notReadyReason() async -> String? {
        guard listening.withLock({ $0.port }) != nil else { return "the node has not joined its partitions and opened its port yet" }
        if admission.isDraining { return "the node is draining" }
        do {
            guard try await admin.partitionCount(topic: topic) != nil else { return "the topic \(topic) does not exist" }
        } catch {
            return "Kafka does not answer: \(error.message)"
        }
        return nil
    }

    /// The hot window's size now: records and bytes (0 before the gateway runs).
    public var hotWindowSize: (records: Int, bytes: Int) {
        guard let window = contextStorage.withLock({ $0?.replay.window }) else { return (0, 0) }
        return (window.entryCount, window.byteCount)
    }

    /// Sets the gauges that are read rather than counted (connections, users, hot window, Kafka lag);
    /// called before each scrape.
    public func updateMetrics() {
        metrics.connections.record(admission.openConnections)
        metrics.users.record(registry.userCount)
        let window = hotWindowSize
        metrics.hotWindowBytes.record(window.bytes)
        metrics.hotWindowRecords.record(window.records)
        metrics.resumesInFlight.record(replayStats.resumesInFlight)
        metrics.recordLag(consumer.lag())
    }

    /// This node's state for `GET /v1/node`: connections, resumes by outcome and source, hot window.
    public func statusJSON() -> String {
        let stats = replayStats
        let window = hotWindowSize
        let failures = RecoveryFailure.allCases.map { #""\#($0.rawValue)":\#(stats.failuresByReason[$0] ?? 0)"# }.joined(separator: ",")
        var node = ByteBuffer()
        node.writeJSONString(configuration.nodeID)
        return #"{"node":\#(String(buffer: node)),"connections":\#(admission.openConnections),"draining":\#(admission.isDraining),"#
            + #""resumes":{"recovered":\#(stats.recoveredCount),"from_window":\#(stats.servedFromWindow),"from_kafka":\#(stats.servedFromKafka),"#
            + #""in_flight":\#(stats.resumesInFlight),"kafka_reads":\#(stats.kafkaReadCount),"unavailable":\#(stats.unavailable),"not_recovered":{\#(failures)}},"#
            + #""hot_window":{"records":\#(window.records),"bytes":\#(window.bytes)},"acks":\#(contextStorage.withLock { $0?.acksReceived ?? 0 }),"#
            + #""outbound":{"budget_bytes":\#(configuration.outboundCapBytes),"peak_queued_bytes":\#(outbound.peakQueuedBytes),"#
            + #""slow_consumer_closes":\#(outbound.slowConsumerCloses)}}"#
    }

    /// The bound public port, once listening (useful with port 0).
    public func waitUntilListening() async -> Int {
        await withCheckedContinuation { continuation in
            let port = listening.withLock { state -> Int? in
                if let port = state.port { return port }
                state.waiters.append(continuation)
                return nil
            }
            if let port { continuation.resume(returning: port) }
        }
    }

    public func run() async throws {
        await consumer.waitUntilAssigned()
        let startOffsets = consumer.startOffsets
        guard let partitionCount = try await admin.partitionCount(topic: topic) else {
            throw KafkaError(.unknownTopicOrPartition, "topic \(topic) does not exist")
        }
        let epoch = try await admin.topicEpoch(topic: topic).description
        let shards = group.makeIterator().map { loop in
            Shard(
                eventLoop: loop, startOffsets: startOffsets, partitionCount: partitionCount, metrics: metrics
            )
        }
        let window = HotWindow(
            startOffsets: startOffsets, maxAgeMillis: Int64(configuration.hotWindowAge.components.seconds * 1000),
            maxBytes: configuration.hotWindowBytes
        )
        let replay = ReplayService(window: window, reader: replayReader, limit: configuration.replayLimit, maxBytes: configuration.replayMaxBytes, stats: replayStats, metrics: metrics)
        let context = GatewayContext(
            nodeID: configuration.nodeID, epoch: epoch, registry: registry, admission: admission, tokens: tokens,
            configuration: configuration, shards: shards, replay: replay, upstream: upstream,
            metrics: metrics, outbound: outbound, developmentTools: developmentTools
        )
        contextStorage.withLock { $0 = context }
        var timers = shards.map { startSweeping($0) }
        timers.append(group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            window.evict(now: WebSocketListener.nowMillis())
        })
        defer { timers.forEach { $0.cancel() } }

        let server = try await WebSocketListener(context: context, group: group).bind(host: configuration.host, port: configuration.port)
        let port = server.localAddress?.port ?? configuration.port
        logger.notice("WebSocket listener open", metadata: ["port": "\(port)", "path": "/v1/ws", "epoch": "\(epoch)"])
        let waiters = listening.withLock { state in
            state.port = port
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume(returning: port) }

        var dispatcher = Dispatcher(shards: shards, window: window, logger: logger, counters: counters, metrics: metrics, registry: registry)
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
                await self.drain(server: server, shards: shards)
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
            throw KafkaError(.unknownTopicOrPartition, "the events topic \(topic) changed (\(change)); restart the node to take its new epoch")
        }
    }

    /// The graceful drain: readiness turns 503 and handshakes are refused at once; after `drainDelay`
    /// (load balancers notice the readiness) the listener closes; then the connections are closed with
    /// 1012 in batches every 100 ms, spread evenly over the rest of the window, so that their clients
    /// reconnect to other nodes as a trickle, not a storm.
    private func drain(server: any Channel, shards: [Shard]) async {
        admission.startDraining()
        let start = ContinuousClock.now
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
        return shard.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            shard.assumeIsolated {
                $0.sweep(now: WebSocketListener.nowMillis(), pingEverySeconds: pingEvery, missedPongLimit: missedPongLimit)
            }
        }
    }
}
