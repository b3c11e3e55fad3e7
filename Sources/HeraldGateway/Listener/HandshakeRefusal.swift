public import NIOHTTP1

/// Why a WebSocket handshake was refused, as the plain HTTP answer the spec gives for it
/// (docs/protocol.md §2: refusals happen before the upgrade). This is the one place statuses are chosen.
public struct HandshakeRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        let status: HTTPResponseStatus
        public var description: String { name }

        public static let missingToken = Code(name: "missing-token", status: .unauthorized)
        public static let invalidToken = Code(name: "invalid-token", status: .unauthorized)
        public static let expiredToken = Code(name: "expired-token", status: .unauthorized)
        /// Issued before a kick with revocation of its user: a newer token is needed.
        public static let revokedToken = Code(name: "revoked-token", status: .unauthorized)
        public static let originNotAllowed = Code(name: "origin-not-allowed", status: .forbidden)
        public static let channelNotAllowed = Code(name: "channel-not-allowed", status: .forbidden)
        public static let cursorNotAllowed = Code(name: "cursor-not-allowed", status: .forbidden)
        public static let badRequest = Code(name: "bad-request", status: .badRequest)
        public static let notFound = Code(name: "not-found", status: .notFound)
        /// 503 rather than 429: shedding load during a reconnect storm is the node's condition, not the
        /// client's fault, and clients treat 503 + Retry-After as "another node or later".
        public static let rateLimited = Code(name: "rate-limited", status: .serviceUnavailable)
        public static let atCapacity = Code(name: "at-capacity", status: .serviceUnavailable)
        public static let draining = Code(name: "draining", status: .serviceUnavailable)
        public static let notReady = Code(name: "not-ready", status: .serviceUnavailable)
        /// 429: one source address over its own handshake limits is that client's doing.
        public static let sourceRateLimited = Code(name: "source-rate-limited", status: .tooManyRequests)
    }

    public let code: Code
    public let message: String
    /// Seconds, for `Retry-After` on 503.
    public let retryAfter: Int?

    public init(_ code: Code, _ message: String, retryAfter: Int? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    public var status: HTTPResponseStatus { code.status }
    public var description: String { "\(code.status.code) \(code): \(message)" }
}
