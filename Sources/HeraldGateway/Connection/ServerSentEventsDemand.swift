import Synchronization

/// How many Server-Sent Events connections a node has open: while there are none, the dispatcher
/// encodes no record as an event, so the fallback transport costs WebSocket-only nodes nothing.
final class ServerSentEventsDemand: Sendable {
    private let open = Atomic<Int>(0)

    var isWanted: Bool { open.load(ordering: .relaxed) > 0 }

    func opened() { open.add(1, ordering: .relaxed) }
    func closed() { open.subtract(1, ordering: .relaxed) }
}
