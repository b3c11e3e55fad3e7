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
        for pair in text.split(separator: ",") where !pair.trimmingCharacters(in: .whitespaces).isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw KafkaError(.configuration, "Kafka property \"\(pair)\" is not key=value")
            }
            properties[parts[0].trimmingCharacters(in: .whitespaces)] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        return properties
    }

    func properties(_ own: [String: String], enforced: [String: String] = [:]) -> [String: String] {
        var all: [String: String] = ["bootstrap.servers": bootstrapServers, "client.id": clientID]
        all.merge(own) { _, new in new }
        all.merge(extraProperties) { _, new in new }
        all.merge(enforced) { _, new in new }
        return all
    }
}
