/// Connection settings shared by every Herald Kafka client, plus librdkafka properties to pass through.
///
/// `extraProperties` is applied last, so an operator can set any librdkafka property (security
/// protocol, SASL, TLS files) without Herald knowing it exists. The few properties Herald's correctness
/// rests on (idempotence, acks, the partitioner, `auto.offset.reset=error` for replay) are applied after
/// them and cannot be overridden by accident.
public struct KafkaConfiguration: Sendable, Hashable {
    public var bootstrapServers: String
    public var clientID: String
    public var extraProperties: [String: String]

    public init(bootstrapServers: String, clientID: String = "herald", extraProperties: [String: String] = [:]) {
        self.bootstrapServers = bootstrapServers
        self.clientID = clientID
        self.extraProperties = extraProperties
    }

    /// Parses `key=value,key=value` (how `--kafka-properties` and `HERALD_KAFKA_PROPERTIES` are written)
    /// into librdkafka properties; blank items are skipped, anything else without a key is refused.
    public static func properties(parsing text: String) throws(KafkaError) -> [String: String] {
        var properties: [String: String] = [:]
        let items = text.split(separator: ",", omittingEmptySubsequences: false)
        for (index, pair) in items.enumerated() where !pair.trimmingCharacters(in: .whitespaces).isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty else {
                // Not the item itself: after a comma inside a password, it is the password's tail.
                throw KafkaError(
                    .configuration,
                    "Kafka property \(index + 1) of \(items.count) is not key=value (a value that holds a comma belongs in a properties file)"
                )
            }
            properties[parts[0].trimmingCharacters(in: .whitespaces)] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        return properties
    }

    /// Whether a property's value is a credential: it never appears in a log line or an error message.
    /// librdkafka's own sensitive properties (`sasl.password`, `ssl.key.password`, `ssl.key.pem`,
    /// `sasl.oauthbearer.client.secret`, `sasl.oauthbearer.config`, …) and anything named like one.
    public static func isSensitive(key: String) -> Bool {
        let key = key.lowercased()
        return ["password", "secret", "token", "credential", "sasl.oauthbearer.config", "sasl.jaas.config", "ssl.key.pem", "ssl_key"]
            .contains { key.contains($0) }
    }

    /// The values of every sensitive property, to mask wherever they might appear.
    public var sensitiveValues: [String] {
        extraProperties.filter { Self.isSensitive(key: $0.key) && !$0.value.isEmpty }.map(\.value)
    }

    func properties(_ own: [String: String], enforced: [String: String] = [:]) -> [String: String] {
        var all: [String: String] = ["bootstrap.servers": bootstrapServers, "client.id": clientID]
        all.merge(own) { _, new in new }
        all.merge(extraProperties) { _, new in new }
        all.merge(enforced) { _, new in new }
        return all
    }
}
