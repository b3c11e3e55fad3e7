/// The optional `herald-*` record headers (docs/protocol.md §1), and one header as it travels on a record.
public struct HeraldHeader: Hashable, Sendable {
    public var name: String
    public var value: [UInt8]

    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(name: String, string: String) {
        self.init(name: name, value: Array(string.utf8))
    }

    public var stringValue: String? { String(validating: value, as: UTF8.self) }

    public static let kind = "herald-kind"
    public static let id = "herald-id"
    /// Whose id `herald-id` is (the push API writes a digest of the API key): ids of different
    /// scopes are different messages, even in one stream.
    public static let idScope = "herald-id-scope"
    public static let contentType = "herald-content-type"
    public static let exclude = "herald-exclude"
    public static let expiresAt = "herald-expires-at"
    /// A control record (not a message): `disconnect` on a user's key closes that user's connections.
    public static let control = "herald-control"
    /// On a `disconnect` control record: Unix milliseconds; the user's tokens issued before it are
    /// refused by every node (a kick with revocation).
    public static let revokeBefore = "herald-revoke-before"
    /// On the upstream topic: the publishing connection's session, device and node.
    public static let session = "herald-session"
    public static let device = "herald-device"
    public static let node = "herald-node"
    /// On a record a client published into a channel: the publisher's user id (from its token).
    public static let user = "herald-user"
    /// On the upstream topic: the channel a client published into.
    public static let channel = "herald-channel"
}

/// What a record's payload is, from `herald-content-type`.
public enum HeraldContentType: String, Sendable, CaseIterable {
    case json = "application/json"
    case text = "text/plain"
    case binary = "application/octet-stream"
}
