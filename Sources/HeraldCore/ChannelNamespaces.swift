/// A node's channel namespaces, and the one place that decides whether a connection may follow a
/// channel or publish into it (docs/protocol.md §5): the handshake's `channels=` and cursor, `subscribe`,
/// a refresh's new grants and a channel publish all ask here, so no path can be more lenient than another.
public struct ChannelNamespaces: Sendable, Equatable {
    private var byName: [String: ChannelNamespace]

    /// No namespace configured: every channel has the defaults.
    public init() { byName = [:] }

    public init(_ namespaces: [ChannelNamespace]) throws(ChannelNamespaceError) {
        var byName: [String: ChannelNamespace] = [:]
        for namespace in namespaces {
            try ChannelNamespace.validate(name: namespace.name)
            guard byName[namespace.name] == nil else { throw ChannelNamespaceError("namespace \(namespace.name) is configured twice") }
            if let length = namespace.historyLength, !(0...ChannelNamespace.maxHistoryLength).contains(length) {
                throw ChannelNamespaceError("namespace \(namespace.name): history must be 0 to \(ChannelNamespace.maxHistoryLength)")
            }
            byName[namespace.name] = namespace
        }
        self.byName = byName
    }

    /// Parses the text form of a list: namespace entries separated by `;`
    /// (`video subscribe=anonymous publish history=50; chat subscribe=token`).
    public static func parse(_ text: String) throws(ChannelNamespaceError) -> ChannelNamespaces {
        var list: [ChannelNamespace] = []
        for entry in text.split(separator: ";") where !entry.allSatisfy(\.isWhitespace) {
            list.append(try ChannelNamespace.parse(entry))
        }
        return try ChannelNamespaces(list)
    }

    public var all: [ChannelNamespace] { byName.values.sorted { $0.name < $1.name } }

    /// The rules of a channel's namespace (the defaults when it is not configured).
    public func namespace(of channel: String) -> ChannelNamespace {
        let name = String(ChannelNamespace.namespace(of: channel))
        return byName[name] ?? ChannelNamespace(name: name)
    }

    /// Whether connections without a token are accepted at all: only when some namespace allows them.
    public var allowsAnonymous: Bool { byName.values.contains { $0.subscribers == .anonymous } }

    /// Whether a connection may follow `channel`: `grants` is its token's `channels` claim, `anonymous`
    /// says it has no token.
    public func mayFollow(_ channel: String, grants: Set<String>, anonymous: Bool) -> Bool {
        let namespace = namespace(of: channel)
        switch namespace.subscribers {
        case .anonymous: return true
        case .token: return !anonymous
        case .grant: return !anonymous && grants.contains(channel)
        case .pattern:
            return !anonymous && (grants.contains(channel) || (channel.contains(":") && grants.contains(namespace.patternGrant)))
        }
    }

    /// Why a connection may not publish into `channel`, or nil when it may.
    public func publishRefusal(_ channel: String, grants: Set<String>, anonymous: Bool) -> String? {
        let namespace = namespace(of: channel)
        guard namespace.publish else { return "clients may not publish into channel \(channel): its namespace does not allow it" }
        guard mayFollow(channel, grants: grants, anonymous: anonymous) else {
            return anonymous ? "anonymous connections may not publish into channel \(channel)" : "the token does not grant channel \(channel)"
        }
        if anonymous, namespace.publishNeedsUser {
            return "publishing into channel \(channel) needs a user: connect with a token"
        }
        return nil
    }
}
