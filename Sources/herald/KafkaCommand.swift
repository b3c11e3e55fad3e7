import ArgumentParser
import Foundation
import HeraldKafka
import Logging
import ServiceLifecycle

/// Runs the embedded Kafka alone, so that several Herald nodes (and kcat) on one machine can share it.
struct KafkaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "Run the embedded Kafka (librdkafka's mock cluster) on its own and print its bootstrap address."
    )

    @OptionGroup var common: CommonOptions
    @OptionGroup var embedded: EmbeddedKafkaOptions

    func run() async throws {
        let options = try common.resolve()
        let logger = options.logger("herald.kafka")
        let cluster = try embedded.start(topics: [options.eventsTopic, options.upstreamTopic, options.sessionsTopic], logger: logger, environment: options.environment)
        defer { cluster.shutdown() }
        // The first line on stdout is the bootstrap address, for scripts.
        FileHandle.standardOutput.write(Data((cluster.bootstrapServers + "\n").utf8))
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [ServiceGroupConfiguration.ServiceConfiguration(service: WaitForShutdown())],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}

/// A service that does nothing until it is asked to stop: it keeps a process alive for what runs
/// outside the service group (here, the mock cluster's own threads).
struct WaitForShutdown: Service {
    func run() async throws {
        try? await gracefulShutdown()
    }
}
