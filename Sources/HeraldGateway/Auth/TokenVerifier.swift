public import Foundation
import JWTKit

/// Which keys verify connection tokens, and what else a token must satisfy.
public struct TokenConfiguration: Sendable {
    /// An HS256 secret (at least 32 bytes).
    public var hmacSecret: String?
    /// RS256 or ES256 public keys in PEM, each with the `kid` that selects it. The first is also the
    /// default for tokens without `kid` when there is no HMAC secret.
    public var publicKeys: [(kid: String, pem: String)]
    /// When set, `aud` must include it.
    public var audience: String?
    /// When set, `iss` must equal it.
    public var issuer: String?
    /// Clock skew tolerated for `exp`, `nbf` and `iat`.
    public var leeway: Duration
    /// When set, a token may live at most this long: `exp - iat` (or `exp - now` without `iat`).
    public var maxLifetime: Duration?
    /// How long a revocation (a kick with `revoke=true`) stays in force when no maximum lifetime is
    /// configured; with one, revocations last exactly that long (every token they refuse has expired).
    public var revocationHorizon: Duration

    public init(hmacSecret: String? = nil, publicKeys: [(kid: String, pem: String)] = [], audience: String? = nil,
                issuer: String? = nil, leeway: Duration = .seconds(30), maxLifetime: Duration? = nil,
                revocationHorizon: Duration = .seconds(86_400)) {
        self.hmacSecret = hmacSecret
        self.publicKeys = publicKeys
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.maxLifetime = maxLifetime
        self.revocationHorizon = revocationHorizon
    }
}

/// Verifies connection tokens. Only HS256, RS256 and ES256 are accepted, and a token's `alg` must be
/// the algorithm of the key that verifies it: `alg: none` and algorithm confusion (an HS256 token
/// "signed" with a public key) are refused before any signature is computed.
public final class TokenVerifier: Sendable {
    private let keys: JWTKeyCollection
    /// The algorithm of each key, by kid; `nil` kid is the default key.
    private let algorithms: [String?: String]
    private let configuration: TokenConfiguration
    /// Users whose tokens issued before some instant are refused (kicks with revocation).
    public let revocations: RevocationList

    public init(configuration: TokenConfiguration) async throws {
        self.configuration = configuration
        self.revocations = RevocationList(horizon: configuration.maxLifetime ?? configuration.revocationHorizon)
        if let maxLifetime = configuration.maxLifetime, maxLifetime <= .zero {
            throw TokenConfigurationError("the maximum token lifetime must be positive")
        }
        let keys = JWTKeyCollection()
        var algorithms: [String?: String] = [:]
        if let secret = configuration.hmacSecret {
            guard secret.utf8.count >= 32 else {
                throw TokenConfigurationError("the HS256 secret must be at least 32 bytes")
            }
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
            algorithms[nil] = "HS256"
        }
        for (index, entry) in configuration.publicKeys.enumerated() {
            let makeDefault = index == 0 && configuration.hmacSecret == nil
            let kid = JWKIdentifier(string: entry.kid)
            if let key = try? ES256PublicKey(pem: entry.pem) {
                await keys.add(ecdsa: key, kid: kid)
                if makeDefault { await keys.add(ecdsa: key) }
                algorithms[entry.kid] = "ES256"
                if makeDefault { algorithms[nil] = "ES256" }
            } else if let key = try? Insecure.RSA.PublicKey(pem: entry.pem) {
                await keys.add(rsa: key, digestAlgorithm: .sha256, kid: kid)
                if makeDefault { await keys.add(rsa: key, digestAlgorithm: .sha256) }
                algorithms[entry.kid] = "RS256"
                if makeDefault { algorithms[nil] = "RS256" }
            } else {
                throw TokenConfigurationError("public key \(entry.kid) is neither an RSA nor a P-256 public key in PEM")
            }
        }
        guard !algorithms.isEmpty else {
            throw TokenConfigurationError("no token key configured: give an HS256 secret or a public key")
        }
        self.keys = keys
        self.algorithms = algorithms
    }

    public func verify(_ token: String, now: Date = Date()) async throws(HandshakeRefusal) -> Identity {
        let header = try Self.header(of: token)
        guard let alg = header.alg, alg.lowercased() != "none" else {
            throw HandshakeRefusal(.invalidToken, "unsigned tokens (alg none) are not accepted")
        }
        // An unknown kid falls back to the default key, as the key collection itself does.
        guard let expected = algorithms[header.kid] ?? algorithms[nil] else {
            throw HandshakeRefusal(.invalidToken, header.kid.map { "no key with kid \($0)" } ?? "no default key")
        }
        guard alg == expected else {
            throw HandshakeRefusal(.invalidToken, "token algorithm \(alg) does not match its key's \(expected)")
        }

        let claims: HeraldClaims
        do {
            claims = try await keys.verify(token, as: HeraldClaims.self)
        } catch {
            throw HandshakeRefusal(.invalidToken, "the token's signature or claims are invalid")
        }

        // Every time below is range-checked first, so the arithmetic and conversions cannot trap.
        let nowSeconds = now.timeIntervalSince1970
        let leeway = Double(configuration.leeway.components.seconds)
        guard let exp = try Self.seconds(claims.exp, "exp") else {
            throw HandshakeRefusal(.invalidToken, "exp is required")
        }
        let nbf = try Self.seconds(claims.nbf, "nbf")
        let iat = try Self.seconds(claims.iat, "iat")
        guard nowSeconds - exp < leeway else {
            throw HandshakeRefusal(.expiredToken, "the token expired at \(Int64(exp)) (exp)")
        }
        if let nbf, nbf - nowSeconds > leeway {
            throw HandshakeRefusal(.invalidToken, "the token is not valid before \(Int64(nbf)) (nbf)")
        }
        if let iat, iat - nowSeconds > leeway {
            throw HandshakeRefusal(.invalidToken, "iat is in the future: the token was issued at \(Int64(iat))")
        }
        if let maxLifetime = configuration.maxLifetime {
            let limit = Double(maxLifetime.components.seconds)
            let start = iat ?? nowSeconds
            if exp - start > limit + leeway {
                throw HandshakeRefusal(
                    .invalidToken,
                    "exp is \(Int64(exp - start)) s after \(iat == nil ? "now (no iat)" : "iat"); the maximum token lifetime is \(Int64(limit)) s"
                )
            }
        }
        // Configured values are not echoed: an anonymous client learns that its claim is wrong, not
        // what this node expects.
        if let audience = configuration.audience {
            guard let aud = claims.aud, aud.value.contains(audience) else {
                throw HandshakeRefusal(.invalidToken, "aud is missing or does not name this service")
            }
        }
        if let issuer = configuration.issuer, claims.iss?.value != issuer {
            throw HandshakeRefusal(.invalidToken, "iss is missing or is not an issuer this service accepts")
        }
        let user = claims.sub.value
        guard !user.isEmpty, user.utf8.count <= 256, user != "*" else {
            throw HandshakeRefusal(.invalidToken, "sub must be a user id of 1 to 256 bytes, and not \"*\"")
        }
        let nowMillis = Int64((nowSeconds * 1000).rounded(.down))
        if let revokedBefore = revocations.revokedBefore(user: user, now: nowMillis) {
            // A token without iat cannot show it is newer than the revocation.
            guard let iat, iat * 1000 >= Double(revokedBefore) else {
                throw HandshakeRefusal(.revokedToken, "the token was revoked (issued before \(revokedBefore) ms): get a new token")
            }
        }
        let expiresAt = Int64((exp * 1000).rounded(.down))
        return Identity(userID: user, deviceID: claims.device, channels: Set(claims.channels ?? []), expiresAt: expiresAt)
    }

    /// The latest NumericDate accepted: 9999-12-31T23:59:59Z. Milliseconds (about 1.8e12 today) and
    /// nanoseconds are far above it.
    static let latestSeconds: Double = 253_402_300_799

    private static func seconds(_ claim: TimeClaim?, _ name: String) throws(HandshakeRefusal) -> Double? {
        switch claim {
        case nil:
            return nil
        case .malformed:
            throw HandshakeRefusal(.invalidToken, "\(name) must be a NumericDate: a number of seconds since 1970")
        case .seconds(let value):
            guard value >= 0, value <= latestSeconds else {
                throw HandshakeRefusal(
                    .invalidToken,
                    "\(name) is out of range: a NumericDate is seconds since 1970 (not milliseconds or nanoseconds), from 0 to \(Int64(latestSeconds))"
                )
            }
            return value
        }
    }

    private struct Header: Decodable {
        var alg: String?
        var kid: String?
    }

    private static func header(of token: String) throws(HandshakeRefusal) -> Header {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let data = Data(base64URLEncoded: String(parts[0])),
              let header = try? JSONDecoder().decode(Header.self, from: data)
        else {
            throw HandshakeRefusal(.invalidToken, "the token is not a JWS compact serialization")
        }
        return header
    }
}

/// Mints HS256 connection tokens: `herald token`, `herald serve --dev` and tests.
public struct TokenIssuer: Sendable {
    private let keys: JWTKeyCollection

    public init(hmacSecret: String) async throws {
        guard hmacSecret.utf8.count >= 32 else { throw TokenConfigurationError("the HS256 secret must be at least 32 bytes") }
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: hmacSecret), digestAlgorithm: .sha256)
    }

    public func token(user: String, device: String? = nil, channels: [String] = [], expiresAt: Date,
                      audience: String? = nil, issuer: String? = nil) async throws -> String {
        let claims = HeraldClaims(
            sub: SubjectClaim(value: user), exp: .seconds(expiresAt.timeIntervalSince1970), nbf: nil,
            iat: .seconds(Date().timeIntervalSince1970), aud: audience.map { AudienceClaim(value: [$0]) },
            iss: issuer.map { IssuerClaim(value: $0) }, device: device, channels: channels.isEmpty ? nil : channels
        )
        return try await keys.sign(claims)
    }
}

public struct TokenConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension Data {
    init?(base64URLEncoded text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64.append("=") }
        self.init(base64Encoded: base64)
    }
}
