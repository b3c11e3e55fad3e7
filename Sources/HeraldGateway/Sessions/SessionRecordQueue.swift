import HeraldCore
import Synchronization

/// The sessions records a node has still to write, in the order its connections opened and closed.
///
/// One writer takes everything waiting in one go and hands it to the producer as one ordered send, so
/// a connection's close can never overtake its open, and a burst of connects becomes one batch. It is
/// bounded: with Kafka away longer than the queue lasts, the newest records are dropped (and counted),
/// and the view heals when those connections close or the node's run ends.
final class SessionRecordQueue: Sendable {
    private struct State {
        var records: [SessionRecord] = []
        var dropped = 0
    }

    let capacity: Int
    private let state = Mutex(State())
    private let bell: AsyncStream<Void>
    private let ring: AsyncStream<Void>.Continuation

    init(capacity: Int) {
        self.capacity = capacity
        (bell, ring) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Adds a record; false when the queue is full and it was dropped.
    @discardableResult
    func append(_ record: SessionRecord) -> Bool {
        let taken = state.withLock { state in
            guard state.records.count < capacity else {
                state.dropped += 1
                return false
            }
            state.records.append(record)
            return true
        }
        if taken { ring.yield() }
        return taken
    }

    /// Puts records that failed back in front of the newer ones, in their order.
    func putBack(_ records: [SessionRecord]) {
        guard !records.isEmpty else { return }
        state.withLock { state in
            let room = max(0, capacity - state.records.count)
            state.dropped += max(0, records.count - room)
            state.records.insert(contentsOf: records.prefix(room), at: 0)
        }
        ring.yield()
    }

    func takeAll() -> [SessionRecord] {
        state.withLock { state in
            defer { state.records = [] }
            return state.records
        }
    }

    var droppedCount: Int { state.withLock { $0.dropped } }
    var count: Int { state.withLock { $0.records.count } }

    /// One element after each append (coalesced); it ends when the task iterating it is cancelled.
    /// One writer iterates it.
    var wakes: AsyncStream<Void> { bell }
}
