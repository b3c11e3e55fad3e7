/// The WebSocket close codes of PROTOCOL.md §2, and which of them a client should reconnect after.
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

    /// Whether a client should reconnect (with jittered backoff) and resume from its cursor.
    public var shouldReconnect: Bool {
        switch self {
        case .goingAway, .internalError, .restarting, .overloaded, .slowConsumer, .tokenExpired: true
        case .normal, .protocolError, .invalidPayload, .policyViolation, .messageTooBig, .replaced, .kicked: false
        }
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
