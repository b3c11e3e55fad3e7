/// What a reconnecting client has seen, per stream (docs/protocol.md §4): `u:1842,*:78,c:news:13`.
///
/// A cursor names streams the way a connection sees them: `u` is always the connection's own user,
/// so a cursor cannot name another user's stream; the listener still refuses a cursor that tries
/// (`u:bob:3`) and one naming a channel the token does not grant.
public struct ResumeCursor: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var stream: CursorStream
        /// The offset of the last message the client has: replay starts after it. `-1` is "nothing yet".
        public var offset: Int64

        public init(stream: CursorStream, offset: Int64) {
            self.stream = stream
            self.offset = offset
        }
    }

    /// A stream as a cursor names it: the user is implicit.
    public enum CursorStream: Hashable, Sendable {
        case user
        case channel(String)
        case broadcast

        /// The stream a wire name (`u`, `*`, `c:NAME`) names, or nil.
        public init?<Name: StringProtocol>(wireName name: Name) {
            if name == "u" {
                self = .user
            } else if name == "*" {
                self = .broadcast
            } else if name.hasPrefix("c:"), name.count > 2 {
                self = .channel(String(name.dropFirst(2)))
            } else {
                return nil
            }
        }

        /// The stream of `user`'s connection.
        public func stream(of user: String) -> HeraldStream {
            switch self {
            case .user: .user(user)
            case .channel(let name): .channel(name)
            case .broadcast: .broadcast
            }
        }
    }

    public var entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries
    }

    /// A cursor from positions keyed by their streams' wire names (`u`, `*`, `c:NAME`), as a welcome's
    /// `positions` and a message's `stream` give them; a name that is no stream is left out.
    public init(positions: [String: Int64]) {
        entries = positions.sorted { $0.key < $1.key }.compactMap { name, offset in
            CursorStream(wireName: name).map { Entry(stream: $0, offset: offset) }
        }
    }

    /// Most streams one cursor may name: a connection follows its own stream, broadcast and its channels.
    public static let maxEntries = 256

    /// Parses a cursor. The offset is what follows the last `:` of an entry, so channel names may hold `:`.
    public static func parse(_ text: String) throws(ResumeCursorError) -> ResumeCursor {
        guard !text.isEmpty else { throw .malformed("the cursor is empty") }
        let pieces = text.split(separator: ",", omittingEmptySubsequences: false)
        guard pieces.count <= maxEntries else { throw .malformed("the cursor names more than \(maxEntries) streams") }
        var entries: [Entry] = []
        entries.reserveCapacity(pieces.count)
        for piece in pieces {
            guard let colon = piece.lastIndex(of: ":") else {
                throw .malformed("cursor entry \"\(piece)\" is not STREAM:OFFSET")
            }
            let name = piece[..<colon]
            let offsetText = piece[piece.index(after: colon)...]
            guard let offset = Int64(offsetText), offset >= -1, offsetText.first != "+" else {
                throw .malformed("cursor entry \"\(piece)\" has no offset (an integer of at least -1)")
            }
            guard let stream = CursorStream(wireName: name) else {
                if name.hasPrefix("u:") {
                    throw .foreignStream("cursor entry \"\(piece)\" names another user's stream; a connection's own stream is \"u\"")
                }
                throw .malformed("cursor entry \"\(piece)\" names no stream (u, *, or c:NAME)")
            }
            guard !entries.contains(where: { $0.stream == stream }) else {
                throw .malformed("the cursor names stream \"\(name)\" twice")
            }
            entries.append(Entry(stream: stream, offset: offset))
        }
        return ResumeCursor(entries: entries)
    }

    /// The cursor as a client sends it.
    public var text: String {
        entries.map { entry in
            let name: String
            switch entry.stream {
            case .user: name = "u"
            case .broadcast: name = "*"
            case .channel(let channel): name = "c:" + channel
            }
            return name + ":" + String(entry.offset)
        }.joined(separator: ",")
    }

    /// The channels the cursor names, which the token must grant.
    public var channels: [String] {
        entries.compactMap { if case .channel(let name) = $0.stream { name } else { nil } }
    }
}

/// Why a cursor was not accepted. `malformed` becomes `recovered:false` with reason `malformed`; a
/// cursor that names another user's stream is refused before the upgrade (403).
public enum ResumeCursorError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case foreignStream(String)

    public var description: String {
        switch self {
        case .malformed(let message), .foreignStream(let message): message
        }
    }
}
