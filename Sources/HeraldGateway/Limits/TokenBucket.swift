/// A rate with a burst: `rate` units come back per second, up to `capacity`. Every limit of the node
/// (handshakes, per-source handshakes, client messages, publishes) is one of these.
struct TokenBucket {
    let rate: Double
    let capacity: Double
    private(set) var tokens: Double
    private var refilled: ContinuousClock.Instant

    init(rate: Double, capacity: Double? = nil, now: ContinuousClock.Instant) {
        self.rate = rate
        self.capacity = capacity ?? rate
        self.tokens = capacity ?? rate
        self.refilled = now
    }

    /// Takes `amount` if that many are there.
    mutating func take(_ amount: Double = 1, now: ContinuousClock.Instant) -> Bool {
        refill(now: now)
        guard tokens >= amount else { return false }
        tokens -= amount
        return true
    }

    /// Whether it is full again (an idle key can be forgotten).
    mutating func isFull(now: ContinuousClock.Instant) -> Bool {
        refill(now: now)
        return tokens >= capacity
    }

    private mutating func refill(now: ContinuousClock.Instant) {
        let elapsed = now - refilled
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(capacity, tokens + max(0, seconds) * rate)
        refilled = now
    }
}
