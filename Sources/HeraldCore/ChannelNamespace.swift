/// The rules of one channel namespace: the part of a channel's name before its first `:` (`video` for
/// `video:123`; a name without `:` is in the namespace `""`). Configured per node (docs/protocol.md §5);
/// a channel of an unconfigured namespace has the defaults, which are the rules of a channel before
/// namespaces existed: only a token that grants it by name may follow it, and clients do not publish.
public struct ChannelNamespace: Sendable, Equatable {
    /// Who may follow (subscribe to, resume, replay) a channel of the namespace.
    public enum Subscribers: String, Sendable, CaseIterable {
        /// Every connection, with a token or anonymous (no token).
        case anonymous
        /// Every connection with a valid token, whatever its `channels` claim.
        case token
        /// A token whose `channels` claim names the channel (the default).
        case grant
        /// A token whose `channels` claim names the channel, or holds the pattern `NAMESPACE:*`.
        case pattern
    }

    public var name: String
    public var subscribers: Subscribers = .grant
    /// Whether a connection that may follow a channel of the namespace may publish into it.
    public var publish = false
    /// The most messages one history answer holds for a connection reading a channel of the namespace
    /// (0: connections read no history there); nil leaves it to the node's own bound. The internal
    /// API's history, for business services, has only the node's bound.
    public var historyLength: Int?
    /// Whether a publish into the namespace needs a user: anonymous connections may not publish there.
    public var publishNeedsUser = true

    public init(name: String, subscribers: Subscribers = .grant, publish: Bool = false, historyLength: Int? = nil, publishNeedsUser: Bool = true) {
        self.name = name
        self.subscribers = subscribers
        self.publish = publish
        self.historyLength = historyLength
        self.publishNeedsUser = publishNeedsUser
    }

    /// The longest history a namespace may ask for: history is read from Kafka on request, and a
    /// bound keeps one request's answer bounded.
    public static let maxHistoryLength = 10_000

    /// The namespace of a channel name.
    public static func namespace(of channel: String) -> Substring {
        guard let colon = channel.firstIndex(of: ":") else { return "" }
        return channel[..<colon]
    }

    /// The pattern grant that stands for every channel of the namespace: `video:*`.
    public var patternGrant: String { name + ":*" }

    /// Parses one namespace's text form: `NAME key=value …` with the keys `subscribe`
    /// (anonymous|token|grant|pattern), `publish` (true|false), `history` (0 to 10000) and `user`
    /// (true|false). A bare `publish` means `publish=true`.
    public static func parse(_ text: Substring) throws(ChannelNamespaceError) -> ChannelNamespace {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        guard let first = words.first else { throw ChannelNamespaceError("a namespace entry is empty") }
        let name = String(first)
        try validate(name: name)
        var namespace = ChannelNamespace(name: name)
        for word in words.dropFirst() {
            let pair = word.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(pair[0])
            let value = pair.count == 2 ? String(pair[1]) : nil
            switch key {
            case "subscribe":
                guard let value, let parsed = Subscribers(rawValue: value) else {
                    throw ChannelNamespaceError("namespace \(name): subscribe must be anonymous, token, grant or pattern")
                }
                namespace.subscribers = parsed
            case "publish":
                namespace.publish = try flag(value ?? "true", name, key)
            case "user":
                namespace.publishNeedsUser = try flag(value ?? "true", name, key)
            case "history":
                guard let value, let length = Int(value), (0...maxHistoryLength).contains(length) else {
                    throw ChannelNamespaceError("namespace \(name): history must be a number of messages from 0 to \(maxHistoryLength)")
                }
                namespace.historyLength = length
            default:
                throw ChannelNamespaceError("namespace \(name): unknown setting \"\(key)\" (settings are subscribe, publish, history and user)")
            }
        }
        return namespace
    }

    /// The text form `parse` reads.
    public var text: String {
        "\(name) subscribe=\(subscribers.rawValue) publish=\(publish)" + (historyLength.map { " history=\($0)" } ?? "") + " user=\(publishNeedsUser)"
    }

    static func validate(name: String) throws(ChannelNamespaceError) {
        guard !name.isEmpty, name.utf8.count <= 128 else {
            throw ChannelNamespaceError("a namespace name must be 1 to 128 bytes")
        }
        guard !name.contains(where: { $0 == ":" || $0 == ";" || $0 == "=" || $0 == "," || $0 == "*" || $0.isWhitespace }) else {
            throw ChannelNamespaceError("namespace \(name): a name may not contain \":\", \";\", \"=\", \",\", \"*\" or spaces")
        }
    }

    private static func flag(_ value: String, _ name: String, _ key: String) throws(ChannelNamespaceError) -> Bool {
        switch value {
        case "true": return true
        case "false": return false
        default: throw ChannelNamespaceError("namespace \(name): \(key) must be true or false")
        }
    }
}

/// A namespace configuration that cannot be meant.
public struct ChannelNamespaceError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
