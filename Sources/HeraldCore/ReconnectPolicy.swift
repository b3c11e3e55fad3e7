/// What a client does after its connection ended, from the close code (PROTOCOL.md, close codes).
public enum CloseAction: String, Sendable, Equatable {
    /// Reconnect after a backoff and resume from the cursor.
    case resume
    /// Get a new token, then reconnect and resume (4009).
    case refreshToken = "refresh-token"
    /// Do not reconnect: replaced by a newer connection (4001), kicked (4003), a normal close, or a
    /// protocol error that a reconnect would repeat.
    case stop
}

/// How a client reconnects: which closes it reconnects after, and how long it waits (exponential
/// backoff with full jitter, so that clients dropped together come back spread out). The Swift
/// client and `clients/js/herald.js` follow the same rules.
public struct ReconnectPolicy: Sendable, Equatable {
    public var base: Duration
    public var cap: Duration
    /// Reconnect even after 4001 and 4003.
    public var reconnectAfterStop: Bool

    public init(base: Duration = .milliseconds(500), cap: Duration = .seconds(30), reconnectAfterStop: Bool = false) {
        self.base = base
        self.cap = cap
        self.reconnectAfterStop = reconnectAfterStop
    }

    /// `nil`: the connection ended without a close frame (network, a node killed): resume.
    public static func action(forClose code: UInt16?) -> CloseAction {
        switch code {
        case nil, 1001, 1006, 1011, 1012, 1013, 4008: .resume
        case 4009: .refreshToken
        default: .stop
        }
    }

    /// Whether to reconnect after `action`.
    public func reconnects(after action: CloseAction) -> Bool {
        action != .stop || reconnectAfterStop
    }

    /// The wait before attempt `attempt` (0-based): uniformly random below min(cap, base × 2^attempt).
    /// `unit` is a random number in [0, 1).
    public func delay(attempt: Int, unit: Double) -> Duration {
        let exponent = Double(1 << min(max(attempt, 0), 30))
        let ceiling = min(cap, base * exponent)
        return ceiling * min(max(unit, 0), 0.999_999)
    }
}
