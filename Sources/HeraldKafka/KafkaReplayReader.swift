internal import CKafka
public import Logging
import Foundation
import NIOCore

public struct KafkaReplayReaderConfiguration: Sendable, Hashable {
    public var kafka: KafkaConfiguration
    public var topic: String
    /// How long one read may take in all before it fails with `tooMany` (more than a node replays).
    public var readTimeout: Duration = .seconds(30)
    /// How many partitions may be read at once: each is a consumer handle of its own (librdkafka's
    /// threads and buffers) with one thread of ours. Reads of one partition never need two: they are
    /// shared. At least 1, at most 64.
    public var readers: Int = 4
    public static let maxReaders = 64
    public var fetchWaitMaxMilliseconds: Int = 10

    public init(kafka: KafkaConfiguration, topic: String) {
        self.kafka = kafka
        self.topic = topic
    }

    var properties: [String: String] {
        kafka.properties(
            [
                "fetch.wait.max.ms": String(fetchWaitMaxMilliseconds),
                "queued.max.messages.kbytes": "16384",
            ],
            enforced: [
                // An offset Kafka no longer keeps must be an error, never a silent jump to another one:
                // that jump would hand a client a replay with a hole in it.
                "auto.offset.reset": "error",
                "group.id": "herald-replay-\(UUID().uuidString)",
                "enable.auto.commit": "false",
                "enable.auto.offset.store": "false",
                "enable.partition.eof": "true",
            ]
        )
    }
}

/// What a keyed replay read returns: per key its last records in offset order, per key the highest
/// offset dropped to stay within the retention, and the bound it read up to.
public struct KafkaKeyedReplay: Sendable {
    public var records: [[UInt8]: [KafkaRecord]]
    public var dropped: [[UInt8]: Int64]
    public var end: Int64
}

/// What a replay read returns: the records in offset order and the bound it read up to.
public struct KafkaReplay: Sendable {
    public var records: [KafkaRecord]
    /// The offset the read stopped before: every offset in `[from, end)` was considered.
    public var end: Int64
}

/// Reads one partition from an offset up to a bound, on demand, for resumes older than what a node
/// keeps in memory.
///
/// An offset below the log start (`offsetExpired`) and one beyond its end (`offsetAhead`) are distinct
/// errors, decided against the partition's watermarks; if retention overtakes a read already under way,
/// librdkafka's reset is an error too (`auto.offset.reset=error`).
///
/// The reader holds `readers` consumer handles, each on a thread of its own: a call takes a free one
/// for its duration, so a long read of one partition does not hold up reads of others; when all are
/// busy, calls wait in line. A read can be stopped by its caller between batches (`isWanted`).
public final class KafkaReplayReader: Sendable {
    private struct Handle: Sendable {
        let client: RDKafkaClient
        let worker: BlockingWorker
    }

    private let configuration: KafkaReplayReaderConfiguration
    private let handles: [Handle]
    private let pool: ReaderPool
    private let logger: Logger

    public init(configuration: KafkaReplayReaderConfiguration, logger: Logger) throws(KafkaError) {
        guard (1...KafkaReplayReaderConfiguration.maxReaders).contains(configuration.readers) else {
            throw KafkaError(.configuration, "the replay readers must be 1 to \(KafkaReplayReaderConfiguration.maxReaders), not \(configuration.readers)")
        }
        self.configuration = configuration
        self.logger = logger
        var handles: [Handle] = []
        for index in 0..<configuration.readers {
            do {
                // Each handle its own group id (the property is made anew each time): they never coordinate.
                let client = try RDKafkaClient(kind: .consumer, properties: configuration.properties, logger: logger)
                handles.append(Handle(client: client, worker: BlockingWorker(name: "herald-kafka-replay-\(index)")))
            } catch {
                for handle in handles { handle.client.destroy() }
                throw error
            }
        }
        self.handles = handles
        self.pool = ReaderPool(count: handles.count)
    }

    /// How many reads may run at once (`readers`).
    public var handleCount: Int { handles.count }

    /// Runs `body` on a free handle's thread.
    private func onFreeHandle<T: Sendable>(_ body: @escaping @Sendable (RDKafkaClient) throws(KafkaError) -> T) async throws(KafkaError) -> T {
        guard let index = await pool.acquire() else { throw KafkaError(.shutdown, "the replay reader is closed") }
        defer { pool.release(index) }
        let handle = handles[index]
        return try await handle.worker.run { () throws(KafkaError) -> T in try body(handle.client) }
    }

    /// Reads `partition` from offset `from` (inclusive) up to `until` (exclusive; `nil` = the partition's
    /// end now). With `key`, only records with that key are returned; with `limit`, the read fails with
    /// `tooMany` rather than return a partial replay.
    public func read(
        partition: Int32, from: Int64, until: Int64? = nil, key: [UInt8]? = nil, limit: Int? = nil
    ) async throws(KafkaError) -> KafkaReplay {
        try await onFreeHandle { [self] client throws(KafkaError) -> KafkaReplay in
            try self.readBlocking(client, partition: partition, from: from, until: until, key: key, limit: limit)
        }
    }

    /// One pass over `partition` from `from` up to `until` (exclusive) for several keys at once: how
    /// concurrent resumes on one partition share a read instead of each scanning it. For each key it
    /// keeps the last `retainPerKey` matching records (so memory stays bounded whatever the range)
    /// and reports the highest offset it had to drop, from which a caller decides `too-many`.
    /// `progress` is told, after each batch taken from librdkafka, how many records it held;
    /// `isWanted` is asked before each batch, and once it says no the read fails with `cancelled`.
    public func read(
        partition: Int32, from: Int64, until: Int64, keys: Set<[UInt8]>, retainPerKey: Int,
        isWanted: @escaping @Sendable () -> Bool = { true }, progress: @escaping @Sendable (_ scanned: Int) -> Void = { _ in }
    ) async throws(KafkaError) -> KafkaKeyedReplay {
        try await onFreeHandle { [self] client throws(KafkaError) -> KafkaKeyedReplay in
            var result = KafkaKeyedReplay(records: [:], dropped: [:], end: from)
            let allocator = ByteBufferAllocator()
            let topic = configuration.topic
            result.end = try self.scan(client, partition: partition, from: from, until: until, isWanted: isWanted, progress: progress) { message in
                let m = message.pointee
                guard let pointer = m.key else { return nil }
                let key = [UInt8](UnsafeRawBufferPointer(start: pointer, count: m.key_len))
                guard keys.contains(key) else { return nil }
                var kept = result.records[key, default: []]
                result.records[key] = nil  // keep the array uniquely referenced while appending
                kept.append(KafkaRecord(copying: message, topic: topic, allocator: allocator))
                if kept.count >= 2 * retainPerKey {
                    let excess = kept.count - retainPerKey
                    result.dropped[key] = kept[excess - 1].offset
                    kept.removeFirst(excess)
                }
                result.records[key] = kept
                return nil
            }
            for (key, kept) in result.records where kept.count > retainPerKey {
                let excess = kept.count - retainPerKey
                result.dropped[key] = kept[excess - 1].offset
                result.records[key] = Array(kept.suffix(retainPerKey))
            }
            return result
        }
    }

    /// The partition's watermarks, asked on a reader's thread.
    public func watermarks(partition: Int32) async throws(KafkaError) -> (low: Int64, high: Int64) {
        try await onFreeHandle { [self] client throws(KafkaError) -> (low: Int64, high: Int64) in
            try client.watermarks(topic: self.configuration.topic, partition: partition, timeoutMs: 5_000)
        }
    }

    public func close() async {
        pool.close()
        for handle in handles {
            await handle.worker.stop()
            rd_kafka_consumer_close(handle.client.handle)
            handle.client.destroy()
        }
    }

    private func readBlocking(_ client: RDKafkaClient, partition: Int32, from: Int64, until: Int64?, key: [UInt8]?, limit: Int?) throws(KafkaError) -> KafkaReplay {
        let topic = configuration.topic
        let allocator = ByteBufferAllocator()
        var records: [KafkaRecord] = []
        let end = try scan(client, partition: partition, from: from, until: until) { message in
            if let key, !keyMatches(message, key) { return nil }
            records.append(KafkaRecord(copying: message, topic: topic, allocator: allocator))
            if let limit, records.count > limit {
                return KafkaError(.tooMany, "more than \(limit) records to replay from \(topic)[\(partition)] offset \(from)")
            }
            return nil
        }
        return KafkaReplay(records: records, end: end)
    }

    /// Reads `partition` over `[from, min(until, end of log))` and hands each record to `visit` in
    /// offset order; a non-nil answer from `visit` fails the read. Returns the bound it read up to.
    private func scan(
        _ client: RDKafkaClient, partition: Int32, from: Int64, until: Int64?,
        isWanted: () -> Bool = { true }, progress: (Int) -> Void = { _ in },
        visit: (UnsafeMutablePointer<rd_kafka_message_t>) -> KafkaError?
    ) throws(KafkaError) -> Int64 {
        let topic = configuration.topic
        let (low, high) = try client.watermarks(topic: topic, partition: partition, timeoutMs: 5_000)
        if from < low {
            throw KafkaError(.offsetExpired, "offset \(from) of \(topic)[\(partition)] is no longer kept; the log starts at \(low)")
        }
        if from > high {
            throw KafkaError(.offsetAhead, "offset \(from) of \(topic)[\(partition)] is beyond the end of the log (\(high))")
        }
        let end = min(until ?? high, high)
        guard from < end else { return max(from, end) }

        guard let queue = rd_kafka_queue_get_consumer(client.handle) else {
            throw KafkaError(.consumer, "librdkafka gave no consumer queue")
        }
        defer { rd_kafka_queue_destroy(queue) }
        let capacity = 1_000
        let messages = UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>.allocate(capacity: capacity)
        defer { messages.deallocate() }
        // A read stopped early (cancelled, over its limit) may have left records of its partition in
        // the queue; one of them taken as this read's would skip the offsets before it.
        while case let left = rd_kafka_consume_batch_queue(queue, 0, messages, capacity), left > 0 {
            for index in 0..<left { if let message = messages[index] { rd_kafka_message_destroy(message) } }
        }

        let assignError = withPartitionList(topic: topic, [(partition, from)]) { rd_kafka_assign(client.handle, $0) }
        guard assignError == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(.consumer, "assigning \(topic)[\(partition)] for replay", assignError)
        }
        defer { _ = rd_kafka_assign(client.handle, nil) }
        let deadline = ContinuousClock.now + configuration.readTimeout
        var position = from

        while position < end {
            guard isWanted() else {
                throw KafkaError(.cancelled, "replay of \(topic)[\(partition)] from \(from) stopped at \(position) of \(end): nobody waits for it")
            }
            if ContinuousClock.now >= deadline {
                throw KafkaError(.tooMany, "replay of \(topic)[\(partition)] from \(from) reached only \(position) of \(end) in time")
            }
            let count = consumeAvailable(queue, messages, capacity)
            if count > 0 { progress(count) }
            var failure: KafkaError? = nil
            for index in 0..<max(count, 0) {
                guard let message = messages[index] else { continue }
                defer { rd_kafka_message_destroy(message) }
                let m = message.pointee
                // A message of an earlier read that was still queued: not ours.
                guard m.partition == partition else { continue }
                switch m.err {
                case RD_KAFKA_RESP_ERR_NO_ERROR:
                    guard m.offset >= position, m.offset < end else { continue }
                    position = m.offset + 1
                    if failure == nil { failure = visit(message) }
                case RD_KAFKA_RESP_ERR__PARTITION_EOF:
                    // Offsets may have holes (transaction markers, compaction): the end of the log
                    // means everything up to it was seen.
                    position = max(position, min(m.offset, end))
                case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET, RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
                    failure = failure ?? KafkaError(.offsetExpired, "offset \(position) of \(topic)[\(partition)] was removed during replay", m.err)
                default:
                    logger.warning("replay fetch error", metadata: ["error": "\(KafkaError(.consumer, "replay", m.err))"])
                }
            }
            if let failure { throw failure }
        }
        return end
    }

    private func keyMatches(_ message: UnsafeMutablePointer<rd_kafka_message_t>, _ key: [UInt8]) -> Bool {
        let m = message.pointee
        guard let pointer = m.key, m.key_len == key.count else { return false }
        return key.withUnsafeBytes { memcmp($0.baseAddress!, pointer, key.count) == 0 }
    }
}
