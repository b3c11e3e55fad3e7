import JWTKit

/// The claims Herald reads from a connection token (PROTOCOL.md §2). Times are checked by
/// `TokenVerifier` with its leeway, not here.
struct HeraldClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var iat: IssuedAtClaim?
    var aud: AudienceClaim?
    var iss: IssuerClaim?
    var device: String?
    var channels: [String]?

    func verify(using algorithm: some JWTAlgorithm) throws {}
}

/// Who a verified token says the holder is.
public struct Identity: Sendable, Hashable {
    public var userID: String
    public var deviceID: String?
    /// Channels the holder may subscribe to.
    public var channels: Set<String>
    /// Unix milliseconds at which the token, and so the connection, expires.
    public var expiresAt: Int64

    public init(userID: String, deviceID: String?, channels: Set<String>, expiresAt: Int64) {
        self.userID = userID
        self.deviceID = deviceID
        self.channels = channels
        self.expiresAt = expiresAt
    }
}
