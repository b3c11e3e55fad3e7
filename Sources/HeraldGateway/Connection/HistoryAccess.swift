import HeraldCore

/// Which streams a connection may read the history of: the ones it receives live (its own user's,
/// broadcast, and the channels its token grants), never another, whatever the request names.
enum HistoryAccess {
    /// The stream `name` (`u`, `*`, `c:NAME`) is, when `connection` may read it; nil otherwise.
    static func stream(named name: String, for connection: Connection) -> HeraldStream? {
        switch ResumeCursor.CursorStream(wireName: name) {
        case .user?: .user(connection.userID)
        case .broadcast?: .broadcast
        case .channel(let channel)? where connection.allowedChannels.contains(channel): .channel(channel)
        case .channel?, nil: nil
        }
    }
}
