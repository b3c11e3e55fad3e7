import Synchronization

/// How much one user may `publish` through this node: messages and bytes per second, over all of the
/// user's connections here, so one user can neither flood the upstream topic nor, with `sync`, evict
/// every node's hot window. Either limit is off at 0.
final class PublishLimiter: Sendable {
    struct Limits: Sendable {
        var messagesPerSecond: Double
        var bytesPerSecond: Double
        /// The largest message a client may send: one always fits in the byte burst.
        var maxMessageBytes: Int
    }

    private struct Buckets {
        var messages: TokenBucket
        var bytes: TokenBucket
    }

    /// Users remembered at most; beyond it, users whose buckets are full again are forgotten.
    static let maxTracked = 65_536
    let limits: Limits
    private let users = Mutex<[String: Buckets]>([:])

    init(_ limits: Limits) {
        self.limits = limits
    }

    /// Whether `user` may publish `bytes` now; false means the publish is refused (`slow-down`).
    func admit(_ user: String, bytes: Int, now: ContinuousClock.Instant = .now) -> Bool {
        guard limits.messagesPerSecond > 0 || limits.bytesPerSecond > 0 else { return true }
        return users.withLock { users in
            if users.count >= Self.maxTracked, users[user] == nil {
                users = users.filter { _, buckets in
                    var buckets = buckets
                    return !(buckets.messages.isFull(now: now) && buckets.bytes.isFull(now: now))
                }
            }
            var buckets = users[user] ?? Buckets(
                messages: TokenBucket(rate: limits.messagesPerSecond, capacity: limits.messagesPerSecond * 2, now: now),
                bytes: TokenBucket(
                    rate: limits.bytesPerSecond, capacity: max(limits.bytesPerSecond * 2, Double(limits.maxMessageBytes)), now: now
                )
            )
            defer { users[user] = buckets }
            if limits.messagesPerSecond > 0, !buckets.messages.take(now: now) { return false }
            if limits.bytesPerSecond > 0, !buckets.bytes.take(Double(bytes), now: now) { return false }
            return true
        }
    }
}
