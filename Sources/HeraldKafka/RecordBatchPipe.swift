import Dispatch
import Synchronization

/// Hands record batches (and the consumer's events, in order with them) from a consumer's poll
/// thread to one async reader, with backpressure.
///
/// The poll thread blocks in `push` while `capacity` batches wait unread, so a slow reader slows
/// fetching instead of growing memory; librdkafka then holds at most its own bounded prefetch.
final class RecordBatchPipe: Sendable {
    enum PushResult { case accepted, closed }

    private struct State {
        var buffer: [KafkaLiveItem] = []
        var reader: CheckedContinuation<KafkaLiveItem?, Never>?
        var writerBlocked = false
        var finished = false
        var readerGone = false
    }

    private let capacity: Int
    private let state = Mutex(State())
    private let writerWakeup = DispatchSemaphore(value: 0)

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    /// Called on the poll thread. Blocks while the buffer is full; `shouldStop` is checked every
    /// 100 ms so a shutdown is never stuck behind a reader that went away.
    func push(_ batch: KafkaLiveItem, shouldStop: () -> Bool) -> PushResult {
        while true {
            enum Action { case done, resume(CheckedContinuation<KafkaLiveItem?, Never>), wait, closed }
            let action: Action = state.withLock { state in
                if state.readerGone || state.finished { return .closed }
                if let reader = state.reader {
                    state.reader = nil
                    return .resume(reader)
                }
                if state.buffer.count < capacity {
                    state.buffer.append(batch)
                    return .done
                }
                state.writerBlocked = true
                return .wait
            }
            switch action {
            case .done: return .accepted
            case .closed: return .closed
            case .resume(let reader):
                reader.resume(returning: batch)
                return .accepted
            case .wait:
                while writerWakeup.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
                    if shouldStop() { return .closed }
                }
            }
        }
    }

    /// No more batches will come; the reader sees the end after the buffered ones.
    func finish() {
        let reader = state.withLock { state in
            state.finished = true
            defer { state.reader = nil }
            return state.buffer.isEmpty ? state.reader : nil
        }
        reader?.resume(returning: nil)
    }

    func next() async -> KafkaLiveItem? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<KafkaLiveItem?, Never>) in
                enum Action { case batch(KafkaLiveItem, wakeWriter: Bool), end, wait }
                let action: Action = state.withLock { state in
                    if !state.buffer.isEmpty {
                        let batch = state.buffer.removeFirst()
                        let wake = state.writerBlocked
                        state.writerBlocked = false
                        return .batch(batch, wakeWriter: wake)
                    }
                    if state.finished || state.readerGone { return .end }
                    state.reader = continuation
                    return .wait
                }
                switch action {
                case .batch(let batch, let wake):
                    if wake { writerWakeup.signal() }
                    continuation.resume(returning: batch)
                case .end:
                    continuation.resume(returning: nil)
                case .wait:
                    break
                }
            }
        } onCancel: {
            readerWentAway()
        }
    }

    /// The reader stopped reading (cancelled): release a blocked writer and end the sequence.
    func readerWentAway() {
        let (reader, wake) = state.withLock { state in
            state.readerGone = true
            defer { state.reader = nil; state.writerBlocked = false }
            return (state.reader, state.writerBlocked)
        }
        reader?.resume(returning: nil)
        if wake { writerWakeup.signal() }
    }
}

/// What a live consumer hands over: a batch of records, or an event about the topic that the reader
/// must see exactly where it happened among the records.
public enum KafkaLiveItem: Sendable {
    case records([KafkaRecord])
    case event(KafkaLiveEvent)
}

/// Something that happened to the topic under a live consumer, which no record shows.
public enum KafkaLiveEvent: Sendable, Hashable {
    /// Offsets `from..<to` of `partition` were never read and never will be: Kafka's retention removed
    /// them before this consumer got there. Reading goes on at `to`. When `to < from` the partition
    /// now ends before where the consumer was (the log was truncated, or the topic was recreated):
    /// reading goes on at its end.
    case partitionGap(partition: Int32, from: Int64, to: Int64)
    /// The topic's partition count changed (partitions added, or the topic recreated with another
    /// count). Added partitions are read from their beginning.
    case partitionCountChanged(from: Int32, to: Int32)
}

/// The batches of records a live consumer reads, in partition order within each partition.
/// One reader at a time. Events are skipped; `withEvents` has them.
public struct KafkaRecordBatches: AsyncSequence, Sendable {
    public typealias Element = [KafkaRecord]
    let pipe: RecordBatchPipe

    public struct AsyncIterator: AsyncIteratorProtocol {
        let pipe: RecordBatchPipe
        public mutating func next() async -> [KafkaRecord]? {
            while let item = await pipe.next() {
                if case .records(let records) = item { return records }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(pipe: pipe) }

    /// The same batches with the consumer's events between them, where they happened.
    public var withEvents: KafkaLiveItems { KafkaLiveItems(pipe: pipe) }
}

/// Record batches and events of a live consumer, in order. One reader at a time.
public struct KafkaLiveItems: AsyncSequence, Sendable {
    public typealias Element = KafkaLiveItem
    let pipe: RecordBatchPipe

    public struct AsyncIterator: AsyncIteratorProtocol {
        let pipe: RecordBatchPipe
        public mutating func next() async -> KafkaLiveItem? { await pipe.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(pipe: pipe) }
}
