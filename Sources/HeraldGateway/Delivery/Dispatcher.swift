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
struct Dispatcher: Sendable {
    let shards: [Shard]
    let window: HotWindow
    let logger: Logger
    let counters: DispatchCounters
    let metrics: GatewayMetrics

    func run(_ batches: KafkaRecordBatches) async {
        // Runs until cancelled: during a drain the connections still open keep receiving.
        for await records in batches {
            let batch = makeBatch(records, now: WebSocketListener.nowMillis())
            // Before any shard moves its positions past these records, so a resume that reads the
            // window up to a shard's position finds them.
            window.append(batch)
            await withTaskGroup(of: Void.self) { group in
                for shard in shards {
                    group.addTask { await shard.deliver(batch) }
                }
            }
        }
    }

    func makeBatch(_ records: [KafkaRecord], now: Int64) -> DeliveryBatch {
        var deliveries: [Delivery] = []
        deliveries.reserveCapacity(records.count)
        var nextOffsets: [Int32: Int64] = [:]
        let allocator = ByteBufferAllocator()
        for record in records {
            nextOffsets[record.partition] = max(nextOffsets[record.partition] ?? 0, record.offset + 1)
            do {
                guard let delivery = try Delivery(record, now: now, allocator: allocator) else {
                    counters.expired.add(1, ordering: .relaxed)
                    // Expired records are rare: decoding the envelope again for its kind costs nothing much.
                    let envelope = try? HeraldRecord.decode(
                        key: record.key, headers: record.headers.lazy.map { HeraldHeader(name: $0.name, value: $0.value ?? []) }
                    )
                    metrics.dropped(envelope?.stream.kind ?? .user, .expired)
                    continue
                }
                deliveries.append(delivery)
            } catch {
                counters.malformed.add(1, ordering: .relaxed)
                metrics.recordsMalformed.increment()
                logger.warning(
                    "record is not a Herald message; skipped",
                    metadata: ["partition": "\(record.partition)", "offset": "\(record.offset)", "error": "\(error)"]
                )
            }
        }
        counters.records.add(records.count, ordering: .relaxed)
        metrics.recordsRead.increment(by: records.count)
        return DeliveryBatch(deliveries: deliveries, nextOffsets: nextOffsets, now: now)
    }
}

/// What the dispatcher has seen, for logs and (later) metrics.
public final class DispatchCounters: Sendable {
    let records = Atomic<Int>(0)
    let malformed = Atomic<Int>(0)
    let expired = Atomic<Int>(0)

    public var recordsRead: Int { records.load(ordering: .relaxed) }
    public var malformedSkipped: Int { malformed.load(ordering: .relaxed) }
    public var expiredSkipped: Int { expired.load(ordering: .relaxed) }
}
