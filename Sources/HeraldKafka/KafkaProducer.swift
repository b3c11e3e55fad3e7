internal import CKafka
public import Logging
public import NIOCore
public import ServiceLifecycle
import Foundation
import Synchronization

/// The producer's settings. Idempotence, `acks=all` and the murmur2 partitioner are not options:
/// Herald acknowledges a push only once every in-sync replica has it, retries must not duplicate,
/// and a key must land where every other producer and the gateway's resume logic expect it.
public struct KafkaProducerConfiguration: Sendable, Hashable {
    public var kafka: KafkaConfiguration
    /// How long librdkafka waits to fill a batch. Small: a push is answered after its acknowledgement,
    /// so the linger is added to every push's latency; concurrent pushes batch together anyway.
    public var lingerMilliseconds: Int = 1
    /// How long a record may take from `send` to acknowledgement before it fails (`message.timeout.ms`).
    public var deliveryTimeoutMilliseconds: Int = 30_000
    /// Records librdkafka may hold locally before `send` has to wait.
    public var maxQueuedMessages: Int = 500_000
    /// How long `send` keeps retrying to enqueue while the local queue is full before failing.
    public var enqueueTimeoutMilliseconds: Int = 5_000
    /// How long shutdown waits for acknowledgements of what is in flight.
    public var flushTimeoutMilliseconds: Int = 10_000

    public init(kafka: KafkaConfiguration) {
        self.kafka = kafka
    }

    var properties: [String: String] {
        kafka.properties(
            [
                "linger.ms": String(lingerMilliseconds),
                "message.timeout.ms": String(deliveryTimeoutMilliseconds),
                "queue.buffering.max.messages": String(maxQueuedMessages),
                // Push payloads are small: compressing them costs CPU and buys little (no measurable
                // difference on loopback, docs/benchmarks.md). Operators with costly links can set lz4.
                "compression.codec": "none",
            ],
            enforced: [
                "enable.idempotence": "true",
                "acks": "all",
                "partitioner": "murmur2_random",
            ]
        )
    }
}

/// One record to produce.
public struct KafkaOutgoingRecord: Sendable {
    public var topic: String
    public var key: [UInt8]?
    public var value: ByteBuffer
    public var headers: [KafkaHeader]
    /// `nil`: let the partitioner choose from the key (the normal case).
    public var partition: Int32?

    public init(topic: String, key: [UInt8]?, value: ByteBuffer, headers: [KafkaHeader] = [], partition: Int32? = nil) {
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
        self.partition = partition
    }
}

/// An idempotent producer whose `send` returns only once Kafka acknowledged the record.
///
/// A dedicated thread polls librdkafka, which runs delivery reports there; each report resumes the
/// sender's continuation through the per-message opaque pointer. Many sends may be in flight at once
/// and librdkafka batches them. A record whose delivery fails is reported as an error to its sender:
/// nothing is silently dropped, and shutdown either flushes what is in flight or fails it.
public final class KafkaProducer: Service, Sendable {
    private enum Phase { case running, closing, closed }

    private let client: RDKafkaClient
    private let configuration: KafkaProducerConfiguration
    private let logger: Logger
    private let phase = Mutex(Phase.running)
    private let pollThreadDone = Mutex<CheckedContinuation<Void, Never>?>(nil)
    private let pollThreadFinished = Atomic<Bool>(false)

    private let failures = Atomic<Int>(0)

    public init(configuration: KafkaProducerConfiguration, logger: Logger) throws(KafkaError) {
        self.configuration = configuration
        self.logger = logger
        self.client = try RDKafkaClient(kind: .producer, properties: configuration.properties, logger: logger) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf, deliveryReportCallback)
        }
        let thread = Thread { [self] in self.pollLoop() }
        thread.name = "herald-kafka-producer"
        thread.start()
    }

    /// Makes the first send as quick as the next ones. librdkafka learns a topic's partition leaders
    /// only when something is first produced to it, and holds that record until a metadata answer
    /// arrives (on a fresh producer, most of a second); a metadata round-trip per topic here, before
    /// the node says it is ready, means no push waits for it.
    public func prepare(topics: [String], timeout: Duration) async throws(KafkaError) {
        let client = self.client
        let milliseconds = Int32(clamping: timeout.components.seconds * 1_000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        // A thread of its own for the blocking metadata call, only while preparing.
        let worker = BlockingWorker(name: "herald-kafka-producer-metadata")
        do {
            for topic in topics {
                _ = try await worker.run { () throws(KafkaError) -> Int32? in
                    try client.partitionCount(topic: topic, timeoutMs: milliseconds, knownToExist: true)
                }
            }
        } catch {
            await worker.stop()
            throw error
        }
        await worker.stop()
    }

    /// The topics whose partition leaders the producer knows already, so that a send to them does not
    /// wait for a metadata answer.
    public func knownTopics(timeout: Duration = .seconds(5)) async throws(KafkaError) -> [String] {
        let client = self.client
        let milliseconds = Int32(clamping: timeout.components.seconds * 1_000)
        let worker = BlockingWorker(name: "herald-kafka-producer-metadata")
        let result: Result<[String], KafkaError>
        do {
            result = .success(try await worker.run { () throws(KafkaError) -> [String] in try client.locallyKnownTopics(timeoutMs: milliseconds) })
        } catch {
            result = .failure(error)
        }
        await worker.stop()
        return try result.get()
    }

    /// Produces one record and returns where Kafka stored it.
    public func send(_ record: KafkaOutgoingRecord) async throws(KafkaError) -> KafkaDelivery {
        try await send([record])[0].get()
    }

    /// Produces records together and returns each one's outcome, in order. Records are enqueued in
    /// order, so records with the same key keep their order in the partition.
    public func send(_ records: [KafkaOutgoingRecord]) async -> [Result<KafkaDelivery, KafkaError>] {
        guard !records.isEmpty else { return [] }
        let batch = PendingDeliveries(count: records.count)
        let results = await withCheckedContinuation { continuation in
            batch.install(continuation)
            // Enqueueing does not block: do it here, and only hand the rest to a task (which waits for
            // room) when librdkafka's local queue is full.
            let next = enqueueWhileRoom(records, from: 0, into: batch)
            if next < records.count {
                Task.detached { [self] in await self.enqueue(records, from: next, into: batch) }
            }
        }
        let failed = results.reduce(0) { count, result in if case .failure = result { count + 1 } else { count } }
        if failed > 0 { failures.add(failed, ordering: .relaxed) }
        return results
    }

    /// Records whose send failed (not enqueued, not acknowledged, or purged at shutdown), since start.
    public var failedCount: Int { failures.load(ordering: .relaxed) }

    private func enqueue(_ records: [KafkaOutgoingRecord], from start: Int, into batch: PendingDeliveries) async {
        let deadline = ContinuousClock.now + .milliseconds(configuration.enqueueTimeoutMilliseconds)
        var index = start
        while index < records.count {
            index = enqueueWhileRoom(records, from: index, into: batch)
            guard index < records.count else { return }
            // librdkafka's local queue is full: wait for deliveries to drain it, up to a bound.
            if ContinuousClock.now >= deadline {
                let error = KafkaError(
                    .enqueue, "the producer's local queue stayed full for \(configuration.enqueueTimeoutMilliseconds) ms",
                    rdKafkaCode: RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue
                )
                batch.complete(index, .failure(error))
                index += 1
            } else {
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
    }

    /// Enqueues records from `start` until all are enqueued or the local queue is full, and returns
    /// the index of the first record not yet handled. Holding the phase lock for the pass means the
    /// poll thread cannot begin its final flush and destroy the handle in the middle of a produce call.
    private func enqueueWhileRoom(_ records: [KafkaOutgoingRecord], from start: Int, into batch: PendingDeliveries) -> Int {
        phase.withLock { phase in
            guard phase == .running else {
                for index in start..<records.count {
                    batch.complete(index, .failure(KafkaError(.shutdown, "the producer is shutting down; the record was not sent")))
                }
                return records.count
            }
            var index = start
            while index < records.count {
                switch produceLocked(records[index], opaque: batch.opaque(for: index)) {
                case .enqueued:
                    break
                case .failed(let error):
                    batch.complete(index, .failure(error))
                case .queueFull:
                    return index
                }
                index += 1
            }
            return index
        }
    }

    private enum ProduceOutcome { case enqueued, queueFull, failed(KafkaError) }

    private func produceLocked(_ record: KafkaOutgoingRecord, opaque: UnsafeMutableRawPointer) -> ProduceOutcome {
        var headers: OpaquePointer? = nil
        if !record.headers.isEmpty {
            headers = rd_kafka_headers_new(record.headers.count)
            for header in record.headers {
                if let value = header.value {
                    _ = value.withUnsafeBytes { rd_kafka_header_add(headers, header.name, -1, $0.baseAddress, $0.count) }
                } else {
                    _ = rd_kafka_header_add(headers, header.name, -1, nil, 0)
                }
            }
        }

        let error: OpaquePointer? = record.topic.withCString { topic in
            record.value.withUnsafeReadableBytes { value in
                withKeyPointer(record.key) { keyPointer, keyLength in
                    withUnsafeTemporaryAllocation(of: rd_kafka_vu_t.self, capacity: 7) { args in
                        var count = 0
                        func append(_ type: rd_kafka_vtype_t, _ fill: (inout rd_kafka_vu_t) -> Void) {
                            var entry = rd_kafka_vu_t()
                            entry.vtype = type
                            fill(&entry)
                            args.initializeElement(at: count, to: entry)
                            count += 1
                        }
                        append(RD_KAFKA_VTYPE_TOPIC) { $0.u.cstr = topic }
                        append(RD_KAFKA_VTYPE_VALUE) {
                            $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
                            $0.u.mem.size = value.count
                        }
                        append(RD_KAFKA_VTYPE_MSGFLAGS) { $0.u.i = RD_KAFKA_MSG_F_COPY }
                        append(RD_KAFKA_VTYPE_OPAQUE) { $0.u.ptr = opaque }
                        if let keyPointer {
                            append(RD_KAFKA_VTYPE_KEY) {
                                $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: keyPointer)
                                $0.u.mem.size = keyLength
                            }
                        }
                        if let headers { append(RD_KAFKA_VTYPE_HEADERS) { $0.u.headers = headers } }
                        if let partition = record.partition { append(RD_KAFKA_VTYPE_PARTITION) { $0.u.i32 = partition } }
                        defer { args.baseAddress!.deinitialize(count: count) }
                        return rd_kafka_produceva(client.handle, args.baseAddress, count)
                    }
                }
            }
        }

        guard let error else { return .enqueued }
        // Not enqueued: the headers are still ours, and no report will come for this record.
        let code = rd_kafka_error_code(error)
        let text = String(cString: rd_kafka_error_string(error))
        rd_kafka_error_destroy(error)
        if let headers { rd_kafka_headers_destroy(headers) }
        if code == RD_KAFKA_RESP_ERR__QUEUE_FULL { return .queueFull }
        return .failed(KafkaError(.enqueue, "cannot produce to \(record.topic): \(text)", rdKafkaCode: code.rawValue))
    }

    private func pollLoop() {
        while phase.withLock({ $0 == .running }) {
            rd_kafka_poll(client.handle, 100)
        }
        let flushResult = rd_kafka_flush(client.handle, Int32(configuration.flushTimeoutMilliseconds))
        if flushResult != RD_KAFKA_RESP_ERR_NO_ERROR {
            let left = rd_kafka_outq_len(client.handle)
            logger.error("producer flush timed out; failing what is still in flight", metadata: ["kafka.unacknowledged": "\(left)"])
            // Purged records get a delivery report with an error, so their senders hear of it.
            rd_kafka_purge(client.handle, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
            rd_kafka_poll(client.handle, 0)
        }
        client.destroy()
        phase.withLock { $0 = .closed }
        pollThreadFinished.store(true, ordering: .releasing)
        pollThreadDone.withLock { $0.take() }?.resume()
    }

    /// Stops accepting records, waits for what is in flight to be acknowledged (up to the flush
    /// timeout, after which it is failed back to its senders), and releases the client.
    public func shutdown() async {
        phase.withLock { if $0 == .running { $0 = .closing } }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let alreadyDone = pollThreadDone.withLock { slot -> Bool in
                if pollThreadFinished.load(ordering: .acquiring) { return true }
                slot = continuation
                return false
            }
            if alreadyDone { continuation.resume() }
        }
    }

    /// Runs until graceful shutdown, then flushes.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Records handed to librdkafka and not yet acknowledged or failed.
    public var inFlightCount: Int {
        phase.withLock { $0 == .closed ? 0 : Int(rd_kafka_outq_len(client.handle)) }
    }
}

private func withKeyPointer<R>(_ key: [UInt8]?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
    guard let key else { return body(nil, 0) }
    return key.withUnsafeBytes { body($0.baseAddress, $0.count) }
}

/// The outcomes of one `send` call, collected as delivery reports arrive in any order.
///
/// Each record's `msg_opaque` points at its slot in `slots`, which names this batch and the record's
/// index, so a report costs no allocation. The batch keeps itself alive (one retain, taken at
/// creation) until its last outcome is in, because librdkafka holds only raw pointers into it.
final class PendingDeliveries: Sendable {
    private struct State {
        var results: [Result<KafkaDelivery, KafkaError>?]
        var remaining: Int
        var continuation: CheckedContinuation<[Result<KafkaDelivery, KafkaError>], Never>?
    }

    struct Slot {
        let batch: Unmanaged<PendingDeliveries>
        let index: Int
    }

    private let state: Mutex<State>
    // Written once in init, before any pointer to it is handed out; freed in deinit, after the last
    // report has been read.
    private nonisolated(unsafe) let slots: UnsafeMutablePointer<Slot>
    private let count: Int

    init(count: Int) {
        self.count = count
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count, continuation: nil))
        slots = .allocate(capacity: count)
        let me = Unmanaged.passRetained(self)
        for index in 0..<count {
            (slots + index).initialize(to: Slot(batch: me, index: index))
        }
    }

    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }

    func opaque(for index: Int) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(slots + index)
    }

    func install(_ continuation: CheckedContinuation<[Result<KafkaDelivery, KafkaError>], Never>) {
        let finished = state.withLock { state -> [Result<KafkaDelivery, KafkaError>]? in
            if state.remaining == 0 { return state.results.map { $0! } }
            state.continuation = continuation
            return nil
        }
        if let finished { continuation.resume(returning: finished) }
    }

    func complete(_ index: Int, _ result: Result<KafkaDelivery, KafkaError>) {
        let (resume, last) = state.withLock { state -> ((CheckedContinuation<[Result<KafkaDelivery, KafkaError>], Never>, [Result<KafkaDelivery, KafkaError>])?, Bool) in
            precondition(state.results[index] == nil, "a record's delivery was reported twice")
            state.results[index] = result
            state.remaining -= 1
            guard state.remaining == 0 else { return (nil, false) }
            guard let continuation = state.continuation else { return (nil, true) }
            state.continuation = nil
            return ((continuation, state.results.map { $0! }), true)
        }
        if let (continuation, results) = resume { continuation.resume(returning: results) }
        if last {
            // No report can reach this batch any more: drop the retain that kept the slots alive.
            Unmanaged.passUnretained(self).release()
        }
    }
}

private func deliveryReportCallback(rk: OpaquePointer?, message: UnsafePointer<rd_kafka_message_t>?, opaque: UnsafeMutableRawPointer?) {
    guard let message, let slotPointer = message.pointee._private else { return }
    let slot = slotPointer.assumingMemoryBound(to: PendingDeliveries.Slot.self).pointee
    let batch = slot.batch.takeUnretainedValue()
    let m = message.pointee
    if m.err == RD_KAFKA_RESP_ERR_NO_ERROR {
        batch.complete(slot.index, .success(KafkaDelivery(partition: m.partition, offset: m.offset)))
    } else {
        let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "?"
        batch.complete(slot.index, .failure(KafkaError(.delivery, "record to \(topic) was not acknowledged", m.err)))
    }
}
