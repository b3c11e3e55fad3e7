import ArgumentParser
import Foundation
import HeraldAPI

/// The control plane's options; each also reads a `HERALD_*` variable.
struct APIOptions: ParsableArguments {
    @Option(help: "Internal HTTP API port (push, presence, health). Env: HERALD_API_PORT. Default: 8081.")
    var apiPort: Int?

    @Option(help: "Address the API listens on. Env: HERALD_API_HOST. Default: 0.0.0.0.")
    var apiHost: String?

    @Option(help: "API keys, comma-separated. Env: HERALD_API_KEYS.")
    var apiKeys: String?

    @Option(help: "A file with one API key per line (a mounted Secret). Env: HERALD_API_KEYS_FILE.")
    var apiKeysFile: String?

    @Option(help: "Largest push payload in bytes. Env: HERALD_MAX_PAYLOAD. Default: 65536.")
    var maxPayload: Int?

    func configuration(devKey: String?, environment: [String: String]) throws -> ControlPlaneConfiguration {
        let settings = Settings(environment: environment)
        var keys = (settings.string(apiKeys, "HERALD_API_KEYS") ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        if let path = settings.string(apiKeysFile, "HERALD_API_KEYS_FILE") {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("cannot read the API keys file \(path)")
            }
            keys += text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        }
        keys = keys.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        if keys.isEmpty, let devKey { keys = [devKey] }
        guard !keys.isEmpty else {
            throw ValidationError("no API key: set --api-keys (HERALD_API_KEYS) or --api-keys-file, or run with --dev")
        }
        var configuration = ControlPlaneConfiguration(apiKeys: keys)
        configuration.port = try settings.number(apiPort, "HERALD_API_PORT") ?? 8081
        configuration.host = settings.string(apiHost, "HERALD_API_HOST") ?? "0.0.0.0"
        configuration.limits.maxPayloadBytes = try settings.number(maxPayload, "HERALD_MAX_PAYLOAD") ?? 64 * 1024
        return configuration
    }
}
