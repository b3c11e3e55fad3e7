/// A stream: the unit of ordering and of resume (docs/protocol.md §1).
///
/// Each stream is one Kafka record key on the events topic, so it lives in one partition and its
/// position is one offset. The `herald-kind` header says how to read the key.
public enum HeraldStream: Hashable, Sendable {
    /// A user's own stream (`u` on the wire, key = user id): every connection of that user.
    case user(String)
    /// A channel (`c:NAME` on the wire, key = NAME): every connection subscribed to it.
    case channel(String)
    /// Broadcast (`*` on the wire, key = `*`): every connection.
    case broadcast

    public static let broadcastKey = "*"

    /// The Kafka record key of this stream.
    public var kafkaKey: String {
        switch self {
        case .user(let id): id
        case .channel(let name): name
        case .broadcast: Self.broadcastKey
        }
    }

    public var kind: HeraldStreamKind {
        switch self {
        case .user: .user
        case .channel: .channel
        case .broadcast: .broadcast
        }
    }

    /// The partition every record of this stream must be in: Kafka's default partitioner (murmur2) of
    /// its key. A record found elsewhere was produced with another partitioner.
    public func partition(partitionCount: Int32) -> Int32 {
        Murmur2.partition(forKey: kafkaKey, partitionCount: partitionCount)
    }

    /// The stream's name as a client sees it in `message`, `positions` and cursors. A user's own stream
    /// is `u` because a connection only ever sees its own user's stream.
    public var wireName: String {
        switch self {
        case .user: "u"
        case .channel(let name): "c:" + name
        case .broadcast: "*"
        }
    }

    /// Reads a stream from a record's key and its `herald-kind` header value.
    public init(key: String, kind: HeraldStreamKind) {
        switch kind {
        case .user: self = .user(key)
        case .channel: self = .channel(key)
        case .broadcast: self = .broadcast
        }
    }
}

/// The value of the `herald-kind` header. A record without the header is a message to a user.
public enum HeraldStreamKind: String, Sendable, CaseIterable {
    case user
    case channel
    case broadcast
}
