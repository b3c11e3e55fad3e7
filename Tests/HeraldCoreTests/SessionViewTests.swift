import Foundation
import HeraldCore
import Testing

@Suite("The cluster's view of sessions, fed records", .serialized)
struct SessionViewTests {
    let lease: Int64 = 15_000

    func open(_ user: String, _ session: String, on node: String, run: String = "r1", device: String? = nil, at time: Int64 = 1_000) -> SessionRecord {
        .opened(user: user, session: session, node: node, run: run, device: device, openedAt: time)
    }

    @Test("records round-trip through their headers; a user's records go to the user's partition, a node's are keyed apart")
    func recordsRoundTrip() {
        let records: [SessionRecord] = [
            open("alice", "s1", on: "a", device: "phone", at: 42), open("bob", "s2", on: "b"),
            .closed(user: "alice", session: "s1", node: "a", run: "r1"), .heartbeat(node: "a", run: "r1", sentAt: 7), .gone(node: "a", run: "r1"),
        ]
        for record in records {
            #expect(SessionRecord.decode(headers: record.headers.map { ($0.name, $0.value) }) == record)
        }
        #expect(records[0].partition(partitionCount: 12) == Murmur2.partition(forKey: "alice", partitionCount: 12))
        #expect(records[3].partition(partitionCount: 12) == nil)
        #expect(records[0].key != records[1].key && records[3].key.first == 0)
        #expect(SessionRecord.decode(headers: [("herald-kind", Array("session-opened".utf8)), ("herald-node", Array("a".utf8))]) == nil,
                "a record missing fields is skipped")
        #expect(SessionRecord.decode(headers: []) == nil)
    }

    @Test("connections count only while their node's run holds a lease; presence changes once per user")
    func leaseDecidesWhatCounts() {
        var view = SessionView(leaseMillis: lease)
        #expect(view.apply(open("alice", "s1", on: "a"), offset: 0, now: 1_000).isEmpty, "no heartbeat of node a yet")
        #expect(!view.isOnline("alice", now: 1_000))
        let online = view.apply(.heartbeat(node: "a", run: "r1", sentAt: 1_000), offset: 0, now: 1_000)
        #expect(online == [.init(user: "alice", online: true, node: "a", nodeLost: false)])
        #expect(view.apply(open("alice", "s2", on: "a"), offset: 1, now: 1_100).isEmpty, "already online")
        #expect(view.connections(of: "alice", now: 1_100).map(\.session) == ["s1", "s2"])
        #expect(view.apply(.closed(user: "alice", session: "s1", node: "a", run: "r1"), offset: 2, now: 1_200).isEmpty)
        let offline = view.apply(.closed(user: "alice", session: "s2", node: "a", run: "r1"), offset: 3, now: 1_300)
        #expect(offline == [.init(user: "alice", online: false, node: "a", nodeLost: false)])
        #expect(view.entryCount == 0 && view.userCount == 0)
    }

    @Test("a node that stops heartbeating is forgotten after the lease, once; one that says it is gone, at once")
    func expiryAndGoodbye() {
        var view = SessionView(leaseMillis: lease)
        _ = view.apply(.heartbeat(node: "a", run: "r1", sentAt: 0), offset: 0, now: 0)
        _ = view.apply(.heartbeat(node: "b", run: "r1", sentAt: 0), offset: 1, now: 0)
        _ = view.apply(open("alice", "s1", on: "a"), offset: 0, now: 0)
        _ = view.apply(open("alice", "s2", on: "b"), offset: 1, now: 0)
        _ = view.apply(open("carol", "s3", on: "a"), offset: 0, now: 0)
        _ = view.apply(.heartbeat(node: "b", run: "r1", sentAt: 10_000), offset: 2, now: 10_000)
        #expect(view.sweep(now: 14_999).expired.isEmpty)
        let swept = view.sweep(now: 15_000)
        #expect(swept.expired == ["a"])
        #expect(swept.changes == [.init(user: "carol", online: false, node: "a", nodeLost: true)], "alice is still on b")
        #expect(view.connections(of: "alice", now: 15_000).map(\.node) == ["b"])
        #expect(view.sweep(now: 16_000).expired.isEmpty, "an expiry is counted once")
        #expect(view.apply(.heartbeat(node: "a", run: "r1", sentAt: 15_500), offset: 3, now: 15_500).isEmpty, "a run that ended stays ended")
        #expect(view.entryCount == 1)
        let gone = view.apply(.gone(node: "b", run: "r1"), offset: 4, now: 11_000)
        #expect(gone == [.init(user: "alice", online: false, node: "b", nodeLost: true)])
        #expect(view.entryCount == 0)
    }

    @Test("a node rebuilding the view reads a live node's old heartbeats first: its connections still count once its latest is read")
    func rebuildReadsOldHeartbeatsFirst() {
        var view = SessionView(leaseMillis: lease)
        let now: Int64 = 100_000
        _ = view.apply(.heartbeat(node: "a", run: "r1", sentAt: 1_000), offset: 0, now: now)
        _ = view.apply(open("alice", "s1", on: "a"), offset: 0, now: now)
        #expect(!view.isOnline("alice", now: now), "that heartbeat is older than the lease")
        let renewed = view.apply(.heartbeat(node: "a", run: "r1", sentAt: 99_000), offset: 1, now: now)
        #expect(renewed.isEmpty || renewed == [.init(user: "alice", online: true, node: "a", nodeLost: false)])
        #expect(view.connections(of: "alice", now: now).map(\.session) == ["s1"])
    }

    @Test("a user whose other node's lease ran out by time, and whose last connection closes before the sweep, goes offline once")
    func offlineOnceAcrossCloseAndSweep() {
        var view = SessionView(leaseMillis: lease)
        _ = view.apply(.heartbeat(node: "a", run: "r1", sentAt: 0), offset: 0, now: 0)
        _ = view.apply(.heartbeat(node: "b", run: "r1", sentAt: 0), offset: 1, now: 0)
        _ = view.apply(open("roamer", "s1", on: "a"), offset: 0, now: 0)
        _ = view.apply(open("roamer", "s2", on: "b"), offset: 1, now: 0)
        _ = view.apply(.heartbeat(node: "a", run: "r1", sentAt: 14_000), offset: 2, now: 14_000)
        let closed = view.apply(.closed(user: "roamer", session: "s1", node: "a", run: "r1"), offset: 2, now: 15_500)
        #expect(closed == [.init(user: "roamer", online: false, node: "a", nodeLost: false)], "b's lease already ran out")
        let swept = view.sweep(now: 16_000)
        #expect(swept.expired == ["b"] && swept.changes.isEmpty, "offline was already said: \(swept.changes)")
    }

    @Test("a node restarted under its id does not revive its last run's connections")
    func newRunReplacesOld() {
        var view = SessionView(leaseMillis: lease)
        _ = view.apply(.heartbeat(node: "a", run: "old", sentAt: 1_000), offset: 0, now: 1_000)
        _ = view.apply(open("alice", "s1", on: "a", run: "old", at: 1_000), offset: 0, now: 1_000)
        let restarted = view.apply(.heartbeat(node: "a", run: "new", sentAt: 2_000), offset: 1, now: 2_000)
        #expect(restarted == [.init(user: "alice", online: false, node: "a", nodeLost: true)])
        _ = view.apply(open("alice", "s2", on: "a", run: "new", at: 2_100), offset: 1, now: 2_100)
        #expect(view.connections(of: "alice", now: 2_100).map(\.session) == ["s2"])
        // Read out of order (a fresh node's rebuild): the old run's heartbeat changes nothing.
        #expect(view.apply(.heartbeat(node: "a", run: "old", sentAt: 1_500), offset: 2, now: 2_200).isEmpty)
        #expect(view.connections(of: "alice", now: 2_200).map(\.session) == ["s2"])
        #expect(view.apply(open("alice", "s0", on: "a", run: "old", at: 900), offset: 2, now: 2_200).isEmpty)
        #expect(view.entryCount == 1, "an open of an older run is not kept")
    }

    @Test("over the limit, the oldest by the user's partition order go, whatever the clocks of their nodes say")
    func oldestIsByOffset() {
        var view = SessionView(leaseMillis: lease)
        for node in ["a", "b", "c"] { _ = view.apply(.heartbeat(node: node, run: "r1", sentAt: 0), offset: 0, now: 0) }
        // Node c's clock is behind: its connection says it opened first, but its record came last.
        for (index, node) in ["a", "b", "a", "b", "c"].enumerated() {
            _ = view.apply(open("alice", "s\(index)", on: node, at: node == "c" ? 1 : 1_000 + Int64(index)), offset: Int64(10 + index), now: 100)
        }
        #expect(view.overLimit("alice", limit: 5, now: 100).isEmpty)
        #expect(view.overLimit("alice", limit: 3, now: 100).map(\.session) == ["s0", "s1"])
        _ = view.apply(.gone(node: "a", run: "r1"), offset: 1, now: 100)
        #expect(view.overLimit("alice", limit: 2, now: 100).map(\.session) == ["s1"], "only connections that count are over")
    }

    @Test("two views fed the same records in the same per-partition order agree, however the partitions interleave")
    func viewsAgree() {
        var random = SystemRandomNumberGenerator()
        // Partition 0 holds node records, partitions 1-3 users' records; each in its own order.
        var partitions: [[(SessionRecord, Int64)]] = [[], [], [], []]
        partitions[0] = [(.heartbeat(node: "a", run: "r1", sentAt: 0), 0), (.heartbeat(node: "b", run: "r1", sentAt: 0), 1)]
        for user in 0..<30 {
            let partition = 1 + user % 3
            for session in 0..<(user % 4 + 1) {
                let record = open("u\(user)", "s\(session)", on: session % 2 == 0 ? "a" : "b")
                partitions[partition].append((record, Int64(partitions[partition].count)))
            }
            if user % 5 == 0 {
                partitions[partition].append((.closed(user: "u\(user)", session: "s0", node: "a", run: "r1"), Int64(partitions[partition].count)))
            }
        }
        func feed(interleaving seed: Bool) -> SessionView {
            var view = SessionView(leaseMillis: lease)
            var cursors = [0, 0, 0, 0]
            while cursors.enumerated().contains(where: { $0.element < partitions[$0.offset].count }) {
                let ready = (0..<4).filter { cursors[$0] < partitions[$0].count }
                let partition = seed ? ready.randomElement(using: &random)! : ready[0]
                let (record, offset) = partitions[partition][cursors[partition]]
                _ = view.apply(record, offset: offset, now: 10)
                cursors[partition] += 1
            }
            return view
        }
        let first = feed(interleaving: false)
        let second = feed(interleaving: true)
        for user in 0..<30 {
            #expect(first.connections(of: "u\(user)", now: 10) == second.connections(of: "u\(user)", now: 10))
            #expect(first.connections(of: "u\(user)", now: 10).count == user % 4 + 1 - (user % 5 == 0 ? 1 : 0))
        }
        let opened = (0..<30).map { $0 % 4 + 1 }.reduce(0, +)
        let closed = (0..<30).filter { $0 % 5 == 0 }.count
        #expect(first.entryCount == second.entryCount && first.entryCount == opened - closed)
    }

    /// Resident bytes of this process, from /proc (Linux).
    static func residentBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    @Test("memory per connection in the view, measured as resident growth: 200,000 users on three nodes")
    func memoryPerConnection() throws {
        let count = 200_000
        let users = (0..<count).map { "user-\($0)" }
        let sessions = (0..<count).map { _ in
            let hex = String(UInt64.random(in: 1...UInt64.max), radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }
        let nodes = ["node-a", "node-b", "node-c"]
        let before = try #require(Self.residentBytes())
        var view = SessionView(leaseMillis: lease)
        for node in nodes { _ = view.apply(.heartbeat(node: node, run: "k2x9q", sentAt: 0), offset: 0, now: 0) }
        for index in 0..<count {
            // Strings made per record, as decoding a record's headers makes them.
            let record = SessionRecord.opened(
                user: String(decoding: Array(users[index].utf8), as: UTF8.self), session: String(decoding: Array(sessions[index].utf8), as: UTF8.self),
                node: nodes[index % 3], run: "k2x9q", device: String(decoding: Array("phone".utf8), as: UTF8.self), openedAt: 1_700_000_000_000
            )
            _ = view.apply(record, offset: Int64(index), now: 1)
        }
        let after = try #require(Self.residentBytes())
        let perConnection = Double(after - before) / Double(count)
        print("session view: \(Int(perConnection)) resident bytes per connection (\(count) users, one connection each, 16-hex session, device)")
        #expect(view.entryCount == count)
        #expect(perConnection < 1_024, "\(perConnection) bytes per connection")
    }
}
