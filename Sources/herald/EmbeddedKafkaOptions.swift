import ArgumentParser
import Foundation
import HeraldKafka
import Logging

/// How the embedded Kafka (librdkafka's mock cluster) is laid out when Herald starts one.
struct EmbeddedKafkaOptions: ParsableArguments {
    @Option(help: "Brokers of the embedded Kafka. Env: HERALD_EMBEDDED_BROKERS. Default: 1.")
    var embeddedBrokers: Int32?

    @Option(help: "Partitions of each topic in the embedded Kafka. Env: HERALD_EMBEDDED_PARTITIONS. Default: 12.")
    var embeddedPartitions: Int32?

    func start(topics: [String], logger: Logger, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> EmbeddedKafkaCluster {
        let settings = Settings(environment: environment)
        let brokers = try settings.number(embeddedBrokers, "HERALD_EMBEDDED_BROKERS") ?? 1
        let partitions = try settings.number(embeddedPartitions, "HERALD_EMBEDDED_PARTITIONS") ?? 12
        guard brokers >= 1 else { throw ValidationError("the embedded Kafka needs at least one broker") }
        guard partitions >= 1 else { throw ValidationError("a topic needs at least one partition") }
        let cluster = try EmbeddedKafkaCluster(
            brokers: brokers,
            topics: topics.map { KafkaTopicSpec(name: $0, partitions: partitions, replicationFactor: brokers) },
            logger: logger
        )
        logger.notice(
            "embedded Kafka started (librdkafka mock cluster: nothing persists across restarts; set --kafka-brokers for a real cluster)",
            metadata: [
                "kafka.bootstrap": "\(cluster.bootstrapServers)",
                "kafka.topics": "\(topics.joined(separator: ","))",
                "kafka.partitions": "\(partitions)",
                "kafka.brokers": "\(brokers)",
            ]
        )
        return cluster
    }
}
