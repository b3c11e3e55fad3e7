import Foundation

/// Presence as the API answers it (docs/protocol.md §3): from the cluster's view of sessions, with
/// this node's own connections taken from the node itself (the view learns them a Kafka round trip
/// later); without a view, this node's connections only.
enum Presence {
    /// Most users one `GET /v1/presence` may ask about.
    static let maxUsers = 100

    static func connections(of user: String, node: NodeHooks) -> [Responses.UserConnections.Session] {
        var sessions = node.sessions(user).map {
            Responses.UserConnections.Session(node: node.nodeID, session: $0.session, device: $0.device, openedAt: $0.openedAt)
        }
        if let cluster = node.cluster {
            sessions += cluster.connections(user).filter { $0.node != node.nodeID }.map {
                Responses.UserConnections.Session(node: $0.node, session: $0.session, device: $0.device, openedAt: $0.openedAt)
            }
            sessions.sort { ($0.openedAt, $0.node, $0.session) < ($1.openedAt, $1.node, $1.session) }
        }
        return sessions
    }

    static func answer(_ users: [String], node: NodeHooks) -> Responses.PresenceAnswer {
        Responses.PresenceAnswer(
            node: node.nodeID, scope: node.cluster == nil ? "node" : "cluster",
            users: users.map { user in
                .init(user: user, online: !node.sessions(user).isEmpty || (node.cluster?.isOnline(user) ?? false))
            }
        )
    }

    /// The `users` of the query: comma-separated, each percent-encoded (a user id with a comma sends
    /// it as %2C); `users` may also repeat. Repeated ids are answered once, in the order first asked.
    static func users(inQuery query: String?) throws -> [String] {
        var users: [String] = []
        var seen = Set<String>()
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts[0] == "users" else {
                let name = String(parts[0]).removingPercentEncoding ?? String(parts[0])
                throw APIError.field(name, "is not a parameter of presence (users)")
            }
            let list = parts.count > 1 ? parts[1] : ""
            for raw in list.split(separator: ",", omittingEmptySubsequences: false) {
                let text = raw.replacingOccurrences(of: "+", with: " ")
                guard let user = text.removingPercentEncoding, !user.isEmpty, user.utf8.count <= 256 else {
                    throw APIError.field("users", "each user id must be 1 to 256 bytes, percent-encoded, separated by commas")
                }
                guard seen.insert(user).inserted else { continue }
                users.append(user)
                guard users.count <= maxUsers else {
                    throw APIError.field("users", "asks about more than \(maxUsers) users; ask in several calls")
                }
            }
        }
        guard !users.isEmpty else { throw APIError.field("users", "is required: one or more user ids, comma-separated") }
        return users
    }
}
