import Synchronization

/// Remembers the answer to each push id for a while, so a client that retries (after a timeout, a
/// dropped connection) gets the first answer and the message is not produced twice. A second request
/// with an id whose first is still in flight waits for that one's outcome.
final class IdempotencyCache: Sendable {
    private enum Entry {
        case pending([CheckedContinuation<PushOutcome?, Never>])
        case done(PushOutcome, expires: ContinuousClock.Instant)
    }

    enum Claim {
        /// This request owns the id: produce, then `finish` it.
        case owner
        /// An earlier request with this id already answered (or just did).
        case answered(PushOutcome)
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let lifetime: Duration
    private let maxEntries: Int

    init(lifetime: Duration = .seconds(300), maxEntries: Int = 200_000) {
        self.lifetime = lifetime
        self.maxEntries = maxEntries
    }

    func claim(_ id: String) async -> Claim {
        enum Step { case owner, answered(PushOutcome), wait }
        let now = ContinuousClock.now
        let step: Step = entries.withLock { entries in
            switch entries[id] {
            case .done(let outcome, let expires) where expires > now:
                return .answered(outcome)
            case .pending:
                return .wait
            default:
                entries[id] = .pending([])
                return .owner
            }
        }
        switch step {
        case .owner: return .owner
        case .answered(let outcome): return .answered(outcome)
        case .wait:
            let outcome = await withCheckedContinuation { continuation in
                let immediate: PushOutcome?? = entries.withLock { entries in
                    switch entries[id] {
                    case .pending(var waiters):
                        waiters.append(continuation)
                        entries[id] = .pending(waiters)
                        return .none
                    case .done(let outcome, _):
                        return .some(outcome)
                    case nil:
                        return .some(nil)
                    }
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
            // The first request failed (nothing was acknowledged): this one tries itself.
            guard let outcome else { return await claim(id) }
            return .answered(outcome)
        }
    }

    /// Records the owner's outcome: a success is remembered; a failure is forgotten, so a retry produces.
    func finish(_ id: String, with outcome: PushOutcome?) {
        let now = ContinuousClock.now
        let waiters: [CheckedContinuation<PushOutcome?, Never>] = entries.withLock { entries in
            guard case .pending(let waiters) = entries[id] else { return [] }
            if let outcome {
                entries[id] = .done(outcome, expires: now + lifetime)
            } else {
                entries[id] = nil
            }
            if entries.count > maxEntries {
                entries = entries.filter { if case .done(_, let expires) = $0.value { expires > now } else { true } }
            }
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }
}
