import Synchronization

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
    private struct State {
        var byUser: [String: [Connection]] = [:]
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
            var list = state.byUser[connection.userID, default: []]
            list.append(connection)
            state.connectionCount += 1
            var replaced: [Connection] = []
            while list.count > perUserLimit {
                replaced.append(list.removeFirst())
                state.connectionCount -= 1
            }
            state.byUser[connection.userID] = list
            return replaced
        }
    }

    /// Removes a connection (when it closes). Removing one that was already replaced does nothing.
    func remove(_ connection: Connection) {
        state.withLock { state in
            guard var list = state.byUser[connection.userID],
                  let index = list.firstIndex(where: { $0 === connection }) else { return }
            list.remove(at: index)
            state.connectionCount -= 1
            state.byUser[connection.userID] = list.isEmpty ? nil : list
        }
    }

    public func sessions(of user: String) -> [SessionInfo] {
        state.withLock { state in
            (state.byUser[user] ?? []).map { SessionInfo(session: $0.sessionID, device: $0.deviceID, openedAt: $0.openedAt) }
        }
    }

    public var userCount: Int { state.withLock { $0.byUser.count } }
    public var connectionCount: Int { state.withLock { $0.connectionCount } }
}
