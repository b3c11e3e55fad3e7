import Synchronization

/// Whether the node takes another connection: the connection cap, the accept rate (a token bucket),
/// and draining. Refusals carry `Retry-After`, so clients back off instead of hammering.
public final class Admission: Sendable {
    private struct State {
        var open = 0
        var accepts: TokenBucket
        var draining = false
    }

    /// Rate-limited handshakes are told to retry after 1 to this many seconds.
    static let maxRateRetrySeconds = 5
    public let maxConnections: Int
    public let acceptsPerSecond: Double
    private let state: Mutex<State>

    public init(maxConnections: Int, acceptsPerSecond: Double) {
        self.maxConnections = maxConnections
        self.acceptsPerSecond = acceptsPerSecond
        state = Mutex(State(accepts: TokenBucket(rate: acceptsPerSecond, now: .now)))
    }

    /// Whether a handshake is worth verifying at all: cheap refusals that spend nothing.
    func precheck() -> HandshakeRefusal? {
        state.withLock { closed($0) }
    }

    /// Takes a connection slot for a handshake whose token was verified, or says why not. The slot
    /// gives itself back.
    func admit() -> Result<AdmissionSlot, HandshakeRefusal> {
        let refusal = state.withLock { state -> HandshakeRefusal? in
            if let refusal = closed(state) { return refusal }
            guard state.accepts.take(now: .now) else {
                // A reconnect storm is what trips this: a spread of Retry-After values turns one wave of
                // retries into several, where the same value for everyone would send the wave back whole.
                return HandshakeRefusal(
                    .rateLimited, "more than \(Int(acceptsPerSecond)) connections per second; retry later",
                    retryAfter: Int.random(in: 1...Self.maxRateRetrySeconds)
                )
            }
            state.open += 1
            return nil
        }
        if let refusal { return .failure(refusal) }
        return .success(AdmissionSlot(self))
    }

    /// Draining or full.
    private func closed(_ state: State) -> HandshakeRefusal? {
        if state.draining {
            return HandshakeRefusal(.draining, "this node is draining; connect to another", retryAfter: 1)
        }
        if state.open >= maxConnections {
            return HandshakeRefusal(.atCapacity, "this node holds its maximum of \(maxConnections) connections", retryAfter: 5)
        }
        return nil
    }

    /// Only `AdmissionSlot`, or the connection it handed its place to, calls this, once per place.
    func returnSlot() {
        state.withLock { $0.open -= 1 }
    }

    public func startDraining() {
        state.withLock { $0.draining = true }
    }

    public var openConnections: Int { state.withLock { $0.open } }
    public var isDraining: Bool { state.withLock { $0.draining } }
}
