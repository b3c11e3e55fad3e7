/// The cluster's connections as every node rebuilds them from the sessions topic (`SessionRecord`):
/// user → connections in the order of the user's partition, and each node's lease.
///
/// A pure value fed records in the order they were read: nodes that read the same records hold the
/// same view. A connection counts while its node's current run holds a lease: its last heartbeat is
/// younger than `leaseMillis` and it has not said it is gone. Time is an argument, so tests drive it.
public struct SessionView: Sendable {
    /// A connection as presence reports it.
    public struct Connection: Sendable, Hashable {
        public var user: String
        public var node: String
        public var session: String
        public var device: String?
        /// Unix ms, by the clock of the connection's node.
        public var openedAt: Int64
        /// Where its open record is in the user's partition: the order every node agrees on.
        public var offset: Int64

        public init(user: String, node: String, session: String, device: String?, openedAt: Int64, offset: Int64) {
            self.user = user
            self.node = node
            self.session = session
            self.device = device
            self.openedAt = openedAt
            self.offset = offset
        }
    }

    /// A user went online (their first connection anywhere counts) or offline (the last one left).
    public struct PresenceChange: Sendable, Hashable {
        public var user: String
        public var online: Bool
        /// The node whose record made the change, or whose lease ended.
        public var node: String
        /// The change came from a node lost (lease expired or gone), not from one of its records.
        public var nodeLost: Bool

        public init(user: String, online: Bool, node: String, nodeLost: Bool) {
            self.user = user
            self.online = online
            self.node = node
            self.nodeLost = nodeLost
        }
    }

    /// One node's lease as its last heartbeat (or goodbye) says.
    struct Lease: Sendable {
        var run: String
        var sentAt: Int64
        /// Gone or expired: final for the run.
        var ended: Bool
    }

    /// Kept small: the node and run are shared per run (`runs`), not copied into each entry.
    struct Entry: Sendable {
        var session: String
        var device: String?
        var openedAt: Int64
        var offset: Int64
        var run: Int32
    }

    public let leaseMillis: Int64
    private var byUser: [String: [Entry]] = [:]
    private var leases: [String: Lease] = [:]
    /// Every (node, run) seen, interned: entries hold the index.
    private var runs: [(node: String, run: String)] = []
    private var runIndex: [String: [String: Int32]] = [:]
    private(set) public var entryCount = 0
    /// Users last reported online: presence changes are the differences from it.
    private var reportedOnline = Set<String>()

    public init(leaseMillis: Int64) {
        precondition(leaseMillis > 0)
        self.leaseMillis = leaseMillis
    }

    /// Applies one record read at `offset` of its partition; returns the presence changes it made.
    public mutating func apply(_ record: SessionRecord, offset: Int64, now: Int64) -> [PresenceChange] {
        switch record {
        case .opened(let user, let session, let node, let run, let device, let openedAt):
            if let lease = leases[node], lease.run == run ? lease.ended : openedAt < lease.sentAt {
                // Of a run that ended, or older than the node's current one: it can never count.
                return []
            }
            let index = intern(node: node, run: run)
            var list = byUser[user] ?? []
            if let existing = list.firstIndex(where: { $0.session == session }) {
                list.remove(at: existing)
                entryCount -= 1
            }
            let entry = Entry(session: session, device: device, openedAt: openedAt, offset: offset, run: index)
            // Records of one user arrive in offset order; the search only guards a reader that did not.
            let position = list.lastIndex(where: { $0.offset < offset }).map { $0 + 1 } ?? 0
            list.insert(entry, at: position)
            entryCount += 1
            byUser[user] = list
            return report(user, node: node, now: now, lost: false)
        case .closed(let user, let session, let node, let run):
            guard var list = byUser[user],
                  let existing = list.firstIndex(where: { $0.session == session && runs[Int($0.run)] == (node, run) }) else { return [] }
            list.remove(at: existing)
            entryCount -= 1
            byUser[user] = list.isEmpty ? nil : list
            return report(user, node: node, now: now, lost: false)
        case .heartbeat(let node, let run, let sentAt):
            guard let previous = leases[node] else {
                return relet(node, to: Lease(run: run, sentAt: sentAt, ended: false), now: now, lost: false)
            }
            if previous.run == run {
                // A run's end is final: its connections were forgotten, and its node starts a new run.
                // A lease that ran out but is not swept yet is renewed: a node rebuilding the view
                // reads a live node's old heartbeats before its latest.
                guard !previous.ended else { return [] }
                leases[node]?.sentAt = max(previous.sentAt, sentAt)
                return []
            }
            // Another run of the node: the newer one holds the lease (a rebuild may read them out of order).
            guard sentAt > previous.sentAt else { return [] }
            return relet(node, to: Lease(run: run, sentAt: sentAt, ended: false), now: now, lost: !previous.ended)
        case .gone(let node, let run):
            guard let previous = leases[node] else {
                // The goodbye of a run whose heartbeat was not read yet: that run never counts.
                leases[node] = Lease(run: run, sentAt: 0, ended: true)
                return []
            }
            guard previous.run == run, !previous.ended else { return [] }
            return relet(node, to: Lease(run: run, sentAt: previous.sentAt, ended: true), now: now, lost: true)
        }
    }

    /// Ends the leases that ran out and forgets their connections; returns those nodes (once each)
    /// and the presence changes. Call it about once a second.
    public mutating func sweep(now: Int64) -> (expired: [String], changes: [PresenceChange]) {
        var expired: [String] = []
        var changes: [PresenceChange] = []
        for (node, lease) in leases.sorted(by: { $0.key < $1.key }) where !lease.ended && lease.sentAt + leaseMillis <= now {
            expired.append(node)
            changes += relet(node, to: Lease(run: lease.run, sentAt: lease.sentAt, ended: true), now: now, lost: true)
        }
        return (expired, changes)
    }

    /// The user's connections that count now, oldest first.
    public func connections(of user: String, now: Int64) -> [Connection] {
        (byUser[user] ?? []).filter { counts($0, now: now) }.map { entry in
            let run = runs[Int(entry.run)]
            return Connection(user: user, node: run.node, session: entry.session, device: entry.device, openedAt: entry.openedAt, offset: entry.offset)
        }
    }

    public func isOnline(_ user: String, now: Int64) -> Bool {
        byUser[user]?.contains { counts($0, now: now) } ?? false
    }

    /// The user's oldest connections beyond `limit`: the ones to close.
    public func overLimit(_ user: String, limit: Int, now: Int64) -> [Connection] {
        let live = connections(of: user, now: now)
        return live.count > limit ? Array(live.prefix(live.count - limit)) : []
    }

    /// Nodes whose lease holds now, by id.
    public func liveNodes(now: Int64) -> [String] {
        leases.filter { !$0.value.ended && $0.value.sentAt + leaseMillis > now }.keys.sorted()
    }

    public var userCount: Int { byUser.count }

    // MARK: -

    private func counts(_ entry: Entry, now: Int64) -> Bool {
        let run = runs[Int(entry.run)]
        guard let lease = leases[run.node], lease.run == run.run, !lease.ended else { return false }
        return lease.sentAt + leaseMillis > now
    }

    /// The user's presence change since it was last reported, if any. Judged against what was
    /// reported, not against a moment before: a lease that ran out by time and a close read before
    /// the sweep make one offline, not two.
    private mutating func report(_ user: String, node: String, now: Int64, lost: Bool) -> [PresenceChange] {
        let online = isOnline(user, now: now)
        guard online != reportedOnline.contains(user) else { return [] }
        if online { reportedOnline.insert(user) } else { reportedOnline.remove(user) }
        return [PresenceChange(user: user, online: online, node: node, nodeLost: lost)]
    }

    /// Replaces a node's lease, reports the users whose presence that changed and forgets the
    /// connections that can no longer count. Costs a pass over the view: it happens when a node
    /// starts, stops or is lost, not per heartbeat.
    private mutating func relet(_ node: String, to lease: Lease, now: Int64, lost: Bool) -> [PresenceChange] {
        let users = usersOf(node: node)
        leases[node] = lease
        var changes: [PresenceChange] = []
        for user in users { changes += report(user, node: node, now: now, lost: lost) }
        purge(node: node)
        return changes
    }

    private func usersOf(node: String) -> [String] {
        guard let indices = runIndex[node]?.values, !indices.isEmpty else { return [] }
        let set = Set(indices)
        return byUser.compactMap { user, list in list.contains { set.contains($0.run) } ? user : nil }.sorted()
    }

    /// Forgets the node's connections that can never count again: those of an ended run, and those
    /// of an older run than the lease's (opened before its heartbeat). A connection of a run newer
    /// than the lease waits for that run's first heartbeat.
    private mutating func purge(node: String) {
        guard let lease = leases[node], let indices = runIndex[node] else { return }
        let mine = Set(indices.values)
        for (user, list) in byUser {
            let kept = list.filter { entry in
                guard mine.contains(entry.run) else { return true }
                if runs[Int(entry.run)].run == lease.run { return !lease.ended }
                return entry.openedAt >= lease.sentAt
            }
            if kept.count != list.count {
                entryCount -= list.count - kept.count
                byUser[user] = kept.isEmpty ? nil : kept
            }
        }
    }

    private mutating func intern(node: String, run: String) -> Int32 {
        if let index = runIndex[node]?[run] { return index }
        let index = Int32(runs.count)
        runs.append((node, run))
        runIndex[node, default: [:]][run] = index
        return index
    }
}
