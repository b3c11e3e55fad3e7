/// The WebSocket close codes of the contract (docs/protocol.md, close codes), and what a client does
/// after each: the one table that the server's `Disconnect` catalogue, `ReconnectPolicy` and
/// `clients/js/herald.js` follow (a test holds the JS client to it).
public enum CloseCode: UInt16, Sendable, CaseIterable {
    case normal = 1000
    case goingAway = 1001
    case protocolError = 1002
    case invalidPayload = 1007
    case policyViolation = 1008
    case messageTooBig = 1009
    case internalError = 1011
    case restarting = 1012
    case overloaded = 1013
    case replaced = 4001
    case kicked = 4003
    case slowConsumer = 4008
    case tokenExpired = 4009

    /// What a client does after the server closed with this code.
    public var clientAction: CloseAction {
        switch self {
        case .goingAway, .internalError, .restarting, .overloaded, .slowConsumer: .resume
        case .tokenExpired: .refreshToken
        case .normal, .protocolError, .invalidPayload, .policyViolation, .messageTooBig, .replaced, .kicked: .stop
        }
    }

    /// What a client does after its connection ended with `code` in a close frame, or with none (`nil`,
    /// or 1006 as browsers report it: the network or a killed node). Codes outside the contract stop.
    public static func clientAction(forClose code: UInt16?) -> CloseAction {
        guard let code, code != 1006 else { return .resume }
        return CloseCode(rawValue: code)?.clientAction ?? .stop
    }

    /// Whether a peer may send `code` in a close frame (RFC 6455 §7.4): the defined codes that are
    /// meant for the wire, and 3000–4999 for libraries and applications.
    public static func isValidOnTheWire(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1011: true
        case 3000...4999: true
        default: false
        }
    }
}

/// What a client does after its connection ended.
public enum CloseAction: String, Sendable, Equatable, CaseIterable {
    /// Reconnect after a backoff and resume from the cursor.
    case resume
    /// Get a new token, then reconnect and resume (4009).
    case refreshToken = "refresh-token"
    /// Do not reconnect: replaced by a newer connection (4001), kicked (4003), a normal close, or a
    /// protocol error that a reconnect would repeat.
    case stop
}
