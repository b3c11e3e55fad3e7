import Dispatch
import Synchronization

/// Hands record batches from a consumer's poll thread to one async reader, with backpressure.
///
/// The poll thread blocks in `push` while `capacity` batches wait unread, so a slow reader slows
/// fetching instead of growing memory; librdkafka then holds at most its own bounded prefetch.
final class RecordBatchPipe: Sendable {
    enum PushResult { case accepted, closed }

    private struct State {
        var buffer: [[KafkaRecord]] = []
        var reader: CheckedContinuation<[KafkaRecord]?, Never>?
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
    func push(_ batch: [KafkaRecord], shouldStop: () -> Bool) -> PushResult {
        while true {
            enum Action { case done, resume(CheckedContinuation<[KafkaRecord]?, Never>), wait, closed }
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

    func next() async -> [KafkaRecord]? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<[KafkaRecord]?, Never>) in
                enum Action { case batch([KafkaRecord], wakeWriter: Bool), end, wait }
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

/// The batches of records a live consumer reads, in partition order within each partition.
/// One reader at a time.
public struct KafkaRecordBatches: AsyncSequence, Sendable {
    public typealias Element = [KafkaRecord]
    let pipe: RecordBatchPipe

    public struct AsyncIterator: AsyncIteratorProtocol {
        let pipe: RecordBatchPipe
        public mutating func next() async -> [KafkaRecord]? { await pipe.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(pipe: pipe) }
}
