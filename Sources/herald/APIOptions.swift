import ArgumentParser
import Foundation
import HeraldAPI
import HeraldGateway

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

    @Option(help: "Most records one push or batch request makes (one per target). Env: HERALD_MAX_PUSH_RECORDS. Default: 10000.")
    var maxPushRecords: Int?

    @Option(help: "Most bytes of records one request makes (payload × targets). Env: HERALD_MAX_PUSH_RECORD_BYTES. Default: 33554432.")
    var maxPushRecordBytes: Int?

    @Option(help: "Records per second each API key may push (0: no limit); more is 429. Env: HERALD_PUSH_RATE. Default: 20000.")
    var pushRate: Double?

    @Option(help: "Milliseconds a push this node accepted may wait for its fan-out before new pushes get 503 delivery-behind with Retry-After (0: no bound). Env: HERALD_PUSH_MAX_DELIVERY_DELAY. Default: 250.")
    var pushMaxDeliveryDelay: Int?

    @Option(help: "Seconds an internal-port connection may stay silent before it is closed. Env: HERALD_API_IDLE_TIMEOUT. Default: 30.")
    var apiIdleTimeout: Double?

    @Option(help: "PEM certificate chain for TLS on the internal port; reloaded when the file changes. Needs --api-tls-key-file. Env: HERALD_API_TLS_CERT_FILE. Default: plain HTTP.")
    var apiTlsCertFile: String?

    @Option(help: "PEM private key of --api-tls-cert-file. Env: HERALD_API_TLS_KEY_FILE.")
    var apiTlsKeyFile: String?

    @Option(help: "PEM CA certificates: the internal port then requires a client certificate signed by one of them. Env: HERALD_API_TLS_CLIENT_CA_FILE.")
    var apiTlsClientCaFile: String?

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
        configuration.limits.maxRecordsPerRequest = try settings.number(maxPushRecords, "HERALD_MAX_PUSH_RECORDS") ?? 10_000
        configuration.limits.maxRecordBytesPerRequest = try settings.number(maxPushRecordBytes, "HERALD_MAX_PUSH_RECORD_BYTES") ?? 32 * 1024 * 1024
        configuration.limits.recordsPerSecondPerKey = try settings.number(pushRate, "HERALD_PUSH_RATE") ?? 20_000
        let delay = try settings.number(pushMaxDeliveryDelay, "HERALD_PUSH_MAX_DELIVERY_DELAY") ?? 250
        guard (0...60_000).contains(delay) else {
            throw ValidationError("the push delivery-delay bound must be 0 (none) to 60000 ms; it is \(delay)")
        }
        configuration.limits.maxDeliveryDelayMillis = Int64(delay)
        let idle = try settings.number(apiIdleTimeout, "HERALD_API_IDLE_TIMEOUT") ?? 30
        guard configuration.limits.maxRecordsPerRequest >= 1, configuration.limits.maxRecordBytesPerRequest >= 1 else {
            throw ValidationError("the per-request record limits must be at least 1")
        }
        guard configuration.limits.recordsPerSecondPerKey >= 0, configuration.limits.recordsPerSecondPerKey.isFinite else {
            throw ValidationError("the push rate must be 0 (no limit) or a positive number of records per second")
        }
        guard idle.isFinite, idle > 0, idle <= 86_400 else { throw ValidationError("the API idle timeout must be 0 to 86400 seconds, exclusive of 0") }
        configuration.idleTimeout = .milliseconds(Int64(idle * 1_000))
        configuration.tls = try GatewayOptions.tls(
            certificate: settings.string(apiTlsCertFile, "HERALD_API_TLS_CERT_FILE"), key: settings.string(apiTlsKeyFile, "HERALD_API_TLS_KEY_FILE"),
            clientCA: settings.string(apiTlsClientCaFile, "HERALD_API_TLS_CLIENT_CA_FILE"),
            flags: ("--api-tls-cert-file", "--api-tls-key-file"), port: "api"
        )?.serverConfiguration()
        return configuration
    }
}
