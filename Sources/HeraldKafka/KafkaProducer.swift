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
    /// How long librdkafka waits to fill a batch. Small: pushes are latency-sensitive.
    public var lingerMilliseconds: Int = 5
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
                "compression.codec": "lz4",
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

    /// Produces one record and returns where Kafka stored it.
    public func send(_ record: KafkaOutgoingRecord) async throws(KafkaError) -> KafkaDelivery {
        try await send([record])[0].get()
    }

    /// Produces records together and returns each one's outcome, in order. Records are enqueued in
    /// order, so records with the same key keep their order in the partition.
    public func send(_ records: [KafkaOutgoingRecord]) async -> [Result<KafkaDelivery, KafkaError>] {
        guard !records.isEmpty else { return [] }
        let batch = PendingDeliveries(count: records.count)
        return await withCheckedContinuation { continuation in
            batch.install(continuation)
            Task.detached { [self] in await self.enqueue(records, into: batch) }
        }
    }

    private func enqueue(_ records: [KafkaOutgoingRecord], into batch: PendingDeliveries) async {
        let deadline = ContinuousClock.now + .milliseconds(configuration.enqueueTimeoutMilliseconds)
        var index = 0
        while index < records.count {
            switch produce(records[index], ticket: DeliveryTicket(batch: batch, index: index)) {
            case .enqueued:
                index += 1
            case .failed(let error):
                batch.complete(index, .failure(error))
                index += 1
            case .queueFull:
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
    }

    private enum ProduceOutcome { case enqueued, queueFull, failed(KafkaError) }

    private func produce(_ record: KafkaOutgoingRecord, ticket: DeliveryTicket) -> ProduceOutcome {
        // Holding the phase lock while enqueueing means the poll thread cannot begin its final flush
        // and destroy the handle in the middle of a produce call.
        phase.withLock { phase in
            guard phase == .running else {
                return .failed(KafkaError(.shutdown, "the producer is shutting down; the record was not sent"))
            }
            return produceLocked(record, ticket: ticket)
        }
    }

    private func produceLocked(_ record: KafkaOutgoingRecord, ticket: DeliveryTicket) -> ProduceOutcome {
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
        let opaque = Unmanaged.passRetained(ticket).toOpaque()

        let error: OpaquePointer? = record.topic.withCString { topic in
            record.value.withUnsafeReadableBytes { value in
                withKeyPointer(record.key) { keyPointer, keyLength in
                    var args = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 7)
                    args[0].vtype = RD_KAFKA_VTYPE_TOPIC
                    args[0].u.cstr = topic
                    args[1].vtype = RD_KAFKA_VTYPE_VALUE
                    args[1].u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
                    args[1].u.mem.size = value.count
                    args[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS
                    args[2].u.i = RD_KAFKA_MSG_F_COPY
                    args[3].vtype = RD_KAFKA_VTYPE_OPAQUE
                    args[3].u.ptr = opaque
                    var count = 4
                    if let keyPointer {
                        args[count].vtype = RD_KAFKA_VTYPE_KEY
                        args[count].u.mem.ptr = UnsafeMutableRawPointer(mutating: keyPointer)
                        args[count].u.mem.size = keyLength
                        count += 1
                    }
                    if let headers {
                        args[count].vtype = RD_KAFKA_VTYPE_HEADERS
                        args[count].u.headers = headers
                        count += 1
                    }
                    if let partition = record.partition {
                        args[count].vtype = RD_KAFKA_VTYPE_PARTITION
                        args[count].u.i32 = partition
                        count += 1
                    }
                    return rd_kafka_produceva(client.handle, args, count)
                }
            }
        }

        guard let error else { return .enqueued }
        // Not enqueued: the headers and the ticket are still ours.
        let code = rd_kafka_error_code(error)
        let text = String(cString: rd_kafka_error_string(error))
        rd_kafka_error_destroy(error)
        if let headers { rd_kafka_headers_destroy(headers) }
        Unmanaged<DeliveryTicket>.fromOpaque(opaque).release()
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
final class PendingDeliveries: Sendable {
    private struct State {
        var results: [Result<KafkaDelivery, KafkaError>?]
        var remaining: Int
        var continuation: CheckedContinuation<[Result<KafkaDelivery, KafkaError>], Never>?
    }

    private let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count, continuation: nil))
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
        let resume = state.withLock { state -> (CheckedContinuation<[Result<KafkaDelivery, KafkaError>], Never>, [Result<KafkaDelivery, KafkaError>])? in
            precondition(state.results[index] == nil, "a record's delivery was reported twice")
            state.results[index] = result
            state.remaining -= 1
            guard state.remaining == 0, let continuation = state.continuation else { return nil }
            state.continuation = nil
            return (continuation, state.results.map { $0! })
        }
        if let (continuation, results) = resume { continuation.resume(returning: results) }
    }
}

/// What a record's `msg_opaque` points at: which batch and which slot its report completes.
final class DeliveryTicket: Sendable {
    let batch: PendingDeliveries
    let index: Int
    init(batch: PendingDeliveries, index: Int) {
        self.batch = batch
        self.index = index
    }
}

private func deliveryReportCallback(rk: OpaquePointer?, message: UnsafePointer<rd_kafka_message_t>?, opaque: UnsafeMutableRawPointer?) {
    guard let message, let ticketPointer = message.pointee._private else { return }
    let ticket = Unmanaged<DeliveryTicket>.fromOpaque(ticketPointer).takeRetainedValue()
    let m = message.pointee
    if m.err == RD_KAFKA_RESP_ERR_NO_ERROR {
        ticket.batch.complete(ticket.index, .success(KafkaDelivery(partition: m.partition, offset: m.offset)))
    } else {
        let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "?"
        ticket.batch.complete(ticket.index, .failure(KafkaError(.delivery, "record to \(topic) was not acknowledged", m.err)))
    }
}
