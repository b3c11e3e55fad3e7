/// Every close the server initiates, in one place: its code, the reason sent in the close frame, and
/// what the client does after it (from `CloseCode`'s table). Call sites name an entry; none writes a
/// code or a reason of its own.
public struct Disconnect: Sendable, Equatable, CustomStringConvertible {
    public let code: CloseCode
    public let reason: String
    /// A protocol violation (RFC 6455 §7.1.7): the TCP connection is closed as soon as the close frame
    /// is written, without waiting for the peer's close.
    public let failsConnection: Bool

    public var clientAction: CloseAction { code.clientAction }
    public var description: String { "\(code.rawValue) \(reason)" }

    init(_ code: CloseCode, _ reason: String, failsConnection: Bool = false) {
        self.code = code
        self.reason = reason
        self.failsConnection = failsConnection
    }

    // Lifecycle: the client reconnects and resumes.
    public static let slowConsumer = Disconnect(.slowConsumer, "outbound queue over its budget for too long; reconnect and resume")
    public static let slowConsumerOverflow = Disconnect(.slowConsumer, "outbound queue over its hard limit; reconnect and resume")
    public static let restarting = Disconnect(.restarting, "node draining; reconnect and resume")
    public static let shuttingDown = Disconnect(.restarting, "node shutting down; reconnect and resume")
    public static let replayUnavailable = Disconnect(.overloaded, "the replay cannot be read now; reconnect later with the same cursor")
    public static let tokenExpired = Disconnect(.tokenExpired, "the token expired")
    /// The live consumer found records of a partition deleted by retention before it read them: the
    /// client resumes, and is told `recovered:false, reason:"expired"`.
    public static let recordsExpiredUnread = Disconnect(.restarting, "messages expired in Kafka before this node delivered them; reconnect and resume")
    /// A partition's log now ends before this node's position (truncated, or the topic recreated).
    public static let logCutShort = Disconnect(.restarting, "the Kafka log was cut short; reconnect and resume")
    /// The events topic changed under the node (partitions added, or recreated): positions and cursors
    /// of the old epoch mean nothing; clients resume against the new one.
    public static let topicChanged = Disconnect(.restarting, "the events topic changed; reconnect and resume against its new epoch")

    // Decisions about the user: the client stops.
    public static let replaced = Disconnect(.replaced, "replaced by a newer connection of the same user")
    public static let kicked = Disconnect(.kicked, "disconnected by the push API")
    public static let restartRequested = Disconnect(.restarting, "restart requested; reconnect and resume")

    // Protocol violations: reconnecting would repeat them.
    public static let tooManyInvalidMessages = Disconnect(.policyViolation, "too many invalid frames", failsConnection: true)
    public static let tooManyMessages = Disconnect(.policyViolation, "too many messages per second", failsConnection: true)
    public static let publishAbuse = Disconnect(.policyViolation, "publishing on after slow-down", failsConnection: true)
    public static func protocolError(_ reason: String) -> Disconnect { Disconnect(.protocolError, reason, failsConnection: true) }
    public static func invalidPayload(_ reason: String) -> Disconnect { Disconnect(.invalidPayload, reason, failsConnection: true) }
    public static func messageTooBig(limit: Int) -> Disconnect {
        Disconnect(.messageTooBig, "messages are limited to \(limit) bytes", failsConnection: true)
    }
}
