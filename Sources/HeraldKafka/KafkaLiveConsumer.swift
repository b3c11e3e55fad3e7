internal import CKafka
public import Logging
public import ServiceLifecycle
import Foundation
import NIOCore
import Synchronization

/// Where a live consumer begins on each partition.
public enum KafkaStartPosition: Sendable, Hashable {
    /// At each partition's end when the consumer starts: only what is produced from now on.
    case end
    /// At each partition's first kept offset.
    case beginning
    /// At the given offset per partition; partitions not listed begin at their end.
    case offsets([Int32: Int64])
}

public struct KafkaLiveConsumerConfiguration: Sendable, Hashable {
    public var kafka: KafkaConfiguration
    public var topic: String
    public var start: KafkaStartPosition = .end
    /// Most records handed over in one batch.
    public var maxBatchSize: Int = 2_000
    /// Batches that may wait unread before the poll thread stops fetching.
    public var bufferedBatches: Int = 4
    /// How often the topic's partition count is checked for new partitions.
    public var partitionCheckInterval: Duration = .seconds(5)
    /// `fetch.wait.max.ms`: how long a broker may hold a fetch for more data. Low, for latency.
    public var fetchWaitMaxMilliseconds: Int = 10
    /// How much librdkafka may prefetch ahead of the reader (`queued.max.messages.kbytes`). A gateway
    /// node's memory is for sockets; a few MiB of prefetch keep the pipe full.
    public var prefetchKilobytes: Int = 8_192

    public init(kafka: KafkaConfiguration, topic: String) {
        self.kafka = kafka
        self.topic = topic
    }

    var properties: [String: String] {
        kafka.properties(
            [
                "fetch.wait.max.ms": String(fetchWaitMaxMilliseconds),
                "queued.max.messages.kbytes": String(prefetchKilobytes),
            ],
            enforced: [
                // A consumer that fell behind retention must not jump silently: librdkafka then
                // stops the partition and says so (`_AUTO_OFFSET_RESET`), and `pollLoop` goes on
                // from the first kept offset and reports the gap as an event.
                "auto.offset.reset": "error",
                // group.id only enables the consumer queue: partitions are assigned by hand, no group
                // is joined and nothing is committed, so every node reads every partition.
                "group.id": "herald-live-\(UUID().uuidString)",
                "enable.auto.commit": "false",
                "enable.auto.offset.store": "false",
                "enable.partition.eof": "false",
            ]
        )
    }
}

/// Reads every partition of one topic without a consumer group, so that each Herald node sees every
/// event, and hands batches of records to one reader with backpressure.
///
/// `run()` polls on a dedicated thread until graceful shutdown or cancellation. New partitions added
/// to the topic while it runs are noticed and read from their beginning. What no record shows (a gap
/// left by retention, a changed partition count) reaches the reader as a `KafkaLiveEvent` in order
/// with the records (`batches.withEvents`).
public final class KafkaLiveConsumer: Service, Sendable {
    public let batches: KafkaRecordBatches

    private let configuration: KafkaLiveConsumerConfiguration
    private let logger: Logger
    private let client: RDKafkaClient
    private let pipe: RecordBatchPipe
    private let stopRequested = Atomic<Bool>(false)
    private let assignment = Mutex<[Int32: Int64]>([:])
    private let started = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    public init(configuration: KafkaLiveConsumerConfiguration, logger: Logger) throws(KafkaError) {
        self.configuration = configuration
        self.logger = logger
        self.client = try RDKafkaClient(kind: .consumer, properties: configuration.properties, logger: logger)
        self.pipe = RecordBatchPipe(capacity: configuration.bufferedBatches)
        self.batches = KafkaRecordBatches(pipe: pipe)
    }

    /// The offset each assigned partition started at (`.end` resolved to a concrete offset).
    public var startOffsets: [Int32: Int64] { startOffsetsStorage.withLock { $0 } }

    private let startOffsetsStorage = Mutex<[Int32: Int64]>([:])

    /// The partitions being read.
    public var assignedPartitions: [Int32] { assignment.withLock { $0.keys.sorted() } }

    /// Returns once the first assignment has been made (the topic exists and every partition's
    /// starting offset is fixed), so that a caller can produce knowing the consumer will see it.
    public func waitUntilAssigned() async {
        await withCheckedContinuation { continuation in
            let ready = started.withLock { state in
                if state.done { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    public func run() async throws {
        let finished = Mutex<CheckedContinuation<Void, any Error>?>(nil)
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    finished.withLock { $0 = continuation }
                    let thread = Thread { [self] in
                        let result: Result<Void, KafkaError>
                        do throws(KafkaError) {
                            try self.pollLoop()
                            result = .success(())
                        } catch {
                            result = .failure(error)
                        }
                        self.shutdownClient()
                        finished.withLock { $0.take() }?.resume(with: result.mapError { $0 as any Error })
                    }
                    thread.name = "herald-kafka-live"
                    thread.start()
                }
                // The reader stopped taking batches (the data plane's drain ended): the consumer has
                // stopped reading, but it stays a running service until its own turn to stop, since a
                // service group counts a service that ends out of order as failed.
                if !self.shouldStop { try? await gracefulShutdown() }
            } onCancel: {
                self.stopRequested.store(true, ordering: .releasing)
            }
        } onGracefulShutdown: {
            self.stopRequested.store(true, ordering: .releasing)
        }
    }

    /// Per assigned partition, how far the next offset to read is behind the partition's end, from the
    /// high watermarks librdkafka last saw in fetch responses (no request is made). Partitions whose
    /// end is not known yet are left out.
    public func lag() -> [Int32: Int64] {
        assignment.withLock { next in
            var lag: [Int32: Int64] = [:]
            for (partition, offset) in next {
                var low: Int64 = -1
                var high: Int64 = -1
                let err = rd_kafka_get_watermark_offsets(client.handle, configuration.topic, partition, &low, &high)
                guard err == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { continue }
                lag[partition] = max(0, high - offset)
            }
            return lag
        }
    }

    private var shouldStop: Bool { stopRequested.load(ordering: .acquiring) }

    private func shutdownClient() {
        rd_kafka_consumer_close(client.handle)
        // `lag()` reads the client under this lock only while partitions are assigned.
        assignment.withLock { $0 = [:] }
        client.destroy()
        pipe.finish()
        // Anyone waiting for an assignment that never came is released too.
        let waiters = started.withLock { state in
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    private func pollLoop() throws(KafkaError) {
        // The topic may not exist yet (created by another process): wait for it, without giving up.
        var partitionCount: Int32 = 0
        while !shouldStop {
            do throws(KafkaError) {
                if let count = try client.partitionCount(topic: configuration.topic, timeoutMs: 2_000), count > 0 {
                    partitionCount = count
                    break
                }
                logger.warning("waiting for the topic to exist", metadata: ["kafka.topic": "\(configuration.topic)"])
            } catch {
                logger.warning("cannot read the topic's metadata yet", metadata: ["error": "\(error)"])
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
        if shouldStop { return }
        try assign(newPartitions: Array(0..<partitionCount), initial: true)
        let waiters = started.withLock { state in
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }

        guard let queue = rd_kafka_queue_get_consumer(client.handle) else {
            throw KafkaError(.consumer, "librdkafka gave no consumer queue")
        }
        defer { rd_kafka_queue_destroy(queue) }

        let allocator = ByteBufferAllocator()
        let capacity = configuration.maxBatchSize
        let messages = UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>.allocate(capacity: capacity)
        defer { messages.deallocate() }
        var nextPartitionCheck = ContinuousClock.now + configuration.partitionCheckInterval
        var knownPartitionCount = partitionCount
        // Partitions stopped at an offset Kafka no longer has, until they are restarted (retried
        // while the watermarks cannot be read).
        var pendingResets: [Int32: Int64] = [:]
        var nextResetAttempt = ContinuousClock.now

        while !shouldStop {
            let count = consumeAvailable(queue, messages, capacity)
            if count > 0 {
                var batch: [KafkaRecord] = []
                batch.reserveCapacity(count)
                var consumed: [Int32: Int64] = [:]
                for index in 0..<count {
                    guard let message = messages[index] else { continue }
                    defer { rd_kafka_message_destroy(message) }
                    if message.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                        if message.pointee.err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET {
                            // The offset librdkafka could not fetch; the partition is stopped now.
                            let partition = message.pointee.partition
                            let offset = message.pointee.offset >= 0
                                ? message.pointee.offset : assignment.withLock { $0[partition] ?? 0 }
                            pendingResets[partition] = offset
                        } else {
                            logger.warning("consumer error", metadata: [
                                "error": "\(KafkaError(.consumer, "reading \(configuration.topic)[\(message.pointee.partition)]", message.pointee.err))",
                            ])
                        }
                        continue
                    }
                    batch.append(KafkaRecord(copying: message, topic: configuration.topic, allocator: allocator))
                    consumed[message.pointee.partition] = message.pointee.offset + 1
                }
                if !consumed.isEmpty {
                    assignment.withLock { $0.merge(consumed) { _, new in new } }
                }
                if !batch.isEmpty, pipe.push(.records(batch), shouldStop: { shouldStop }) == .closed {
                    return
                }
            }
            // After the records read before it: the reader sees the gap exactly where it is.
            if !pendingResets.isEmpty, ContinuousClock.now >= nextResetAttempt {
                do throws(KafkaError) {
                    let events = try resume(after: pendingResets)
                    pendingResets = [:]
                    for event in events where pipe.push(.event(event), shouldStop: { shouldStop }) == .closed {
                        return
                    }
                } catch {
                    logger.warning("cannot restart a partition Kafka refused an offset of; retrying", metadata: ["error": "\(error)"])
                    nextResetAttempt = ContinuousClock.now + .seconds(1)
                }
            }
            if ContinuousClock.now >= nextPartitionCheck {
                nextPartitionCheck = ContinuousClock.now + configuration.partitionCheckInterval
                if let event = checkPartitionCount(known: &knownPartitionCount),
                   pipe.push(.event(event), shouldStop: { shouldStop }) == .closed {
                    return
                }
            }
        }
    }

    /// Restarts partitions whose next offset Kafka no longer has, from the nearest offset it does
    /// have, and says what was skipped. An offset that is still there after all (a broker's passing
    /// error) is read again from where it was: nothing is skipped then, and no event is made.
    private func resume(after resets: [Int32: Int64]) throws(KafkaError) -> [KafkaLiveEvent] {
        var events: [KafkaLiveEvent] = []
        var restarts: [Int32: Int64] = [:]
        for (partition, offset) in resets.sorted(by: { $0.key < $1.key }) {
            let (low, high) = try client.watermarks(topic: configuration.topic, partition: partition, timeoutMs: 5_000)
            let next = offset < low ? low : (offset > high ? high : offset)
            restarts[partition] = next
            if next == offset {
                logger.warning("Kafka refused an offset it still keeps; reading it again", metadata: [
                    "kafka.partition": "\(partition)", "kafka.offset": "\(offset)",
                ])
                continue
            }
            logger.error(
                next > offset
                    ? "the live consumer fell behind what Kafka keeps: records were lost to retention before this node read them"
                    : "the partition ends before this node's position: the log was truncated or the topic recreated",
                metadata: [
                    "kafka.topic": "\(configuration.topic)", "kafka.partition": "\(partition)",
                    "kafka.offset": "\(offset)", "kafka.next_offset": "\(next)",
                ]
            )
            events.append(.partitionGap(partition: partition, from: offset, to: next))
        }
        let all = assignment.withLock { state in
            state.merge(restarts) { _, new in new }
            return state.sorted { $0.key < $1.key }.map { (partition: $0.key, offset: $0.value) }
        }
        let err = withPartitionList(topic: configuration.topic, all) { rd_kafka_assign(client.handle, $0) }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(.consumer, "assigning \(configuration.topic)", err)
        }
        return events
    }

    /// Notices a changed partition count; added partitions are assigned from their beginning.
    private func checkPartitionCount(known: inout Int32) -> KafkaLiveEvent? {
        do throws(KafkaError) {
            guard let count = try client.partitionCount(topic: configuration.topic, timeoutMs: 2_000, knownToExist: true),
                  count > 0, count != known else { return nil }
            let assigned = assignment.withLock { Int32($0.count) }
            if count > assigned {
                try assign(newPartitions: Array(assigned..<count), initial: false)
            }
            logger.error("the topic's partition count changed: positions and the resume epoch change with it", metadata: [
                "kafka.topic": "\(configuration.topic)", "kafka.partitions": "\(known) -> \(count)",
            ])
            defer { known = count }
            return .partitionCountChanged(from: known, to: count)
        } catch {
            logger.warning("cannot check the topic's partitions", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Adds partitions to the assignment. librdkafka replaces the whole assignment, so the partitions
    /// already read are re-assigned at the next offset this consumer has not yet handed over: nothing
    /// is skipped and nothing is read twice.
    private func assign(newPartitions: [Int32], initial: Bool) throws(KafkaError) {
        var added: [Int32: Int64] = [:]
        for partition in newPartitions {
            let start: Int64
            switch (configuration.start, initial) {
            case (.beginning, true), (_, false):
                // A partition created after start holds only records newer than the start.
                start = try client.watermarks(topic: configuration.topic, partition: partition, timeoutMs: 5_000).low
            case (.end, true):
                start = try client.watermarks(topic: configuration.topic, partition: partition, timeoutMs: 5_000).high
            case (.offsets(let offsets), true):
                if let offset = offsets[partition] {
                    start = offset
                } else {
                    start = try client.watermarks(topic: configuration.topic, partition: partition, timeoutMs: 5_000).high
                }
            }
            added[partition] = start
        }
        let all = assignment.withLock { state in
            state.merge(added) { old, _ in old }
            return state.sorted { $0.key < $1.key }.map { (partition: $0.key, offset: $0.value) }
        }
        startOffsetsStorage.withLock { $0.merge(added) { old, _ in old } }
        let err = withPartitionList(topic: configuration.topic, all) { rd_kafka_assign(client.handle, $0) }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(.consumer, "assigning \(configuration.topic)", err)
        }
    }
}
