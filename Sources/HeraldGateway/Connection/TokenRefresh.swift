/// Whether a `refresh`'s verified token may replace a connection's (docs/protocol.md §5). The token was
/// verified as a handshake's is (signature, `exp`, `nbf`, `iat`, audience, issuer, lifetime, revocation);
/// here it must also be the same user's and the same device's, since the connection's user stream,
/// presence and publishes are keyed by them, and must not have expired already.
enum TokenRefresh {
    enum Decision: Equatable {
        case accepted(Identity)
        /// An `error` frame: `code` is the handshake's refusal code where there is one.
        case refused(code: String, reason: String)
    }

    static func decide(_ verified: Result<Identity, HandshakeRefusal>, for connection: Connection, now: Int64) -> Decision {
        decide(verified, user: connection.userID, device: connection.deviceID, now: now)
    }

    static func decide(_ verified: Result<Identity, HandshakeRefusal>, user: String, device: String?, now: Int64) -> Decision {
        let identity: Identity
        switch verified {
        case .failure(let refusal): return .refused(code: refusal.code.name, reason: "refresh refused: \(refusal.message)")
        case .success(let verified): identity = verified
        }
        guard identity.userID == user else {
            return .refused(code: "wrong-user", reason: "refresh refused: the token is for another user than this connection's")
        }
        guard identity.deviceID == device else {
            return .refused(code: "wrong-user", reason: "refresh refused: the token is for another device than this connection's")
        }
        // The verifier allows clock skew past `exp`; a connection does not: it would close at once.
        guard identity.expiresAt > now else {
            return .refused(code: "expired-token", reason: "refresh refused: the token expired at \(identity.expiresAt / 1_000) (exp)")
        }
        return .accepted(identity)
    }
}
