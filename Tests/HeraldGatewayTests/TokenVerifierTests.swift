import Foundation
import HeraldGateway
import JWTKit
import Testing

/// A payload shaped like Herald's claims, for tokens a test signs itself.
struct TestClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var aud: AudienceClaim?
    var iss: IssuerClaim?
    var device: String?
    var channels: [String]?
    func verify(using algorithm: some JWTAlgorithm) throws {}
}

func hs256(_ claims: TestClaims, secret: String = testSecret) async throws -> String {
    let keys = JWTKeyCollection()
    await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    return try await keys.sign(claims)
}

func claims(_ user: String = "alice", expiresIn: TimeInterval = 600, channels: [String]? = nil) -> TestClaims {
    TestClaims(sub: SubjectClaim(value: user), exp: ExpirationClaim(value: Date().addingTimeInterval(expiresIn)), channels: channels)
}

func base64URL(_ text: String) -> String {
    Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

@Suite("Token verification: accepted algorithms, claims, refusals")
struct TokenVerifierTests {
    let verifier: TokenVerifier

    init() async throws {
        verifier = try await TokenVerifier(configuration: TokenConfiguration(hmacSecret: testSecret, audience: nil, issuer: nil))
    }

    private func refusal(_ token: String, verifier: TokenVerifier? = nil) async -> HandshakeRefusal? {
        do {
            _ = try await (verifier ?? self.verifier).verify(token)
            return nil
        } catch {
            return error
        }
    }

    @Test func validTokenGivesIdentity() async throws {
        var payload = claims(channels: ["news", "sports"])
        payload.device = "phone"
        let identity = try await verifier.verify(try await hs256(payload))
        #expect(identity.userID == "alice" && identity.deviceID == "phone" && identity.channels == ["news", "sports"])
        #expect(abs(Double(identity.expiresAt) / 1000 - payload.exp.value.timeIntervalSince1970) < 1)
    }

    @Test func expiredWrongKeyNoneAndGarbageAre401() async throws {
        #expect(await refusal(try await hs256(claims(expiresIn: -120)))?.code == .expiredToken)
        #expect(await refusal(try await hs256(claims(), secret: "another-secret-that-is-also-32-bytes-long"))?.code == .invalidToken)
        let none = base64URL(#"{"alg":"none","typ":"JWT"}"#) + "." + base64URL(#"{"sub":"alice","exp":9999999999}"#) + "."
        #expect(await refusal(none)?.code == .invalidToken)
        #expect(await refusal("not-a-token")?.code == .invalidToken)
        #expect(await refusal(try await hs256(claims("*")))?.code == .invalidToken, "the broadcast key is no user id")
        for refused in [none, "not-a-token"] {
            #expect(await refusal(refused)?.status.code == 401)
        }
    }

    @Test func leewayToleratesSmallSkewOnly() async throws {
        #expect(await refusal(try await hs256(claims(expiresIn: -10))) == nil, "10 s past exp is within the 30 s leeway")
        var early = claims()
        early.nbf = NotBeforeClaim(value: Date().addingTimeInterval(300))
        #expect(await refusal(try await hs256(early))?.code == .invalidToken)
    }

    @Test func audienceAndIssuerWhenConfigured() async throws {
        let strict = try await TokenVerifier(configuration: TokenConfiguration(hmacSecret: testSecret, audience: "herald", issuer: "auth.example"))
        var good = claims()
        good.aud = AudienceClaim(value: ["herald"])
        good.iss = IssuerClaim(value: "auth.example")
        #expect(await refusal(try await hs256(good), verifier: strict) == nil)
        var wrongAudience = good
        wrongAudience.aud = AudienceClaim(value: ["other"])
        #expect(await refusal(try await hs256(wrongAudience), verifier: strict)?.code == .invalidToken)
        var wrongIssuer = good
        wrongIssuer.iss = IssuerClaim(value: "evil.example")
        #expect(await refusal(try await hs256(wrongIssuer), verifier: strict)?.code == .invalidToken)
        #expect(await refusal(try await hs256(claims()), verifier: strict)?.code == .invalidToken, "a missing aud is refused")
    }

    @Test("ES256 verifies with its public key; an HS256 token keyed with that public key (algorithm confusion) is refused")
    func publicKeysAndConfusion() async throws {
        let privateKey = ES256PrivateKey()
        let publicPEM = privateKey.publicKey.pemRepresentation
        let verifier = try await TokenVerifier(configuration: TokenConfiguration(publicKeys: [(kid: "main", pem: publicPEM)]))

        let signer = JWTKeyCollection()
        await signer.add(ecdsa: privateKey, kid: "main")
        let es256 = try await signer.sign(claims(), kid: "main")
        #expect(try await verifier.verify(es256).userID == "alice")

        let confused = try await hs256(claims(), secret: publicPEM)
        #expect(await refusal(confused, verifier: verifier)?.code == .invalidToken)
    }

    @Test("RS256 verifies with its public key (the key pair comes from openssl); its HS256 confusion is refused")
    func rs256() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("herald-rsa-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let privatePath = directory.appendingPathComponent("private.pem").path
        let publicPath = directory.appendingPathComponent("public.pem").path
        for arguments in [["genrsa", "-out", privatePath, "2048"], ["rsa", "-in", privatePath, "-pubout", "-out", publicPath]] {
            let process = Process()
            let openssl = try requiredTool("openssl", package: "Debian's openssl")
            process.executableURL = URL(fileURLWithPath: openssl)
            process.arguments = arguments
            process.standardError = Pipe()
            try process.run()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
        }
        let publicPEM = try String(contentsOfFile: publicPath, encoding: .utf8)
        let verifier = try await TokenVerifier(configuration: TokenConfiguration(publicKeys: [(kid: "rsa", pem: publicPEM)]))
        let signer = JWTKeyCollection()
        await signer.add(rsa: try Insecure.RSA.PrivateKey(pem: try String(contentsOfFile: privatePath, encoding: .utf8)), digestAlgorithm: .sha256, kid: "rsa")
        let rs256 = try await signer.sign(claims("rosa"), kid: "rsa")
        #expect(try await verifier.verify(rs256).userID == "rosa")
        #expect(await refusal(try await hs256(claims(), secret: publicPEM), verifier: verifier)?.code == .invalidToken)
    }

    @Test func configurationErrors() async throws {
        await #expect(throws: (any Error).self) { _ = try await TokenVerifier(configuration: TokenConfiguration(hmacSecret: "short")) }
        await #expect(throws: (any Error).self) { _ = try await TokenVerifier(configuration: TokenConfiguration()) }
        await #expect(throws: (any Error).self) {
            _ = try await TokenVerifier(configuration: TokenConfiguration(publicKeys: [(kid: "x", pem: "not a pem")]))
        }
    }
}
