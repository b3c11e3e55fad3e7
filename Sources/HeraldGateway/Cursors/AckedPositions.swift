import HeraldCore

/// Where one connection of a device is current: its welcome's positions, moved forward by its acks.
/// What its device commits to the cursors topic. Confined to the connection's event loop (its
/// `SessionHandler` owns it).
struct AckedPositions {
    private(set) var positions: [HeraldStream: Int64] = [:]
    /// Acked since the last commit.
    private(set) var isDirty = false
    /// A commit is scheduled (at most one per connection per commit interval).
    var commitScheduled = false

    /// The welcome's positions: the connection is current up to them (a recovered resume's replay
    /// follows, and the device acks as it reads it).
    mutating func welcomed(_ welcome: [(stream: HeraldStream, offset: Int64)]) {
        for (stream, offset) in welcome { positions[stream] = offset }
    }

    /// An ack of a stream the connection follows; an ack behind the position changes nothing.
    /// Returns whether the position moved.
    mutating func ack(_ stream: HeraldStream, offset: Int64) -> Bool {
        guard offset >= -1 else { return false }
        if let current = positions[stream], offset <= current { return false }
        guard positions[stream] != nil || positions.count < ResumeCursor.maxEntries else { return false }
        positions[stream] = offset
        isDirty = true
        return true
    }

    mutating func forget(_ stream: HeraldStream) {
        positions[stream] = nil
    }

    /// The cursor to commit (streams in a stable order), and the state clean again.
    mutating func takeCommit() -> ResumeCursor {
        isDirty = false
        let entries = positions.compactMap { stream, offset -> ResumeCursor.Entry? in
            switch stream {
            case .user: ResumeCursor.Entry(stream: .user, offset: offset)
            case .broadcast: ResumeCursor.Entry(stream: .broadcast, offset: offset)
            case .channel(let name): ResumeCursor.Entry(stream: .channel(name), offset: offset)
            }
        }
        return ResumeCursor(entries: entries.sorted { $0.stream.sortKey < $1.stream.sortKey })
    }
}

extension ResumeCursor.CursorStream {
    fileprivate var sortKey: String {
        switch self {
        case .user: "u"
        case .broadcast: "*"
        case .channel(let name): "c:" + name
        }
    }
}
