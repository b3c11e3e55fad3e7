import Foundation
import Logging
import Synchronization

/// How the node writes its logs: human text (the default) or one JSON object per line (for
/// Kubernetes log collectors). Either way every line passes `LogRedaction` first.
enum LogFormat: String, CaseIterable {
    case text
    case json
}

/// Secrets never reach a log line: configured API keys and token secrets are masked wherever they
/// appear, and so is anything shaped like a JWT (a token in a logged URL, say).
enum LogRedaction {
    private static let secrets = Mutex<[String]>([])
    private static let jwt = try! NSRegularExpression(pattern: #"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"#)
    private static let bearer = try! NSRegularExpression(pattern: #"(?i)bearer\s+[^\s"',;]+"#)

    /// Adds secrets to mask (API keys, the HS256 secret, Kafka credentials), once configuration is
    /// read. Shorter values than `minimumLength` are left alone: masking every "abc" would garble the logs.
    static func protect(_ values: [String], minimumLength: Int = 6) {
        let meaningful = values.filter { $0.count >= minimumLength }
        secrets.withLock { $0.append(contentsOf: meaningful) }
    }

    static func redact(_ text: String) -> String {
        var text = text
        for secret in secrets.withLock({ $0 }) where text.contains(secret) {
            text = text.replacingOccurrences(of: secret, with: "[redacted]")
        }
        guard text.contains("eyJ") || text.lowercased().contains("bearer") else { return text }
        let range = NSRange(text.startIndex..., in: text)
        text = jwt.stringByReplacingMatches(in: text, range: range, withTemplate: "[redacted-token]")
        let again = NSRange(text.startIndex..., in: text)
        return bearer.stringByReplacingMatches(in: text, range: again, withTemplate: "Bearer [redacted]")
    }

    static func redact(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let string): .string(redact(string))
        case .stringConvertible(let convertible): .string(redact(convertible.description))
        case .array(let values): .array(values.map(redact))
        case .dictionary(let values): .dictionary(values.mapValues(redact))
        }
    }
}

/// Bootstraps swift-log once per process with the chosen format.
enum LogOutput {
    private static let bootstrapped = Mutex(false)

    static func bootstrap(_ format: LogFormat) {
        let first = bootstrapped.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        LoggingSystem.bootstrap { label in
            switch format {
            case .text: RedactingLogHandler(inner: StreamLogHandler.standardError(label: label))
            case .json: RedactingLogHandler(inner: JSONLogHandler(label: label))
            }
        }
    }
}

/// Masks secrets in a message and its metadata before the wrapped handler writes it.
struct RedactingLogHandler: LogHandler {
    var inner: any LogHandler

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        event.message = "\(LogRedaction.redact(event.message.description))"
        event.metadata = event.metadata?.mapValues(LogRedaction.redact)
        inner.log(event: event)
    }
}

/// One JSON object per line on standard error: `ts`, `level`, `logger`, `msg`, then the metadata
/// (the handler's and the call's) as string fields.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    private static let output = Mutex(())

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var object: [String: Any] = [
            "ts": Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)),
            "level": event.level.rawValue,
            "logger": label,
            "msg": event.message.description,
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new }) where object[key] == nil {
            object[key] = Self.plain(value)
        }
        guard var line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        line.append(0x0A)
        Self.output.withLock { _ in FileHandle.standardError.write(line) }
    }

    private static func plain(_ value: Logger.MetadataValue) -> Any {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): values.map(plain)
        case .dictionary(let values): values.mapValues(plain)
        }
    }
}
