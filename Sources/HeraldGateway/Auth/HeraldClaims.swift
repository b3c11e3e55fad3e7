import JWTKit

/// The claims Herald reads from a connection token (docs/protocol.md §2). Times are read as the raw numbers
/// the issuer wrote and range-checked by `TokenVerifier`, so that a token from a careless issuer (exp in
/// milliseconds or nanoseconds, a string, a huge number) is a 401 naming the claim, never a trap in a
/// conversion.
struct HeraldClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: TimeClaim?
    var nbf: TimeClaim?
    var iat: TimeClaim?
    var aud: AudienceClaim?
    var iss: IssuerClaim?
    var device: String?
    var channels: [String]?

    func verify(using algorithm: some JWTAlgorithm) throws {}
}

/// A NumericDate claim as the token carries it: a finite JSON number, or anything else (kept, so the
/// verifier can say which claim is wrong instead of failing the whole payload).
enum TimeClaim: Codable, Sendable, Equatable {
    case seconds(Double)
    case malformed

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Double.self), value.isFinite {
            self = .seconds(value)
        } else {
            self = .malformed
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .seconds(let value): try container.encode(value)
        case .malformed: try container.encodeNil()
        }
    }
}

/// Who a verified token says the holder is.
public struct Identity: Sendable, Hashable {
    public var userID: String
    public var deviceID: String?
    /// Channels the holder may subscribe to.
    public var channels: Set<String>
    /// Unix milliseconds at which the token, and so the connection, expires.
    public var expiresAt: Int64

    /// A connection without a token (only where a namespace allows them): no user, no grants, no
    /// expiry. Its user id is empty, which no token can carry (`sub` must be 1 to 256 bytes).
    public static let anonymous = Identity(userID: "", deviceID: nil, channels: [], expiresAt: .max)

    public var isAnonymous: Bool { userID.isEmpty }

    public init(userID: String, deviceID: String?, channels: Set<String>, expiresAt: Int64) {
        self.userID = userID
        self.deviceID = deviceID
        self.channels = channels
        self.expiresAt = expiresAt
    }
}
