import Synchronization
import HeraldCore

/// A user's connection as presence reports it.
public struct SessionInfo: Sendable, Hashable {
    public var session: String
    public var device: String?
    /// Unix milliseconds.
    public var openedAt: Int64
}

/// The node's session manager: user id → that user's connections, oldest first.
///
/// It enforces the per-user connection limit (the oldest connection is replaced, close 4001) and
/// answers presence. It is touched on connect and disconnect only, never per message: delivery goes
/// through each shard's own index.
public final class SessionRegistry: Sendable {
    /// Most users hold one connection: that case costs no array.
    private enum Sessions {
        case one(Connection)
        case many([Connection])

        var list: [Connection] {
            switch self {
            case .one(let connection): [connection]
            case .many(let list): list
            }
        }

        init?(_ list: [Connection]) {
            switch list.count {
            case 0: return nil
            case 1: self = .one(list[0])
            default: self = .many(list)
            }
        }
    }

    private struct State {
        var byUser: [String: Sessions] = [:]
        var connectionCount = 0
    }

    private let state = Mutex(State())
    public let perUserLimit: Int

    public init(perUserLimit: Int) {
        precondition(perUserLimit >= 1)
        self.perUserLimit = perUserLimit
    }

    /// Adds a connection and returns the ones it replaces (the user's oldest, over the limit).
    func add(_ connection: Connection) -> [Connection] {
        state.withLock { state in
            var list = state.byUser[connection.userID]?.list ?? []
            list.append(connection)
            state.connectionCount += 1
            var replaced: [Connection] = []
            while list.count > perUserLimit {
                replaced.append(list.removeFirst())
                state.connectionCount -= 1
            }
            state.byUser[connection.userID] = Sessions(list)
            return replaced
        }
    }

    /// Removes a connection (when it closes). Removing one that was already replaced does nothing.
    func remove(_ connection: Connection) {
        state.withLock { state in
            guard var list = state.byUser[connection.userID]?.list,
                  let index = list.firstIndex(where: { $0 === connection }) else { return }
            list.remove(at: index)
            state.connectionCount -= 1
            state.byUser[connection.userID] = Sessions(list)
        }
    }

    public func sessions(of user: String) -> [SessionInfo] {
        state.withLock { state in
            (state.byUser[user]?.list ?? []).map { SessionInfo(session: $0.sessionID, device: $0.deviceID, openedAt: $0.openedAt) }
        }
    }

    /// The user's connections on this node.
    func connections(of user: String) -> [Connection] {
        state.withLock { $0.byUser[user]?.list ?? [] }
    }

    /// Closes every connection of `user` on this node, each on its own loop; returns how many.
    @discardableResult
    func closeConnections(of user: String, _ disconnect: Disconnect) -> Int {
        let connections = connections(of: user)
        for connection in connections {
            connection.channel.eventLoop.execute { connection.close(disconnect) }
        }
        return connections.count
    }

    /// Every connection on this node.
    func allConnections() -> [Connection] {
        state.withLock { state in state.byUser.values.flatMap(\.list) }
    }

    public var userCount: Int { state.withLock { $0.byUser.count } }
    public var connectionCount: Int { state.withLock { $0.connectionCount } }
}
