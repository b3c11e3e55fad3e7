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

    func properties(_ own: [String: String], enforced: [String: String] = [:]) -> [String: String] {
        var all: [String: String] = ["bootstrap.servers": bootstrapServers, "client.id": clientID]
        all.merge(own) { _, new in new }
        all.merge(extraProperties) { _, new in new }
        all.merge(enforced) { _, new in new }
        return all
    }
}
