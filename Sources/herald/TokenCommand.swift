import ArgumentParser
import Foundation
import HeraldGateway

/// Mints a connection token with the node's HS256 secret, for development and tests.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Mint an HS256 connection token (HERALD_JWT_SECRET or --jwt-secret)."
    )

    @Option(help: "The user id (sub).") var user: String
    @Option(help: "The device id.") var device: String?
    @Option(help: "Channels the token grants, comma-separated.") var channels: String?
    @Option(help: "Lifetime: 90s, 30m, 12h or 7d.") var ttl = "1h"
    @Option(help: "HS256 secret. Env: HERALD_JWT_SECRET.") var jwtSecret: String?
    @Option(help: "A file holding the HS256 secret. Env: HERALD_JWT_SECRET_FILE.") var jwtSecretFile: String?
    @Option(help: "Audience claim.") var audience: String?
    @Option(help: "Issuer claim.") var issuer: String?

    func run() async throws {
        let settings = Settings(environment: ProcessInfo.processInfo.environment)
        guard let secret = try settings.secret(jwtSecret, file: jwtSecretFile, "HERALD_JWT_SECRET") else {
            throw ValidationError("--jwt-secret, --jwt-secret-file, HERALD_JWT_SECRET or HERALD_JWT_SECRET_FILE is required")
        }
        let lifetime = try Self.seconds(ttl)
        let issuerKeys = try await TokenIssuer(hmacSecret: secret)
        let token = try await issuerKeys.token(
            user: user, device: device,
            channels: (channels ?? "").split(separator: ",").map(String.init),
            expiresAt: Date().addingTimeInterval(lifetime), audience: audience, issuer: issuer
        )
        print(token)
    }

    static func seconds(_ text: String) throws -> TimeInterval {
        let units: [Character: TimeInterval] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400]
        guard let unit = text.last, let multiplier = units[unit], let value = Double(text.dropLast()), value > 0 else {
            throw ValidationError("ttl \(text) is not like 90s, 30m, 12h or 7d")
        }
        return value * multiplier
    }
}
