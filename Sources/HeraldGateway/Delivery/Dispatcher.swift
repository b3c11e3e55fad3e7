import HeraldCore
import HeraldKafka
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The consumer actor of the reference design: turns each batch of Kafka records into `message`
/// frames, encoded once, and hands every shard the whole batch in one hop. Shards deliver in parallel,
/// each on its own loop; the next batch waits for all of them, which is the backpressure that reaches
/// back to the consumer's poll thread.
///
/// It also acts on what the consumer reports between batches: a gap the live consumer could not read
/// (retention passed it) closes the connections that follow a stream of that partition with 1012, so
/// that they resume and are told `recovered:false, reason:"expired"` instead of missing records
/// silently.
struct Dispatcher: Sendable {
    let shards: [Shard]
    let window: HotWindow
    let logger: Logger
    let counters: DispatchCounters
    let metrics: GatewayMetrics
    var clock: WallClock = .system
    /// The node's connections, to close those a partition gap affects. Without it a gap is only
    /// counted and logged.
    var registry: SessionRegistry? = nil
    /// Called when the topic under this node changed: its partition count (`partitionCountChanged`), or
    /// a partition's log now ends before this node's position (a `partitionGap` whose `to` is before its
    /// `from`: truncated, or the topic recreated). The positions of the streams, and with them the resume
    /// epoch, are then no longer what this node's connections were told: the gateway must take a new
    /// epoch (`KafkaAdmin.topicEpoch`) and its connections must resume against it.
    var topicChanged: (@Sendable (KafkaLiveEvent) async -> Void)? = nil
    /// Kicks with `revoke=true`, from any node: recorded before the batch carrying them is delivered,
    /// so that a kicked client that reconnects at once is refused.
    var revocations: RevocationList? = nil
    /// Message ids seen per stream, to drop a retried copy (shared with the replays).
    var repeats: RepeatedMessages? = nil
    /// The node's acknowledged pushes waiting for delivery: told as each batch reaches the shards.
    var backlog: DeliveryBacklog? = nil
    /// Whether any connection of the node reads Server-Sent Events: then each record is encoded for them too.
    var serverSentEvents: ServerSentEventsDemand? = nil
    /// One warning per partition per 10 s about misrouted records; the metric counts every one.
    let misroutedLog = LogThrottle(intervalMillis: 10_000)

    func run(_ batches: KafkaRecordBatches) async {
        var partitionCount = shards.first?.partitionCount
        if let partitionCount {
            metrics.partitionCount.record(Int(partitionCount))
            counters.preparePartitions(partitionCount)
        }
        // Runs until cancelled: during a drain the connections still open keep receiving.
        for await item in batches.withEvents {
            switch item {
            case .records(let records):
                let batch = makeBatch(records, now: clock.nowMillis(), partitionCount: partitionCount)
                // Before any shard moves its positions past these records, so a resume that reads the
                // window up to a shard's position finds them.
                window.append(batch)
                await deliver(batch)
                backlog?.delivered(through: batch.nextOffsets)
            case .event(let event):
                await handle(event, partitionCount: &partitionCount)
            }
        }
    }

    /// Acts on what the live consumer reported between two batches.
    func handle(_ event: KafkaLiveEvent, partitionCount: inout Int32?) async {
        switch event {
        case .partitionGap(let partition, let from, let to):
            await handleGap(partition: partition, from: from, to: to, partitionCount: partitionCount)
            if to < from { await topicChanged?(event) }
        case .partitionCountChanged(let from, let to):
            metrics.partitionCountChanges.increment()
            metrics.partitionCount.record(Int(to))
            counters.preparePartitions(to)
            partitionCount = to
            logger.error("the events topic's partition count changed; resume positions of this node no longer hold", metadata: [
                "kafka.partitions": "\(from) -> \(to)",
            ])
            await topicChanged?(event)
        }
    }

    private func deliver(_ batch: DeliveryBatch) async {
        await withTaskGroup(of: Void.self) { group in
            for shard in shards {
                group.addTask { await shard.deliver(batch) }
            }
        }
    }

    /// Offsets `from..<to` of `partition` will never be delivered here. The window stops answering for
    /// them, positions move past them, and every connection that follows a stream of the partition is
    /// closed with 1012: it resumes with the position it holds, which Kafka no longer has, and gets
    /// `recovered:false, reason:"expired"` (or `ahead` when the log was cut short).
    private func handleGap(partition: Int32, from: Int64, to: Int64, partitionCount: Int32?) async {
        counters.gaps.increment(partition)
        counters.skippedOffsets.increment(partition, by: Int(clamping: max(0, to - from)))
        window.restart(partition: partition, at: to)
        if to > from {
            await deliver(DeliveryBatch(deliveries: [], nextOffsets: [partition: to], now: clock.nowMillis()))
            backlog?.delivered(through: [partition: to])
        }
        guard let registry, let partitionCount else {
            logger.error("a partition gap was not told to this node's connections", metadata: ["partition": "\(partition)"])
            return
        }
        let everyone = HeraldStream.broadcast.partition(partitionCount: partitionCount) == partition
        let disconnect: Disconnect = to > from ? .recordsExpiredUnread : .logCutShort
        let connections = registry.allConnections()
        let closed = await withTaskGroup(of: Bool.self) { group in
            for connection in connections {
                group.addTask {
                    // Subscriptions are confined to the connection's loop.
                    (try? await connection.channel.eventLoop.submit { () -> Bool in
                        guard everyone || Self.follows(connection, partition: partition, partitionCount: partitionCount) else { return false }
                        connection.close(disconnect)
                        return true
                    }.get()) ?? false
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        logger.error("connections following a partition with a gap were closed to resume", metadata: [
            "partition": "\(partition)", "from": "\(from)", "to": "\(to)", "closed": "\(closed)",
        ])
    }

    /// Whether a connection follows a stream of `partition` (its user's stream or a subscribed channel).
    /// Runs on the connection's loop.
    static func follows(_ connection: Connection, partition: Int32, partitionCount: Int32) -> Bool {
        if HeraldStream.user(connection.userID).partition(partitionCount: partitionCount) == partition { return true }
        return connection.subscriptions.contains { HeraldStream.channel($0).partition(partitionCount: partitionCount) == partition }
    }

    func makeBatch(_ records: [KafkaRecord], now: Int64, partitionCount: Int32? = nil) -> DeliveryBatch {
        var deliveries: [Delivery] = []
        deliveries.reserveCapacity(records.count)
        var nextOffsets: [Int32: Int64] = [:]
        let allocator = ByteBufferAllocator()
        let encodeEvents = serverSentEvents?.isWanted ?? false
        for record in records {
            nextOffsets[record.partition] = max(nextOffsets[record.partition] ?? 0, record.offset + 1)
            do {
                guard var delivery = try Delivery(record, now: now, allocator: allocator) else {
                    counters.expired.add(1, ordering: .relaxed)
                    // Expired records are rare: decoding the envelope again for its kind costs nothing much.
                    metrics.dropped((try? record.heraldEnvelope())?.stream.kind ?? .user, .expired)
                    continue
                }
                if let partitionCount, isMisrouted(delivery.stream, record, partitionCount: partitionCount, now: now) { continue }
                // Before the hot window and the shards: neither live nor a replay from the window shows it.
                if let repeats, let id = delivery.messageID, case .frame = delivery.action,
                   repeats.isRepeat(delivery.stream, id: id, offset: delivery.offset) {
                    counters.countRepeat(sync: delivery.exclude != nil)
                    continue
                }
                // In force before the batch is delivered, so a kicked client that reconnects at once is refused.
                if case .disconnect(let before?) = delivery.action, case .user(let user) = delivery.stream {
                    revocations?.revoke(user: user, before: before, now: now)
                }
                if encodeEvents, case .frame(let frame) = delivery.action {
                    delivery.serverSentEvent = ServerSentEvent.dataLines(ofTextFrame: frame, allocator: allocator)
                }
                deliveries.append(delivery)
            } catch {
                counters.malformed.increment()
                logger.warning(
                    "record is not a Herald message; skipped",
                    metadata: ["partition": "\(record.partition)", "offset": "\(record.offset)", "error": "\(error)"]
                )
            }
        }
        counters.records.increment(by: records.count)
        return DeliveryBatch(deliveries: deliveries, nextOffsets: nextOffsets, now: now)
    }

    /// A record in a partition its key does not hash to was produced with another partitioner (kcat's
    /// and librdkafka's default is CRC32-based). Its stream's position is an offset of another
    /// partition, so delivering it would show an offset that no resume can find again: it is dropped,
    /// counted and logged (throttled).
    private func isMisrouted(_ stream: HeraldStream, _ record: KafkaRecord, partitionCount: Int32, now: Int64) -> Bool {
        let expected = stream.partition(partitionCount: partitionCount)
        guard expected != record.partition else { return false }
        counters.misrouted.increment(record.partition)
        if let suppressed = misroutedLog.admit(String(record.partition), now: now) {
            logger.warning(
                "record is in a partition its key does not belong in (produce with the murmur2 partitioner); skipped",
                metadata: [
                    "key": "\(stream.kafkaKey)", "partition": "\(record.partition)", "expected_partition": "\(expected)",
                    "offset": "\(record.offset)", "suppressed": "\(suppressed)",
                ]
            )
        }
        return true
    }
}

/// What the dispatcher has seen: the counts behind `GET /v1/node` and their metrics alike.
public final class DispatchCounters: Sendable {
    let records = NodeCounter("herald_records_read_total")
    let malformed = NodeCounter("herald_records_malformed_total")
    let expired = Atomic<Int>(0)
    /// Per partition: records found in a partition their key does not hash to; gaps the live consumer
    /// found (retention passed it, or the log was cut) and the offsets they skipped.
    let misrouted = NodeCounterFamily<Int32>("herald_records_misrouted_total") { [("partition", String($0))] }
    let gaps = NodeCounterFamily<Int32>("herald_kafka_partition_gaps_total") { [("partition", String($0))] }
    let skippedOffsets = NodeCounterFamily<Int32>("herald_kafka_skipped_offsets_total") { [("partition", String($0))] }
    /// Copies of a sync publish a client sent again (same user and id), dropped.
    let repeated = NodeCounter("herald_sync_publish_repeats_total")
    /// Every copy of a message id repeated in its stream (pushes retried through another node, sync
    /// publishes, producers' retries), dropped.
    let deduplicated = NodeCounter("herald_messages_deduplicated_total")

    public init() {}

    /// Creates the per-partition series at zero, so that alerts see a rise from zero rather than a
    /// series appearing at one (which `increase()` does not count).
    func preparePartitions(_ count: Int32) {
        for partition in 0..<max(0, count) {
            misrouted.prepare(partition)
            gaps.prepare(partition)
            skippedOffsets.prepare(partition)
        }
    }

    public var recordsRead: Int { records.value }
    public var malformedSkipped: Int { malformed.value }
    public var expiredSkipped: Int { expired.load(ordering: .relaxed) }
    public var misroutedSkipped: Int { misrouted.total }
    public var partitionGaps: Int { gaps.total }
    /// Copies of a sync publish a client sent again, dropped.
    public var repeatedSyncPublishes: Int { repeated.value }
    /// Copies of a message id already seen in its stream, dropped (sync publishes among them).
    public var deduplicatedMessages: Int { deduplicated.value }

    func countRepeat(sync: Bool) {
        deduplicated.increment()
        if sync { repeated.increment() }
    }
}
