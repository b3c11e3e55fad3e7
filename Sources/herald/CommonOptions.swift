import ArgumentParser
import Foundation
import HeraldKafka
import Logging

/// Options every command shares. Each may also come from a `HERALD_*` environment variable (as
/// Kubernetes passes configuration); a flag on the command line wins over the environment.
struct CommonOptions: ParsableArguments {
    @Option(help: "Kafka bootstrap servers (host:port,...). Without it, an embedded Kafka is started. Env: HERALD_KAFKA_BROKERS.")
    var kafkaBrokers: String?

    @Option(help: "The events topic. Env: HERALD_EVENTS_TOPIC. Default: herald.events.")
    var eventsTopic: String?

    @Option(help: "The upstream topic (client publishes). Env: HERALD_UPSTREAM_TOPIC. Default: herald.upstream.")
    var upstreamTopic: String?

    @Option(help: "Extra librdkafka properties, key=value,key=value (e.g. security.protocol=SSL). Env: HERALD_KAFKA_PROPERTIES.")
    var kafkaProperties: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical. Env: HERALD_LOG_LEVEL. Default: info.")
    var logLevel: String?

    @Option(help: "text or json (one object per line, for log collectors). Env: HERALD_LOG_FORMAT. Default: text.")
    var logFormat: String?

    func resolve(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ResolvedOptions {
        let settings = Settings(environment: environment)
        let value = settings.string
        let levelName = value(logLevel, "HERALD_LOG_LEVEL") ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw ValidationError("log level \(levelName) is not one of trace, debug, info, notice, warning, error, critical")
        }
        let formatName = value(logFormat, "HERALD_LOG_FORMAT") ?? "text"
        guard let format = LogFormat(rawValue: formatName) else {
            throw ValidationError("log format \(formatName) is not text or json")
        }
        LogOutput.bootstrap(format)
        return ResolvedOptions(
            kafkaBrokers: value(kafkaBrokers, "HERALD_KAFKA_BROKERS"),
            eventsTopic: value(eventsTopic, "HERALD_EVENTS_TOPIC") ?? "herald.events",
            upstreamTopic: value(upstreamTopic, "HERALD_UPSTREAM_TOPIC") ?? "herald.upstream",
            kafkaProperties: try Self.properties(value(kafkaProperties, "HERALD_KAFKA_PROPERTIES") ?? ""),
            logLevel: level
        )
    }

    /// A malformed list is a usage error, reported as ArgumentParser reports the others.
    private static func properties(_ text: String) throws -> [String: String] {
        do {
            return try KafkaConfiguration.properties(parsing: text)
        } catch {
            throw ValidationError(error.message)
        }
    }
}

struct ResolvedOptions {
    var kafkaBrokers: String?
    var eventsTopic: String
    var upstreamTopic: String
    var kafkaProperties: [String: String]
    var logLevel: Logger.Level

    func kafka(bootstrapServers: String, clientID: String) -> KafkaConfiguration {
        KafkaConfiguration(bootstrapServers: bootstrapServers, clientID: clientID, extraProperties: kafkaProperties)
    }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = logLevel
        return logger
    }
}
