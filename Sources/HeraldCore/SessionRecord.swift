/// One record of the sessions topic (docs/protocol.md §5): what a node says about its connections and
/// itself. All fields are headers and the value is empty, so no field ever needs escaping.
///
/// A connection's records are keyed by user and session and written to the user's partition (murmur2
/// of the user id, as the events topic places the user's stream): every node reads one user's opens
/// and closes in one total order, which is how they agree on the oldest without talking. Compaction
/// keeps each connection's last record and each node's last heartbeat: a node reading the topic from
/// its start rebuilds the current view.
public enum SessionRecord: Sendable, Hashable {
    /// `run` names one process of the node, so a node restarted under the same id does not revive
    /// the connections of its last run.
    case opened(user: String, session: String, node: String, run: String, device: String?, openedAt: Int64)
    case closed(user: String, session: String, node: String, run: String)
    /// The node's lease: its connections count while `sentAt` (Unix ms) is younger than the lease.
    case heartbeat(node: String, run: String, sentAt: Int64)
    /// The node stopped (SIGTERM): its connections leave the view at once.
    case gone(node: String, run: String)

    public static let userHeader = "herald-user"
    public static let runHeader = "herald-run"
    public static let openedAtHeader = "herald-opened-at"
    public static let sentAtHeader = "herald-sent-at"

    /// The `herald-kind` of each record.
    public enum Kind: String, Sendable, CaseIterable {
        case opened = "session-opened"
        case closed = "session-closed"
        case heartbeat = "node-heartbeat"
        case gone = "node-gone"
    }

    public var kind: Kind {
        switch self {
        case .opened: .opened
        case .closed: .closed
        case .heartbeat: .heartbeat
        case .gone: .gone
        }
    }

    public var node: String {
        switch self {
        case .opened(_, _, let node, _, _, _), .closed(_, _, let node, _), .heartbeat(let node, _, _), .gone(let node, _): node
        }
    }

    public var run: String {
        switch self {
        case .opened(_, _, _, let run, _, _), .closed(_, _, _, let run), .heartbeat(_, let run, _), .gone(_, let run): run
        }
    }

    /// The user whose partition the record goes to; nil for a node's own records (partitioned by key).
    public var user: String? {
        switch self {
        case .opened(let user, _, _, _, _, _), .closed(let user, _, _, _): user
        case .heartbeat, .gone: nil
        }
    }

    /// The compaction key: one per connection, one per node. A NUL byte separates the parts; a node's
    /// key starts with one, which no user's key does (user ids are not empty).
    public var key: [UInt8] {
        switch self {
        case .opened(let user, let session, _, _, _, _), .closed(let user, let session, _, _):
            Array(user.utf8) + [0] + Array(session.utf8)
        case .heartbeat(let node, _, _), .gone(let node, _):
            [0] + Array("node".utf8) + [0] + Array(node.utf8)
        }
    }

    /// The partition of the record in a topic of `partitionCount` partitions; nil for the producer's
    /// partitioner (a node's records, placed by their key).
    public func partition(partitionCount: Int32) -> Int32? {
        user.map { Murmur2.partition(forKey: $0, partitionCount: partitionCount) }
    }

    public var headers: [HeraldHeader] {
        var headers = [
            HeraldHeader(name: HeraldHeader.kind, string: kind.rawValue),
            HeraldHeader(name: HeraldHeader.node, string: node),
            HeraldHeader(name: Self.runHeader, string: run),
        ]
        switch self {
        case .opened(let user, let session, _, _, let device, let openedAt):
            headers.append(HeraldHeader(name: Self.userHeader, string: user))
            headers.append(HeraldHeader(name: HeraldHeader.session, string: session))
            if let device { headers.append(HeraldHeader(name: HeraldHeader.device, string: device)) }
            headers.append(HeraldHeader(name: Self.openedAtHeader, string: String(openedAt)))
        case .closed(let user, let session, _, _):
            headers.append(HeraldHeader(name: Self.userHeader, string: user))
            headers.append(HeraldHeader(name: HeraldHeader.session, string: session))
        case .heartbeat(_, _, let sentAt):
            headers.append(HeraldHeader(name: Self.sentAtHeader, string: String(sentAt)))
        case .gone:
            break
        }
        return headers
    }

    /// Reads a record from its headers; nil for anything else (a record some other writer put on the
    /// topic, a field missing or not text): the reader skips it.
    public static func decode(headers: [(name: String, value: [UInt8]?)]) -> SessionRecord? {
        var fields: [String: String] = [:]
        for header in headers {
            guard let value = header.value, let text = String(validating: value, as: UTF8.self) else { continue }
            if fields[header.name] == nil { fields[header.name] = text }
        }
        guard let kindName = fields[HeraldHeader.kind], let kind = Kind(rawValue: kindName),
              let node = fields[HeraldHeader.node], !node.isEmpty, let run = fields[runHeader] else { return nil }
        switch kind {
        case .opened:
            guard let user = fields[userHeader], !user.isEmpty, let session = fields[HeraldHeader.session],
                  let openedAt = fields[openedAtHeader].flatMap({ Int64($0) }) else { return nil }
            return .opened(user: user, session: session, node: node, run: run, device: fields[HeraldHeader.device], openedAt: openedAt)
        case .closed:
            guard let user = fields[userHeader], !user.isEmpty, let session = fields[HeraldHeader.session] else { return nil }
            return .closed(user: user, session: session, node: node, run: run)
        case .heartbeat:
            guard let sentAt = fields[sentAtHeader].flatMap({ Int64($0) }) else { return nil }
            return .heartbeat(node: node, run: run, sentAt: sentAt)
        case .gone:
            return .gone(node: node, run: run)
        }
    }
}
