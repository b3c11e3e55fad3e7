import Synchronization

/// Remembers the answer to each push id for a while, so a client that retries (after a timeout, a
/// dropped connection) gets the first answer and the message is not produced twice.
///
/// An id belongs to the API key that used it and is bound to a digest of its push: the same id with
/// another body is a conflict, not a replay of the first answer. A request claims all its ids at once,
/// under one lock, and never waits: an id whose first push is still in flight is refused (409, retry
/// later), so no request waits on itself or on another that waits on it, and nothing pending can hold
/// a shutdown. A pending entry whose owner never finished expires after `pendingLifetime`.
final class IdempotencyCache: Sendable {
    struct Key: Hashable, Sendable {
        /// Which API key (its index in the configuration).
        var client: Int
        var id: String
    }

    /// A digest of everything a push produces (targets, payload, options), 128 bits.
    struct Digest: Hashable, Sendable {
        var high: Int
        var low: Int
    }

    private enum Entry {
        case pending(Digest, expires: ContinuousClock.Instant)
        case done(Digest, PushOutcome, expires: ContinuousClock.Instant)
    }

    enum Claim: Equatable {
        /// This request owns the id: produce, then `finish` it.
        case owner
        /// An earlier request with this id and this body already answered.
        case answered(PushOutcome)
    }

    /// Why a request's ids could not be claimed; nothing was claimed.
    enum Refusal: Error, Equatable {
        /// The id (at this index of the request) was used for a different push.
        case conflict(index: Int)
        /// The id's first push is still waiting for Kafka.
        case inFlight(index: Int)
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        /// Results held by remembered answers (a push to many users holds one per user).
        var results = 0
    }

    private let state = Mutex(State())
    private let lifetime: Duration
    private let pendingLifetime: Duration
    private let maxEntries: Int
    private let maxResults: Int

    /// Memory is bounded by `maxEntries` ids and `maxResults` remembered results: past them, expired
    /// entries are swept, and if that is not enough an answer is not remembered (a retry of it produces
    /// again, as it would after the lifetime).
    init(lifetime: Duration = .seconds(300), pendingLifetime: Duration = .seconds(120), maxEntries: Int = 200_000,
         maxResults: Int = 1_000_000) {
        self.lifetime = lifetime
        self.pendingLifetime = pendingLifetime
        self.maxEntries = maxEntries
        self.maxResults = maxResults
    }

    /// Claims every id of one request together: either all are claimed (each owned or answered), or
    /// none is and the first refusal is thrown. The caller guarantees the ids are distinct.
    func claim(_ ids: [(index: Int, key: Key, digest: Digest)]) throws(Refusal) -> [Claim] {
        let now = ContinuousClock.now
        let pendingLifetime = pendingLifetime
        return try state.withLock { state throws(Refusal) -> [Claim] in
            var claims: [Claim] = []
            claims.reserveCapacity(ids.count)
            for (index, key, digest) in ids {
                switch state.entries[key] {
                case .done(let first, let outcome, let expires) where expires > now:
                    guard first == digest else { throw Refusal.conflict(index: index) }
                    claims.append(.answered(outcome))
                case .pending(let first, let expires) where expires > now:
                    throw first == digest ? Refusal.inFlight(index: index) : Refusal.conflict(index: index)
                default:
                    claims.append(.owner)
                }
            }
            for ((_, key, digest), claim) in zip(ids, claims) where claim == .owner {
                if case .done(_, let expired, _) = state.entries[key] { state.results -= expired.results.count }
                state.entries[key] = .pending(digest, expires: now + pendingLifetime)
            }
            if state.entries.count > maxEntries { Self.sweep(&state, now: now) }
            return claims
        }
    }

    /// Records the owners' outcomes: a success is remembered; a failure (nil) is forgotten, so a
    /// retry produces.
    func finish(_ finished: [(key: Key, outcome: PushOutcome?)]) {
        guard !finished.isEmpty else { return }
        let now = ContinuousClock.now
        let lifetime = lifetime
        let maxResults = maxResults
        let maxEntries = maxEntries
        state.withLock { state in
            for (key, outcome) in finished {
                guard case .pending(let digest, _) = state.entries[key] else { continue }
                guard let outcome else {
                    state.entries[key] = nil
                    continue
                }
                if state.results + outcome.results.count > maxResults || state.entries.count > maxEntries {
                    Self.sweep(&state, now: now)
                }
                if state.results + outcome.results.count > maxResults {
                    state.entries[key] = nil
                } else {
                    state.entries[key] = .done(digest, outcome, expires: now + lifetime)
                    state.results += outcome.results.count
                }
            }
        }
    }

    private static func sweep(_ state: inout State, now: ContinuousClock.Instant) {
        state.entries = state.entries.filter {
            switch $0.value {
            case .pending(_, let expires), .done(_, _, let expires): expires > now
            }
        }
        state.results = state.entries.values.reduce(0) { sum, entry in
            if case .done(_, let outcome, _) = entry { sum + outcome.results.count } else { sum }
        }
    }

    var count: Int { state.withLock { $0.entries.count } }
}
