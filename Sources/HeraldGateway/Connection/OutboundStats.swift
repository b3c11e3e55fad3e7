import Synchronization

/// What the node's connections queue outbound, as the lifecycle counts it: the largest amount any one
/// connection had counted against its budget, and how many were closed as slow consumers.
public final class OutboundStats: Sendable {
    private let peak = Atomic<Int>(0)
    private let slowCloses = NodeCounter("herald_slow_consumer_closes_total")

    public init() {}

    func observe(_ countedBytes: Int) {
        var current = peak.load(ordering: .relaxed)
        while countedBytes > current {
            let (exchanged, original) = peak.compareExchange(expected: current, desired: countedBytes, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    func slowConsumerClosed() { slowCloses.increment() }

    /// The most bytes one connection had queued at once (its socket's buffer included).
    public var peakQueuedBytes: Int { peak.load(ordering: .relaxed) }
    public var slowConsumerCloses: Int { slowCloses.value }
}
