import Synchronization

/// Handshakes per source address: how many may be verified at once and how many may start per second,
/// so that one address (a flood, a broken client in a loop) can neither spend the node's verification
/// CPU nor crowd out everyone else's handshakes. Either limit is off at 0. Generous by default: many
/// real users can share one address behind a NAT.
final class SourceLimiter: Sendable {
    struct Limits: Sendable {
        var inFlight: Int
        var perSecond: Double
    }

    private struct Entry {
        var inFlight = 0
        var rate: TokenBucket
    }

    /// Addresses remembered at most; beyond it, addresses with nothing in flight are forgotten.
    static let maxTracked = 65_536
    let limits: Limits
    private let entries = Mutex<[String: Entry]>([:])

    init(_ limits: Limits) {
        self.limits = limits
    }

    var isActive: Bool { limits.inFlight > 0 || limits.perSecond > 0 }

    /// A handshake from `source` starts; a refusal if it would go over a limit. Each `nil` answer
    /// must be followed by one `end(source)`.
    func begin(_ source: String, now: ContinuousClock.Instant = .now) -> HandshakeRefusal? {
        entries.withLock { entries in
            if entries.count >= Self.maxTracked, entries[source] == nil {
                entries = entries.filter { $0.value.inFlight > 0 }
            }
            var entry = entries[source] ?? Entry(rate: TokenBucket(rate: limits.perSecond, now: now))
            if limits.inFlight > 0, entry.inFlight >= limits.inFlight {
                return HandshakeRefusal(
                    .sourceRateLimited, "more than \(limits.inFlight) handshakes from this address at once; retry later", retryAfter: 1
                )
            }
            if limits.perSecond > 0 {
                guard entry.rate.take(now: now) else {
                    entries[source] = entry
                    return HandshakeRefusal(
                        .sourceRateLimited, "more than \(limits.perSecond) handshakes per second from this address; retry later", retryAfter: 1
                    )
                }
            }
            entry.inFlight += 1
            entries[source] = entry
            return nil
        }
    }

    func end(_ source: String) {
        entries.withLock { entries in
            guard var entry = entries[source] else { return }
            entry.inFlight -= 1
            if entry.inFlight <= 0, limits.perSecond <= 0 {
                entries[source] = nil
            } else {
                entries[source] = entry
            }
        }
    }

    var trackedAddresses: Int { entries.withLock { $0.count } }
}
