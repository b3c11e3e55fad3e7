/// How a client reconnects: which closes it reconnects after, and how long it waits (exponential
/// backoff with full jitter, so that clients dropped together come back spread out). Which closes it
/// reconnects after is `CloseCode`'s table, which `clients/js/herald.js` follows too.
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
        CloseCode.clientAction(forClose: code)
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
