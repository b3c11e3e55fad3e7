import Synchronization

/// Sync publishes a client sent again: the same user and `herald-id` in the user's stream a second
/// time. A client that did not get `published` (Kafka failed, or the answer was lost with the
/// connection) sends the publish again with the same id, and Kafka may hold the first copy all the
/// same; the user's other devices must receive it once. Every node reads a partition in offset order,
/// so each keeps the first offset of an id and drops every later copy, live (before the hot window)
/// and in replays from Kafka.
///
/// Only records that exclude a session (what `sync` writes) are considered, so the memory grows with
/// sync publishes alone; it keeps the last `capacity` ids (a retry comes seconds after its original,
/// far within that). A node that started after the original, or has forgotten it, delivers the copy.
final class RepeatedPublishes: Sendable {
    static let defaultCapacity = 65_536

    private struct Key: Hashable {
        var user: String
        var id: String
    }

    private struct State {
        var first: [Key: Int64] = [:]
        /// Keys in the order they were first seen, as a ring: the oldest is forgotten first.
        var order: [Key?]
        var next = 0
    }

    private let state: Mutex<State>

    init(capacity: Int = defaultCapacity) {
        state = Mutex(State(order: Array(repeating: nil, count: max(capacity, 1))))
    }

    /// Whether the record at `offset` repeats an earlier one of `user` with `id`; a first sighting
    /// is remembered. Called by the live path, in offset order.
    func isRepeat(user: String, id: String, offset: Int64) -> Bool {
        let key = Key(user: user, id: id)
        return state.withLock { state in
            if let first = state.first[key] { return offset > first }
            if let forgotten = state.order[state.next] { state.first[forgotten] = nil }
            state.order[state.next] = key
            state.next = (state.next + 1) % state.order.count
            state.first[key] = offset
            return false
        }
    }

    /// Whether the record at `offset` repeats one the live path saw earlier (replays ask; they
    /// remember nothing, since they read out of order).
    func isKnownRepeat(user: String, id: String, offset: Int64) -> Bool {
        state.withLock { state in state.first[Key(user: user, id: id)].map { offset > $0 } ?? false }
    }
}
