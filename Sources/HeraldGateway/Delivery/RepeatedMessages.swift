public import HeraldCore
import Synchronization

/// Messages a stream carries a second time: the same `herald-id` (within its `herald-id-scope`, the
/// API key that pushed it; `HeraldRecord.deduplicationKey`) in the same stream again. A push
/// retried with its id through another node (whose idempotency memory does not know it), a client's
/// retried `sync` publish, a producer's retry outside Herald: Kafka may hold both copies, and each
/// device must receive the message once. Every node reads a partition in offset order, so each keeps
/// the first offset of an id in a stream and drops every later copy, live (before the hot window and
/// the shards) and in replays from Kafka.
///
/// Bounded by count, not by time: the last `capacity` (stream, id) pairs the live path saw, forgotten
/// oldest first. A pair is kept as a 128-bit digest and an offset, so memory does not grow with the
/// ids' or the users' lengths: measured, 71 bytes a pair with the table's and the ring's share, 18 MB
/// for the default 262,144. Two pairs sharing a digest would drop a message; at 2⁻¹²⁸ a pair
/// that is not a concern. What a node started after the original, or has forgotten, it delivers.
public final class RepeatedMessages: Sendable {
    public static let defaultCapacity = 262_144

    private struct Digest: Hashable {
        var high: UInt64
        var low: UInt64

        init(stream: HeraldStream, id: String) {
            // Two independent 64-bit hashes of the same pair (the salts differ), seeded per process:
            // digests are only ever compared within one node.
            var first = Hasher()
            first.combine(UInt8(1))
            first.combine(stream)
            first.combine(id)
            var second = Hasher()
            second.combine(UInt8(2))
            second.combine(id)
            second.combine(stream)
            high = UInt64(bitPattern: Int64(first.finalize()))
            low = UInt64(bitPattern: Int64(second.finalize()))
        }
    }

    private struct State {
        var first: [Digest: Int64] = [:]
        /// Digests in the order they were first seen, as a ring: the oldest is forgotten first.
        var order: [Digest]
        var filled = 0
        var next = 0
    }

    public let capacity: Int
    private let state: Mutex<State>

    public init(capacity: Int = defaultCapacity) {
        self.capacity = max(capacity, 1)
        state = Mutex(State(order: []))
    }

    /// Whether the record at `offset` repeats an earlier one of `stream` with `id`; a first sighting
    /// is remembered. Called by the live path, in offset order.
    func isRepeat(_ stream: HeraldStream, id: String, offset: Int64) -> Bool {
        let digest = Digest(stream: stream, id: id)
        return state.withLock { state in
            if let first = state.first[digest] { return offset > first }
            if state.filled < capacity {
                state.order.append(digest)
                state.filled += 1
            } else {
                state.first[state.order[state.next]] = nil
                state.order[state.next] = digest
                state.next = (state.next + 1) % capacity
            }
            state.first[digest] = offset
            return false
        }
    }

    /// Whether the record at `offset` repeats one the live path saw earlier (replays ask; they
    /// remember nothing, since they read out of order).
    func isKnownRepeat(_ stream: HeraldStream, id: String, offset: Int64) -> Bool {
        let digest = Digest(stream: stream, id: id)
        return state.withLock { state in state.first[digest].map { offset > $0 } ?? false }
    }

    /// The first offset this node saw of `id` in `stream`, if it remembers one.
    public func firstOffset(of id: String, in stream: HeraldStream) -> Int64? {
        let digest = Digest(stream: stream, id: id)
        return state.withLock { $0.first[digest] }
    }

    /// Pairs remembered now (at most `capacity`).
    public var count: Int { state.withLock { $0.filled } }
}
