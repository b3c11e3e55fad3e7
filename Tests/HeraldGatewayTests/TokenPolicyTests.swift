import Foundation
import HeraldClient
import HeraldGateway
import JWTKit
import Testing

/// A claim value as an issuer may (mis)write it: a number or something else entirely.
enum RawClaimValue: Codable, Sendable {
    case number(Double)
    case text(String)

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Double.self) { self = .number(number) } else { self = .text(try container.decode(String.self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .number(let number): try container.encode(number)
        case .text(let text): try container.encode(text)
        }
    }
}

/// Claims with the time claims as raw JSON values, so that a test can sign what a careless issuer would.
struct RawTimeClaims: JWTPayload {
    var sub: String
    var exp: RawClaimValue?
    var nbf: RawClaimValue?
    var iat: RawClaimValue?
    var iss: String?
    var aud: [String]?
    func verify(using algorithm: some JWTAlgorithm) throws {}
}

func signRaw(_ claims: RawTimeClaims) async throws -> String {
    let keys = JWTKeyCollection()
    await keys.add(hmac: HMACKey(from: testSecret), digestAlgorithm: .sha256)
    return try await keys.sign(claims)
}

@Suite("Token policy: time claims range-checked, maximum lifetime, issuer and audience")
struct TokenPolicyTests {
    private func refusal(_ token: String, _ verifier: TokenVerifier) async -> HandshakeRefusal? {
        do {
            _ = try await verifier.verify(token)
            return nil
        } catch {
            return error
        }
    }

    @Test("a token with exp in nanoseconds is refused with 401 naming exp and the node stays up")
    func nanosecondExpAtALiveNode() async throws {
        try await GatewayHarness.run { node in
            let now = Date().timeIntervalSince1970
            let token = try await signRaw(RawTimeClaims(sub: "alice", exp: .number((now + 3_600) * 1e9)))
            do {
                let session = try await node.client.connect(token: token)
                session.close()
                Issue.record("a token with exp in nanoseconds was accepted")
            } catch let rejected as HandshakeRejected {
                #expect(rejected.status == 401)
                #expect(rejected.body.contains("exp"), "\(rejected.body)")
            }
            // The node is still up and serves a valid token.
            let alice = try await node.connect("alice")
            #expect(alice.welcome.session.isEmpty == false)
        }
    }

    @Test("exp, nbf and iat out of range or not numbers are 401 naming the claim, never a trap")
    func outOfRangeTimeClaims() async throws {
        let verifier = try await TokenVerifier(configuration: TokenConfiguration(hmacSecret: testSecret))
        let now = Date().timeIntervalSince1970
        let good = RawClaimValue.number(now + 600)
        let cases: [(String, RawTimeClaims)] = [
            ("exp", RawTimeClaims(sub: "a", exp: .number((now + 600) * 1_000))),
            ("exp", RawTimeClaims(sub: "a", exp: .number((now + 600) * 1e9))),
            ("exp", RawTimeClaims(sub: "a", exp: .number(-1))),
            ("exp", RawTimeClaims(sub: "a", exp: .number(1e300))),
            ("exp", RawTimeClaims(sub: "a", exp: .number(-1e300))),
            ("exp", RawTimeClaims(sub: "a", exp: .text("tomorrow"))),
            ("exp", RawTimeClaims(sub: "a", exp: nil)),
            ("nbf", RawTimeClaims(sub: "a", exp: good, nbf: .number(1e300))),
            ("nbf", RawTimeClaims(sub: "a", exp: good, nbf: .number(-5))),
            ("nbf", RawTimeClaims(sub: "a", exp: good, nbf: .text("now"))),
            ("iat", RawTimeClaims(sub: "a", exp: good, iat: .number(now * 1e9))),
            ("iat", RawTimeClaims(sub: "a", exp: good, iat: .number(-1e300))),
            ("iat", RawTimeClaims(sub: "a", exp: good, iat: .number(now + 3_000))),
            ("iat", RawTimeClaims(sub: "a", exp: good, iat: .text("x"))),
        ]
        for (claim, claims) in cases {
            let refused = await refusal(try await signRaw(claims), verifier)
            #expect(refused?.status.code == 401, "\(claims)")
            #expect(refused?.message.contains(claim) == true, "\(claims): \(refused?.message ?? "accepted")")
        }
        #expect(await refusal(try await signRaw(RawTimeClaims(sub: "a", exp: good, nbf: .number(now - 5), iat: .number(now - 5))), verifier) == nil)
    }

    @Test("with a maximum lifetime, a token living longer is 401 naming exp; within it, accepted")
    func maximumLifetime() async throws {
        let verifier = try await TokenVerifier(configuration: TokenConfiguration(hmacSecret: testSecret, maxLifetime: .seconds(3_600)))
        let now = Date().timeIntervalSince1970
        let long = await refusal(try await signRaw(RawTimeClaims(sub: "a", exp: .number(now + 7_200), iat: .number(now))), verifier)
        #expect(long?.status.code == 401 && long?.message.contains("exp") == true && long?.message.contains("lifetime") == true, "\(String(describing: long))")
        let noIssuedAt = await refusal(try await signRaw(RawTimeClaims(sub: "a", exp: .number(now + 7_200))), verifier)
        #expect(noIssuedAt?.status.code == 401, "without iat the lifetime counts from now")
        #expect(await refusal(try await signRaw(RawTimeClaims(sub: "a", exp: .number(now + 1_800), iat: .number(now))), verifier) == nil)
        // Off by default: a year-long token is fine.
        let lenient = try await TokenVerifier(configuration: TokenConfiguration(hmacSecret: testSecret))
        #expect(await refusal(try await signRaw(RawTimeClaims(sub: "a", exp: .number(now + 365 * 86_400))), lenient) == nil)
    }

    @Test("a refused issuer or audience is 401 without naming the configured issuer or audience")
    func refusalsDoNotLeakConfiguration() async throws {
        let verifier = try await TokenVerifier(configuration: TokenConfiguration(
            hmacSecret: testSecret, audience: "secret-audience", issuer: "https://internal-auth.corp.example"
        ))
        let now = Date().timeIntervalSince1970
        for token in [try await signRaw(RawTimeClaims(sub: "a", exp: .number(now + 60), iss: "https://evil.example", aud: ["secret-audience"])),
                      try await signRaw(RawTimeClaims(sub: "a", exp: .number(now + 60), aud: ["secret-audience"])),
                      try await signRaw(RawTimeClaims(sub: "a", exp: .number(now + 60), iss: "https://internal-auth.corp.example"))] {
            let refused = try #require(await refusal(token, verifier))
            #expect(refused.status.code == 401)
            #expect(!refused.message.contains("internal-auth") && !refused.message.contains("secret-audience"), "\(refused.message)")
        }
    }
}
