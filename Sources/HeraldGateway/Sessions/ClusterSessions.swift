import Foundation
public import HeraldCore
public import HeraldKafka
import Logging
import NIOCore
public import ServiceLifecycle
import Synchronization

/// How a node takes part in the cluster's view of sessions (docs/operations.md, "Cluster sessions").
public struct ClusterSessionsConfiguration: Sendable {
    /// The compacted sessions topic; a node without it runs with a view of its own connections only.
    public var topic = "herald.sessions"
    /// A node whose last heartbeat is older than this is forgotten with its connections.
    public var lease: Duration = .seconds(15)
    public var heartbeatInterval: Duration = .seconds(5)
    /// Sessions records a node may hold unsent while Kafka does not take them.
    public var queueCapacity = 100_000

    public init() {}
}

/// The node's part in the cluster's sessions: it writes its connections' opens and closes and its
/// heartbeat to the sessions topic, reads the whole topic (from its start: a fresh node rebuilds the
/// view) into a `SessionView`, and acts on what it reads: it closes with 4001 its own connections that
/// the view finds the oldest over a user's limit, and publishes the presence changes it is the one to
/// publish to the upstream topic (`herald-kind: presence`).
public final class ClusterSessions: Service, Sendable {
    /// What a node builds it from (the gateway adds its registry).
    public struct Parts: Sendable {
        public var configuration: ClusterSessionsConfiguration
        public var producer: KafkaProducer
        /// Reads `configuration.topic` from its beginning.
        public var consumer: KafkaLiveConsumer
        public var partitionCount: Int32
        /// Where each partition that holds records ends when the node starts: the view is rebuilt once
        /// it read that far.
        public var endOffsets: [Int32: Int64]
        /// Where presence changes go; nil publishes none.
        public var upstreamTopic: String?

        public init(
            configuration: ClusterSessionsConfiguration, producer: KafkaProducer, consumer: KafkaLiveConsumer,
            partitionCount: Int32, endOffsets: [Int32: Int64], upstreamTopic: String?
        ) {
            self.configuration = configuration
            self.producer = producer
            self.consumer = consumer
            self.partitionCount = partitionCount
            self.endOffsets = endOffsets
            self.upstreamTopic = upstreamTopic
        }
    }

    public let nodeID: String
    /// This process of the node: random, so a restarted node does not revive its last run's connections.
    public let run: String
    private let parts: Parts
    private let registry: SessionRegistry
    private let perUserLimit: Int
    private let clock: WallClock
    private let logger: Logger
    private let view: Mutex<SessionView>
    private let outgoing: SessionRecordQueue
    /// Partitions not yet read up to where they ended at start; empty once the view is rebuilt.
    private let rebuilding: Mutex<[Int32: Int64]>
    /// The last presence send: each waits for the one before, so one node's changes keep their order.
    private let lastPresenceSend = Mutex<Task<Void, Never>?>(nil)
    private let saidGoodbye = Atomic<Bool>(false)

    let leaseExpiries = NodeCounter("herald_session_lease_expiries_total")
    let crossNodeCloses = NodeCounter("herald_session_cross_node_closes_total")
    let limitCloses = NodeCounter("herald_session_limit_closes_total")
    let recordsWritten = NodeCounter("herald_session_records_written_total")
    let recordsFailed = NodeCounter("herald_session_records_failed_total")
    let presencePublished = NodeCounter("herald_presence_changes_published_total")

    init(parts: Parts, nodeID: String, registry: SessionRegistry, perUserLimit: Int, clock: WallClock, logger: Logger) {
        self.parts = parts
        self.nodeID = nodeID
        self.run = String(UInt64.random(in: 1...UInt64.max), radix: 36)
        self.registry = registry
        self.perUserLimit = perUserLimit
        self.clock = clock
        self.logger = logger
        let lease = parts.configuration.lease.components
        view = Mutex(SessionView(leaseMillis: max(1, lease.seconds * 1000 + lease.attoseconds / 1_000_000_000_000_000)))
        outgoing = SessionRecordQueue(capacity: parts.configuration.queueCapacity)
        rebuilding = Mutex(parts.endOffsets)
    }

    // MARK: what the node's connections report

    func opened(_ connection: Connection) {
        outgoing.append(.opened(
            user: connection.userID, session: connection.sessionID, node: nodeID, run: run, device: connection.deviceID,
            openedAt: connection.openedAt
        ))
    }

    func closed(_ connection: Connection) {
        outgoing.append(.closed(user: connection.userID, session: connection.sessionID, node: nodeID, run: run))
    }

    // MARK: what presence asks

    /// The user's connections on every node whose lease holds, oldest first.
    public func connections(of user: String) -> [SessionView.Connection] {
        let now = clock.nowMillis()
        return view.withLock { $0.connections(of: user, now: now) }
    }

    public func isOnline(_ user: String) -> Bool {
        let now = clock.nowMillis()
        return view.withLock { $0.isOnline(user, now: now) }
    }

    /// Whether the view has read the topic up to where it ended when the node started.
    public var isRebuilt: Bool { rebuilding.withLock { $0.isEmpty } }

    /// Connections and users in the view (counting those of nodes whose lease ran out but which
    /// are not swept yet), and the live nodes.
    public var viewSize: (connections: Int, users: Int, nodes: Int) {
        let now = clock.nowMillis()
        return view.withLock { ($0.entryCount, $0.userCount, $0.liveNodes(now: now).count) }
    }

    // MARK: running

    public func run() async throws {
        outgoing.append(heartbeat())
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await self.writeRecords() }
            tasks.addTask { try? await self.parts.consumer.run() }
            tasks.addTask { await self.readRecords() }
            tasks.addTask { await self.tick() }
            // Until the node stops (the gateway has said goodbye as its drain began, and drained).
            try? await gracefulShutdown()
            await self.sayGoodbye(within: .seconds(2))
            tasks.cancelAll()
        }
    }

    private func heartbeat() -> SessionRecord { .heartbeat(node: nodeID, run: run, sentAt: clock.nowMillis()) }

    /// Says the node is gone (once), so every other node forgets its connections at once rather than
    /// after a lease; waits for Kafka's answer at most `limit`, since a drain must not wait for a Kafka
    /// that is away (the lease then does it).
    func sayGoodbye(within limit: Duration) async {
        guard !saidGoodbye.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let done = GoodbyeSent()
        Task {
            await self.sendGoodbye()
            done.flag.store(true, ordering: .releasing)
        }
        let deadline = ContinuousClock.now + limit
        while !done.flag.load(ordering: .acquiring), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    private func sendGoodbye() async {
        // The closes let compaction forget this run's connections; the goodbye ends them for the view.
        var records = outgoing.takeAll()
        for connection in registry.allConnections() {
            records.append(.closed(user: connection.userID, session: connection.sessionID, node: nodeID, run: run))
        }
        records.append(.gone(node: nodeID, run: run))
        let results = await parts.producer.send(records.map(outgoingRecord))
        let failed = results.filter { if case .failure = $0 { true } else { false } }.count
        recordsWritten.increment(by: results.count - failed)
        recordsFailed.increment(by: failed)
        if case .failure(let error) = results.last {
            logger.error("could not say this node is gone; the other nodes forget its connections after the lease", metadata: ["error": "\(error)"])
        }
    }

    private func outgoingRecord(_ record: SessionRecord) -> KafkaOutgoingRecord {
        KafkaOutgoingRecord(
            topic: parts.configuration.topic, key: record.key, value: ByteBuffer(),
            headers: record.headers.map { KafkaHeader(name: $0.name, value: $0.value) },
            partition: record.partition(partitionCount: parts.partitionCount)
        )
    }

    /// The one writer: everything waiting goes out in one ordered send; what failed is retried first.
    private func writeRecords() async {
        for await _ in outgoing.wakes {
            let records = outgoing.takeAll()
            guard !records.isEmpty else { continue }
            let results = await parts.producer.send(records.map(outgoingRecord))
            var failed: [SessionRecord] = []
            for (record, result) in zip(records, results) {
                if case .failure(let error) = result {
                    if failed.isEmpty {
                        logger.warning("a sessions record was not written; retrying", metadata: ["error": "\(error)"])
                    }
                    failed.append(record)
                }
            }
            recordsWritten.increment(by: records.count - failed.count)
            recordsFailed.increment(by: failed.count)
            if !failed.isEmpty {
                try? await Task.sleep(for: .seconds(1))
                outgoing.putBack(failed)
            }
        }
    }

    private func readRecords() async {
        for await batch in parts.consumer.batches {
            let now = clock.nowMillis()
            var actions: [SessionView.PresenceChange] = []
            var overLimit: [(user: String, openedOn: String)] = []
            view.withLock { view in
                for record in batch {
                    guard let decoded = SessionRecord.decode(headers: record.headers.map { ($0.name, $0.value) }) else { continue }
                    let changes = view.apply(decoded, offset: record.offset, now: now)
                    actions += changes.filter { $0.node == nodeID && decoded.run == run && !$0.nodeLost }
                    if case .opened(let user, _, let node, _, _, _) = decoded { overLimit.append((user, node)) }
                }
            }
            let rebuilt = noteRead(batch)
            for (user, openedOn) in overLimit { closeOverLimit(user, openedOn: openedOn, now: now) }
            if rebuilt { publish(actions) }
        }
    }

    /// Records how far each partition was read; true once the view is rebuilt.
    private func noteRead(_ batch: [KafkaRecord]) -> Bool {
        rebuilding.withLock { pending in
            guard !pending.isEmpty else { return true }
            for record in batch where pending[record.partition].map({ record.offset + 1 >= $0 }) ?? false {
                pending[record.partition] = nil
            }
            if pending.isEmpty { logger.info("cluster sessions view rebuilt", metadata: ["kafka.topic": "\(parts.configuration.topic)"]) }
            return pending.isEmpty
        }
    }

    /// Over the limit, the oldest connections anywhere go; this node closes those it holds.
    private func closeOverLimit(_ user: String, openedOn: String, now: Int64) {
        let oldest = view.withLock { $0.overLimit(user, limit: perUserLimit, now: now) }
        let mine = Set(oldest.filter { $0.node == nodeID }.map(\.session))
        guard !mine.isEmpty else { return }
        for connection in registry.connections(of: user) where mine.contains(connection.sessionID) {
            limitCloses.increment()
            if openedOn != nodeID { crossNodeCloses.increment() }
            connection.channel.eventLoop.execute { connection.close(.replaced) }
        }
    }

    /// Heartbeats, and the sweep of leases that ran out (once a second).
    private func tick() async {
        let interval = parts.configuration.heartbeatInterval
        var nextHeartbeat = ContinuousClock.now + interval
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            if ContinuousClock.now >= nextHeartbeat {
                nextHeartbeat = ContinuousClock.now + interval
                outgoing.append(heartbeat())
            }
            // Not while rebuilding: a live node's old heartbeats are read before its latest.
            guard isRebuilt else { continue }
            let now = clock.nowMillis()
            let (expired, changes) = view.withLock { $0.sweep(now: now) }
            if !expired.isEmpty {
                leaseExpiries.increment(by: expired.count)
                logger.warning("nodes' leases ran out: their connections left the view", metadata: ["nodes": "\(expired)"])
            }
            publish(changes)
        }
    }

    /// Publishes the changes this node is the one to publish: those its own records made, and of
    /// a lost node's users, those seen by the first live node by id (every node knows who that is).
    private func publish(_ changes: [SessionView.PresenceChange]) {
        guard let topic = parts.upstreamTopic, !changes.isEmpty else { return }
        let now = clock.nowMillis()
        let first = view.withLock { $0.liveNodes(now: now).first }
        let records = changes.filter { !$0.nodeLost || first == nodeID }.map { change in
            KafkaOutgoingRecord(
                topic: topic, key: Array(change.user.utf8), value: ByteBuffer(bytes: PresenceEvent(change, at: now).json),
                headers: [
                    KafkaHeader(name: HeraldHeader.kind, value: Array("presence".utf8)),
                    KafkaHeader(name: HeraldHeader.contentType, value: Array(HeraldContentType.json.rawValue.utf8)),
                    KafkaHeader(name: HeraldHeader.node, value: Array(nodeID.utf8)),
                ]
            )
        }
        guard !records.isEmpty else { return }
        let producer = parts.producer
        let counter = presencePublished
        let logger = logger
        lastPresenceSend.withLock { last in
            last = Task { [previous = last] in
                await previous?.value
                let results = await producer.send(records)
                counter.increment(by: results.filter { if case .success = $0 { true } else { false } }.count)
                if case .failure(let error)? = results.first(where: { if case .failure = $0 { true } else { false } }) {
                    logger.warning("a presence change was not published", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}

/// The value of a presence record on the upstream topic (docs/protocol.md §5).
struct PresenceEvent: Encodable {
    var user: String
    var online: Bool
    /// Unix ms when the publishing node saw the change.
    var at: Int64
    /// Why: `connected`, `disconnected`, or `node-lost` (the user's last node stopped or its lease ran out).
    var cause: String

    init(_ change: SessionView.PresenceChange, at: Int64) {
        user = change.user
        online = change.online
        self.at = at
        cause = change.nodeLost ? "node-lost" : change.online ? "connected" : "disconnected"
    }

    var json: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data())
    }
}

/// Whether the goodbye was answered, shared with the task that sends it.
private final class GoodbyeSent: Sendable {
    let flag = Atomic<Bool>(false)
}
