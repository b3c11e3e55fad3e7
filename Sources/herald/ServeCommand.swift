import ArgumentParser
import Foundation
import HeraldKafka
import Logging
import ServiceLifecycle

/// Runs a Herald node: today the Kafka side (producer, live consumer over every partition, and the
/// event reader that the WebSocket data plane will replace), on the embedded Kafka unless
/// `--kafka-brokers` names a real cluster.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a Herald node (on an embedded Kafka unless --kafka-brokers is given)."
    )

    @OptionGroup var common: CommonOptions
    @OptionGroup var embedded: EmbeddedKafkaOptions

    @Option(help: "This node's id, shown to clients and in logs. Env: HERALD_NODE_ID. Default: the host name.")
    var nodeID: String?

    func run() async throws {
        let options = try common.resolve()
        let environment = ProcessInfo.processInfo.environment
        let node = nodeID ?? environment["HERALD_NODE_ID"] ?? ProcessInfo.processInfo.hostName
        var logger = options.logger("herald")
        logger[metadataKey: "node"] = "\(node)"

        var cluster: EmbeddedKafkaCluster? = nil
        let bootstrap: String
        if let brokers = options.kafkaBrokers {
            bootstrap = brokers
        } else {
            let started = try embedded.start(topics: [options.eventsTopic, options.upstreamTopic], logger: logger)
            cluster = started
            bootstrap = started.bootstrapServers
        }
        defer { cluster?.shutdown() }

        let kafka = options.kafka(bootstrapServers: bootstrap, clientID: "herald-\(node)")
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: kafka), logger: logger)
        let consumer = try KafkaLiveConsumer(
            configuration: KafkaLiveConsumerConfiguration(kafka: kafka, topic: options.eventsTopic),
            logger: logger
        )
        let reader = EventReader(consumer: consumer, logger: logger)

        logger.info("herald node starting", metadata: ["kafka.bootstrap": "\(bootstrap)", "kafka.events": "\(options.eventsTopic)"])
        // Started in this order, stopped in reverse: the reader stops first, the producer flushes last.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: producer, serviceName: "kafka-producer"),
                    .init(service: consumer, serviceName: "kafka-live-consumer"),
                    .init(service: reader, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "event-reader"),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        logger.info("herald node stopped")
    }
}
