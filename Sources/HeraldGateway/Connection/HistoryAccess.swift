import HeraldCore

/// Which streams a connection may read the history of: the ones it may receive live (its own user's,
/// broadcast, and the channels the namespaces let it follow), never another, whatever the request
/// names. A connection without a token has no user stream and no broadcast.
enum HistoryAccess {
    /// The stream `name` (`u`, `*`, `c:NAME`) is, when `connection` may read it; nil otherwise.
    static func stream(named name: String, for connection: Connection, namespaces: ChannelNamespaces) -> HeraldStream? {
        let anonymous = connection.isAnonymous
        switch ResumeCursor.CursorStream(wireName: name) {
        case .user? where !anonymous: return .user(connection.userID)
        case .broadcast? where !anonymous: return .broadcast
        case .channel(let channel)? where namespaces.mayFollow(channel, grants: connection.allowedChannels, anonymous: anonymous):
            return .channel(channel)
        case .user?, .broadcast?, .channel?, nil: return nil
        }
    }
}
