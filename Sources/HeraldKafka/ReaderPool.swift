import Synchronization

/// Which of a fixed set of reader handles are free: a caller takes one (waiting in line while all are
/// busy) and gives it back. Once closed, waiting and later callers get none.
final class ReaderPool: Sendable {
    private struct State {
        var free: [Int]
        var waiters: [CheckedContinuation<Int?, Never>] = []
        var closed = false
    }

    private let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(free: Array((0..<count).reversed())))
    }

    /// A free handle's index, or nil once the pool is closed.
    func acquire() async -> Int? {
        await withCheckedContinuation { continuation in
            let handle = state.withLock { state -> Int?? in
                if state.closed { return .some(nil) }
                if let free = state.free.popLast() { return .some(free) }
                state.waiters.append(continuation)
                return nil
            }
            if let handle { continuation.resume(returning: handle) }
        }
    }

    func release(_ handle: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Int?, Never>? in
            guard !state.waiters.isEmpty else {
                state.free.append(handle)
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume(returning: handle)
    }

    func close() {
        let waiters = state.withLock { state in
            state.closed = true
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume(returning: nil) }
    }
}
