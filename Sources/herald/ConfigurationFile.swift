import ArgumentParser
import Foundation

/// `herald serve --config FILE` (or `HERALD_CONFIG`): a JSON object whose keys are the long flags'
/// names without `--` (`"kafka-brokers"`, `"port"`, `"jwt-secret-file"`, …). A key becomes the
/// `HERALD_*` variable of the same name underneath the real environment, so that a flag wins over
/// the environment, which wins over the file, which wins over the default; one precedence rule for
/// every setting. `kafka-properties` may also be an object, whose values may contain commas.
struct ConfigurationFile {
    /// The file's settings as `HERALD_*` variables.
    var settings: [String: String] = [:]
    /// `"kafka-properties": {"sasl.password": "…"}`, kept apart: the variable form splits on commas.
    var kafkaProperties: [String: String] = [:]

    /// Every key a file may hold: the options that have a `HERALD_*` variable.
    static let keys: Set<String> = [
        "kafka-brokers", "kafka-properties", "kafka-properties-file", "events-topic", "upstream-topic", "cursors-topic", "log-level", "log-format",
        "embedded-brokers", "embedded-partitions",
        "port", "host", "jwt-secret", "jwt-secret-file", "jwt-public-keys", "jwt-audience", "jwt-issuer", "allowed-origins",
        "max-connections", "accept-rate", "user-connection-limit", "outbound-cap", "hot-window-seconds", "hot-window-bytes",
        "replay-limit", "drain-seconds", "drain-delay-seconds",
        "api-port", "api-host", "api-keys", "api-keys-file", "max-payload",
        "node-id", "kafka-linger-ms", "metrics", "embedded-kafka", "production",
        "api-idle-timeout", "jwt-max-lifetime", "revocation-horizon", "max-push-records", "max-push-record-bytes", "push-rate", "push-max-delivery-delay",
        "outbound-hard-limit", "slow-consumer-seconds", "replay-deadline-seconds", "replay-max-bytes", "replay-readers",
        "history-max-messages", "history-max-bytes",
        "source-handshakes-in-flight", "source-handshake-rate", "client-message-rate", "publish-rate", "publish-bytes-rate",
        "message-id-memory", "stored-cursors", "tls-cert-file", "tls-key-file", "api-tls-cert-file", "api-tls-key-file", "api-tls-client-ca-file",
        "namespaces", "anonymous-max-connections", "anonymous-accept-rate",
        "sessions-topic", "session-lease-seconds", "session-heartbeat-seconds",
    ]

    /// The switches: JSON true or false.
    static let switches: Set<String> = ["metrics", "embedded-kafka", "production"]

    /// The variable a key stands for: `kafka-brokers` → `HERALD_KAFKA_BROKERS`.
    static func variable(for key: String) -> String {
        "HERALD_" + key.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    static func load(_ path: String) throws -> ConfigurationFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read the configuration file \(path)")
        }
        guard data.count <= 1024 * 1024 else { throw ValidationError("the configuration file \(path) is larger than 1 MiB") }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw ValidationError("the configuration file \(path) is not JSON: \(error.localizedDescription)")
        }
        guard let object = parsed as? [String: Any] else {
            throw ValidationError("the configuration file \(path) must be a JSON object of settings")
        }
        var file = ConfigurationFile()
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            guard keys.contains(key) else {
                throw ValidationError("the configuration file \(path) has an unknown key \"\(key)\" (keys are the flags' names, e.g. \"kafka-brokers\")")
            }
            if key == "kafka-properties", let properties = value as? [String: Any] {
                for (name, property) in properties {
                    guard let text = scalar(property) else {
                        throw ValidationError("\(path): kafka-properties.\(name) must be a string, a number or a boolean")
                    }
                    file.kafkaProperties[name] = text
                }
                continue
            }
            if key == "namespaces", let namespaces = value as? [String: Any] {
                file.settings[variable(for: key)] = try namespaceText(namespaces, path)
                continue
            }
            if let list = value as? [Any], ["api-keys", "allowed-origins", "jwt-public-keys", "kafka-brokers"].contains(key) {
                let items = list.compactMap(scalar)
                guard items.count == list.count, !items.contains(where: { $0.contains(",") }) else {
                    throw ValidationError("\(path): \(key) must be a list of strings without commas")
                }
                file.settings[variable(for: key)] = items.joined(separator: ",")
                continue
            }
            if switches.contains(key) {
                guard let on = value as? Bool else { throw ValidationError("\(path): \(key) must be true or false") }
                file.settings[variable(for: key)] = on ? "true" : "false"
                continue
            }
            guard let text = scalar(value) else {
                throw ValidationError("\(path): \(key) must be a string, a number or a boolean")
            }
            file.settings[variable(for: key)] = text
        }
        return file
    }

    /// `"namespaces": {"video": {"subscribe": "anonymous", "publish": true, "history": 50}}` as the
    /// text form `--namespaces` takes; `ChannelNamespaces.parse` checks the values.
    private static func namespaceText(_ namespaces: [String: Any], _ path: String) throws -> String {
        var entries: [String] = []
        for (name, settings) in namespaces.sorted(by: { $0.key < $1.key }) {
            guard let settings = settings as? [String: Any] else {
                throw ValidationError("\(path): namespaces.\(name) must be an object of settings (subscribe, publish, history, user)")
            }
            var words = [name]
            for (key, value) in settings.sorted(by: { $0.key < $1.key }) {
                let text: String
                if let flag = value as? Bool, ["publish", "user"].contains(key) {
                    text = flag ? "true" : "false"
                } else if let scalar = scalar(value), !scalar.contains(where: { $0 == ";" || $0.isWhitespace }) {
                    text = scalar
                } else {
                    throw ValidationError("\(path): namespaces.\(name).\(key) must be a word, a number or a boolean")
                }
                words.append("\(key)=\(text)")
            }
            entries.append(words.joined(separator: " "))
        }
        return entries.joined(separator: "; ")
    }

    private static func scalar(_ value: Any) -> String? {
        if let text = value as? String { return text }
        if let number = value as? NSNumber { return number.stringValue }
        return nil
    }
}
