import ArgumentParser
import Foundation
import HeraldAPI
import HeraldCore
import HeraldGateway
import HeraldKafka
import HeraldNode
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Runs a Herald node: the Kafka side (producer, live consumer over every partition) and the
/// WebSocket data plane, on the embedded Kafka unless `--kafka-brokers` names a real cluster.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a Herald node (on an embedded Kafka unless --kafka-brokers is given)."
    )

    @OptionGroup var common: CommonOptions
    @OptionGroup var embedded: EmbeddedKafkaOptions
    @OptionGroup var gateway: GatewayOptions
    @OptionGroup var api: APIOptions

    @Option(help: "This node's id, shown to clients and in logs. Env: HERALD_NODE_ID. Default: the host name.")
    var nodeID: String?

    @Option(help: "Producer linger in milliseconds (added to every push's latency). Env: HERALD_KAFKA_LINGER_MS. Default: 1.")
    var kafkaLingerMs: Int?

    @Flag(inversion: .prefixedNo, help: "Serve Prometheus metrics at /metrics on the API port. Env: HERALD_METRICS (true/false). Default: on.")
    var metrics: Bool?

    @Flag(help: "Development mode: a random token secret (an example token is printed; refused when HERALD_JWT_SECRET is set), the demo page and the /v1/echo endpoint for the Autobahn suite. Implies --embedded-kafka.")
    var dev = false

    @Flag(help: "Run the embedded Kafka when no --kafka-brokers is given, even in production (one pod alone sees it). Env: HERALD_EMBEDDED_KAFKA=true.")
    var embeddedKafka = false

    @Flag(help: "A production node: refuse to start without --kafka-brokers unless --embedded-kafka. Implied in a Kubernetes pod (KUBERNETES_SERVICE_HOST). Env: HERALD_PRODUCTION=true.")
    var production = false

    func run() async throws {
        let options = try common.resolve()
        let environment = options.environment
        let metricsOn = metrics ?? (environment["HERALD_METRICS"].map { !["false", "0", "off", "no"].contains($0.lowercased()) } ?? true)
        // Before anything creates a metric: swift-metrics binds each metric to the factory at creation.
        let nodeMetrics = metricsOn ? NodeMetrics(constantText: BuildInfo.metricText) : nil
        let node = nodeID ?? environment["HERALD_NODE_ID"] ?? ProcessInfo.processInfo.hostName
        var logger = options.logger("herald")
        logger[metadataKey: "node"] = "\(node)"

        let devSecret = dev ? (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() : nil
        let tokenConfiguration = try gateway.tokenConfiguration(devSecret: devSecret, environment: environment)
        let gatewayConfiguration = try gateway.gatewayConfiguration(nodeID: node, dev: dev, environment: environment)
        let devAPIKey = dev ? "dev-" + (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() : nil
        let apiConfiguration = try api.configuration(devKey: devAPIKey, environment: environment)
        LogRedaction.protect(apiConfiguration.apiKeys + [tokenConfiguration.hmacSecret, devSecret].compactMap { $0 })

        let settings = Settings(environment: environment)
        let inProduction = settings.flag(production, "HERALD_PRODUCTION") || !(environment["KUBERNETES_SERVICE_HOST"] ?? "").isEmpty
        let embeddedAsked = dev || settings.flag(embeddedKafka, "HERALD_EMBEDDED_KAFKA")
        if options.kafkaBrokers == nil, inProduction, !embeddedAsked {
            // An embedded Kafka per pod: pushes answered 202 on one pod would never reach the others.
            throw ValidationError(
                "no Kafka address: this looks like production (\(settings.flag(production, "HERALD_PRODUCTION") ? "--production" : "KUBERNETES_SERVICE_HOST is set")), where an embedded Kafka would be seen by this pod alone. Set --kafka-brokers (HERALD_KAFKA_BROKERS) to the Kafka cluster, or pass --embedded-kafka (HERALD_EMBEDDED_KAFKA=true) to run one in this process anyway."
            )
        }

        var cluster: EmbeddedKafkaCluster? = nil
        let bootstrap: String
        if let brokers = options.kafkaBrokers {
            bootstrap = brokers
        } else {
            let started = try embedded.start(topics: options.topics, logger: logger, environment: environment)
            cluster = started
            bootstrap = started.bootstrapServers
        }
        defer { cluster?.shutdown() }

        var configuration = NodeConfiguration(
            nodeID: node, kafka: options.kafka(bootstrapServers: bootstrap, clientID: "herald-\(node)"),
            tokens: tokenConfiguration, apiKeys: apiConfiguration.apiKeys
        )
        configuration.useEventsTopic(options.eventsTopic)
        configuration.upstreamTopic = options.upstreamTopic
        configuration.cursorsTopic = options.cursorsTopic
        configuration.storedCursors = try gateway.storedCursorCount(environment: environment)
        configuration.sessions = try gateway.sessionsConfiguration(topic: options.sessionsTopic, environment: environment)
        configuration.producer.lingerMilliseconds = try settings.number(kafkaLingerMs, "HERALD_KAFKA_LINGER_MS") ?? 1
        configuration.replayReader.readers = try gateway.replayReaderCount(environment: environment)
        configuration.gateway = gatewayConfiguration
        configuration.api = apiConfiguration
        configuration.developmentTools = dev
        configuration.gracefulShutdownSignals = [.sigterm, .sigint]
        let heraldNode = try await HeraldNode.prepare(configuration, metrics: nodeMetrics, logger: logger)

        if dev {
            // Printed, not logged: logs never carry secrets (they are masked), but a developer needs these.
            let secure = gatewayConfiguration.tls != nil
            var lines = ["development mode: the demo page is at \(secure ? "https" : "http")://127.0.0.1:\(gatewayConfiguration.port)/"]
            if let secret = tokenConfiguration.hmacSecret, secret == devSecret {
                let example = try await TokenIssuer(hmacSecret: secret).token(
                    user: "alice", device: "laptop", channels: ["news"], expiresAt: Date().addingTimeInterval(3_600)
                )
                lines.append("  tokens are signed with a random secret: HERALD_JWT_SECRET=\(secret)")
                lines.append("  example: \(secure ? "wss" : "ws")://127.0.0.1:\(gatewayConfiguration.port)/v1/ws?channels=news&token=\(example)")
            }
            if let devAPIKey, apiConfiguration.apiKeys.contains(devAPIKey) {
                lines.append("  the API key is random: HERALD_API_KEYS=\(devAPIKey)")
            }
            print(lines.joined(separator: "\n"))
        }

        try await heraldNode.run()
    }
}
