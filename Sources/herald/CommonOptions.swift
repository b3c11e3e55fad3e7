import ArgumentParser
import Foundation
import HeraldKafka
import Logging

/// Options every command shares. Each may also come from a `HERALD_*` environment variable (as
/// Kubernetes passes configuration) or a configuration file; a flag on the command line wins over the
/// environment, which wins over the file.
struct CommonOptions: ParsableArguments {
    @Option(help: "A JSON configuration file: an object whose keys are these flags' names (\"kafka-brokers\", \"port\", …). Flags and the environment win over it. Env: HERALD_CONFIG.")
    var config: String?

    @Option(help: "Kafka bootstrap servers (host:port,...). Without it, an embedded Kafka is started. Env: HERALD_KAFKA_BROKERS.")
    var kafkaBrokers: String?

    @Option(help: "The events topic. Env: HERALD_EVENTS_TOPIC. Default: herald.events.")
    var eventsTopic: String?

    @Option(help: "The upstream topic (client publishes). Env: HERALD_UPSTREAM_TOPIC. Default: herald.upstream.")
    var upstreamTopic: String?

    @Option(help: "The compacted topic of devices' committed cursors (acks); none: no device cursors (acks only counted). Env: HERALD_CURSORS_TOPIC. Default: herald.cursors.")
    var cursorsTopic: String?

    @Option(help: "The compacted sessions topic (the cluster's view of connections: presence, the per-user limit across nodes); a node without it sees its own connections only. Env: HERALD_SESSIONS_TOPIC. Default: herald.sessions.")
    var sessionsTopic: String?

    @Option(help: "Extra librdkafka properties, key=value,key=value (e.g. security.protocol=SSL). Env: HERALD_KAFKA_PROPERTIES.")
    var kafkaProperties: String?

    @Option(help: "A file of librdkafka properties, one key=value a line (# comments); values may contain commas (a SASL password). --kafka-properties wins over it. Env: HERALD_KAFKA_PROPERTIES_FILE.")
    var kafkaPropertiesFile: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical. Env: HERALD_LOG_LEVEL. Default: info.")
    var logLevel: String?

    @Option(help: "text or json (one object per line, for log collectors). Env: HERALD_LOG_FORMAT. Default: text.")
    var logFormat: String?

    func resolve(processEnvironment: [String: String] = ProcessInfo.processInfo.environment) throws -> ResolvedOptions {
        let (environment, file) = try Settings.environment(configFlag: config, process: processEnvironment)
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
        let properties = try Self.kafkaProperties(
            file: file?.kafkaProperties ?? [:],
            propertiesFile: value(kafkaPropertiesFile, "HERALD_KAFKA_PROPERTIES_FILE"),
            list: value(kafkaProperties, "HERALD_KAFKA_PROPERTIES")
        )
        // Before any Kafka client exists: librdkafka's own log lines pass the same redaction.
        LogRedaction.protect(
            KafkaConfiguration(bootstrapServers: "", extraProperties: properties).sensitiveValues, minimumLength: 4
        )
        return ResolvedOptions(
            kafkaBrokers: value(kafkaBrokers, "HERALD_KAFKA_BROKERS"),
            eventsTopic: value(eventsTopic, "HERALD_EVENTS_TOPIC") ?? "herald.events",
            upstreamTopic: value(upstreamTopic, "HERALD_UPSTREAM_TOPIC") ?? "herald.upstream",
            cursorsTopic: (value(cursorsTopic, "HERALD_CURSORS_TOPIC") ?? "herald.cursors").unlessNone,
            sessionsTopic: value(sessionsTopic, "HERALD_SESSIONS_TOPIC") ?? "herald.sessions",
            kafkaProperties: properties,
            logLevel: level,
            environment: environment
        )
    }

    /// The configuration file's `kafka-properties` object, then the properties file, then the
    /// comma-separated list: a later source wins for the same key.
    static func kafkaProperties(file: [String: String], propertiesFile: String?, list: String?) throws -> [String: String] {
        var properties = file
        if let path = propertiesFile {
            guard let data = FileManager.default.contents(atPath: path), data.count <= 1024 * 1024 else {
                throw ValidationError("cannot read the Kafka properties file \(path) (a file of at most 1 MiB)")
            }
            properties.merge(try parsePropertiesFile(String(decoding: data, as: UTF8.self), name: path)) { _, new in new }
        }
        properties.merge(try Self.properties(list ?? "")) { _, new in new }
        return properties
    }

    /// librdkafka's `key=value` file format (as `kcat -F` reads it): one property a line, split at the
    /// first `=`, blank lines and lines starting with `#` ignored, spaces around key and value dropped.
    static func parsePropertiesFile(_ text: String, name: String) throws -> [String: String] {
        var properties: [String: String] = [:]
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            guard parts.count == 2, !key.isEmpty else {
                throw ValidationError("\(name) line \(index + 1) is not key=value")
            }
            properties[key] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        return properties
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
    /// nil: the node keeps no device cursors.
    var cursorsTopic: String?
    var sessionsTopic: String
    var kafkaProperties: [String: String]
    var logLevel: Logger.Level
    /// The `HERALD_*` settings every other option reads: the process environment over the
    /// configuration file.
    var environment: [String: String]

    /// Every topic Herald uses: what the embedded Kafka creates and `herald topics` shows.
    var topics: [String] { [eventsTopic, upstreamTopic] + (cursorsTopic.map { [$0] } ?? []) + [sessionsTopic] }

    func kafka(bootstrapServers: String, clientID: String) -> KafkaConfiguration {
        KafkaConfiguration(bootstrapServers: bootstrapServers, clientID: clientID, extraProperties: kafkaProperties)
    }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = logLevel
        return logger
    }
}

extension String {
    /// nil for `none` (a topic setting that turns its feature off; an empty setting is an unset one).
    fileprivate var unlessNone: String? { self == "none" ? nil : self }
}
