import HeraldCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Per user, "tokens issued before this instant are refused": what a kick with revocation leaves
/// behind on every node (the control record on the events topic carries it; the node that answered
/// the kick records it at once as well).
///
/// Bounded: an entry is dropped `horizon` after its instant (the maximum token lifetime when one is
/// configured, so every token it refuses has expired by then anyway), and past `maxEntries` the oldest
/// entries go first.
public final class RevocationList: Sendable {
    private struct State {
        var before: [String: Int64] = [:]
        var insertsSinceSweep = 0
    }

    private let state = Mutex(State())
    public let horizonMillis: Int64
    public let maxEntries: Int

    public init(horizon: Duration = .seconds(86_400), maxEntries: Int = 100_000) {
        let seconds = max(1, horizon.components.seconds)
        self.horizonMillis = seconds > Int64.max / 1_000 ? Int64.max / 2 : seconds * 1_000
        self.maxEntries = max(1, maxEntries)
    }

    /// Refuses the user's tokens issued before `before` (Unix ms). A later revocation of the same user
    /// moves the instant forward; an earlier one changes nothing.
    /// An instant more than a minute ahead of this node's clock (beyond any skew between nodes) is ignored.
    public func revoke(user: String, before: Int64, now: Int64) {
        guard before >= 0, now >= 0, before <= now + 60_000, now - before < horizonMillis else { return }
        state.withLock { state in
            state.before[user] = max(state.before[user] ?? .min, before)
            state.insertsSinceSweep += 1
            if state.before.count > maxEntries || state.insertsSinceSweep >= 1_024 {
                state.insertsSinceSweep = 0
                let horizon = horizonMillis
                state.before = state.before.filter { now - $0.value < horizon }
                if state.before.count > maxEntries {
                    let keep = state.before.sorted { $0.value > $1.value }.prefix(maxEntries)
                    state.before = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
                }
            }
        }
    }

    /// The instant before which the user's tokens are refused, if any is in force.
    public func revokedBefore(user: String, now: Int64) -> Int64? {
        state.withLock { state in
            guard let before = state.before[user] else { return nil }
            guard now - before < horizonMillis else {
                state.before[user] = nil
                return nil
            }
            return before
        }
    }

    public var count: Int { state.withLock { $0.before.count } }

    public static func nowMillis() -> Int64 { WallClock.system.nowMillis() }
}
