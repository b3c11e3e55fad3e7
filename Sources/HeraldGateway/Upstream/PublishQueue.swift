/// One connection's `publish` messages on their way to Kafka: one in flight at a time, so they reach
/// the upstream topic in the order the client sent them, and a bounded number waiting behind it.
struct PublishQueue {
    struct Publish {
        var data: [UInt8]
        var sync: Bool
        /// The client's id for it, if it gave one: it is then answered `published` or named in the error.
        var id: String?
        /// Set for a publish into a channel (its stream, then upstream); nil goes upstream only.
        var channel: String? = nil
    }

    private var waiting: [Publish] = []
    private var inFlight = false

    /// Queues a publish; false when `maxWaiting` already wait (the client is told to slow down). The
    /// bound is an argument: every connection carries this value.
    mutating func enqueue(_ publish: Publish, maxWaiting: Int) -> Bool {
        guard waiting.count < maxWaiting else { return false }
        waiting.append(publish)
        return true
    }

    /// The publish to send now, if none is in flight; it stays in flight until `finished()`.
    mutating func next() -> Publish? {
        guard !inFlight, !waiting.isEmpty else { return nil }
        inFlight = true
        return waiting.removeFirst()
    }

    mutating func finished() {
        inFlight = false
    }
}
