import HeraldCore
@testable import HeraldGateway
import Testing

@Suite("Message ids per stream and device cursors, as values")
struct DeviceCursorUnitTests {
    @Test("the first offset of an id in a stream wins; the same id in another stream is another message")
    func firstCopyWins() {
        let repeats = RepeatedMessages(capacity: 8)
        #expect(!repeats.isRepeat(.user("alice"), id: "a", offset: 10))
        #expect(repeats.isRepeat(.user("alice"), id: "a", offset: 12), "a later copy is a repeat")
        #expect(!repeats.isRepeat(.user("alice"), id: "a", offset: 10), "the first copy read again is not")
        #expect(!repeats.isRepeat(.user("bob"), id: "a", offset: 13), "another user's stream")
        #expect(!repeats.isRepeat(.channel("alice"), id: "a", offset: 14), "a channel with the user's name")
        #expect(repeats.isKnownRepeat(.user("alice"), id: "a", offset: 11))
        #expect(!repeats.isKnownRepeat(.user("alice"), id: "a", offset: 9), "a replay reading before the first copy")
        #expect(!repeats.isKnownRepeat(.broadcast, id: "never-seen", offset: 1))
        #expect(repeats.firstOffset(of: "a", in: .user("alice")) == 10)
    }

    @Test("an id is a message within its scope: another API key's same id is another message; the scope is read back from the headers")
    func scopedIDs() throws {
        var first = HeraldRecord(stream: .user("fay"), id: "shared")
        first.idScope = "1a2b"
        var other = first
        other.idScope = "3c4d"
        let unscoped = HeraldRecord(stream: .user("fay"), id: "shared")
        #expect(Set([first.deduplicationKey, other.deduplicationKey, unscoped.deduplicationKey]).count == 3)
        let decoded = try HeraldRecord.decode(key: Array(first.key.utf8), headers: first.headers)
        #expect(decoded.deduplicationKey == first.deduplicationKey)
        #expect(HeraldRecord(stream: .broadcast).deduplicationKey == nil)
    }

    @Test("the memory holds its capacity of ids, forgetting the oldest first")
    func boundedByCount() {
        let repeats = RepeatedMessages(capacity: 3)
        for (index, id) in ["a", "b", "c", "d"].enumerated() {
            #expect(!repeats.isRepeat(.broadcast, id: id, offset: Int64(index)))
        }
        #expect(repeats.count == 3)
        #expect(repeats.firstOffset(of: "a", in: .broadcast) == nil, "the oldest is forgotten")
        #expect(repeats.isRepeat(.broadcast, id: "d", offset: 9))
        #expect(!repeats.isRepeat(.broadcast, id: "a", offset: 9), "a forgotten id is delivered again")
        #expect(repeats.count == 3)
    }

    @Test("a cursor record reads back what was written; other bytes are not a record")
    func recordRoundTrip() throws {
        let cursor = try ResumeCursor.parse("u:12,*:3,c:news:7")
        let record = DeviceCursorRecord(user: "alice", device: "phone", epoch: "c.4", cursor: cursor)
        #expect(DeviceCursorRecord.decode(record.value) == record)
        #expect(record.key == DeviceCursorRecord.key(user: "alice", device: "phone"))
        #expect(DeviceCursorRecord.key(user: "al", device: "ice") != DeviceCursorRecord.key(user: "ali", device: "ce"))
        for bad in ["", "not json", #"{"user":"a","device":"d","epoch":"e"}"#, #"{"user":"a","device":"d","epoch":"e","cursor":"u:x"}"#,
                    #"{"user":"","device":"d","epoch":"e","cursor":"u:1"}"#,
                    #"{"user":"\#(String(repeating: "x", count: 257))","device":"d","epoch":"e","cursor":"u:1"}"#] {
            #expect(DeviceCursorRecord.decode(Array(bad.utf8)) == nil, "\(bad.prefix(60))")
        }
    }

    @Test("stored cursors move forward within an epoch, start over in a new one, and hold their capacity of devices")
    func storedCursors() throws {
        let store = StoredCursors(capacity: 2)
        func record(_ device: String, _ epoch: String, _ text: String) throws -> DeviceCursorRecord {
            DeviceCursorRecord(user: "alice", device: device, epoch: epoch, cursor: try ResumeCursor.parse(text))
        }
        store.store(try record("phone", "e1", "u:10,*:3"))
        store.store(try record("phone", "e1", "u:8,c:news:2"))
        #expect(store.entry(user: "alice", device: "phone")?.cursor.text == "u:10,*:3,c:news:2", "an older commit moves nothing back")
        store.store(try record("phone", "e2", "u:1"))
        #expect(store.entry(user: "alice", device: "phone") == StoredCursors.Entry(epoch: "e2", cursor: try ResumeCursor.parse("u:1")))
        store.store(try record("laptop", "e2", "u:2"))
        store.store(try record("tablet", "e2", "u:3"))
        #expect(store.count == 2)
        #expect(store.entry(user: "alice", device: "phone") == nil, "the device stored first is forgotten first")
        #expect(store.entry(user: "alice", device: "tablet") != nil)
    }

    @Test("a connection's positions: the welcome's, moved forward by acks, committed once per change")
    func ackedPositions() {
        var acked = AckedPositions()
        acked.welcomed([(.user("alice"), 10), (.broadcast, 3)])
        #expect(!acked.isDirty)
        let behind = acked.ack(.user("alice"), offset: 9)
        #expect(!behind, "behind the welcome")
        let invalid = acked.ack(.user("alice"), offset: -2)
        #expect(!invalid, "not an offset")
        let forward = acked.ack(.user("alice"), offset: 14)
        let channel = acked.ack(.channel("news"), offset: 5)
        #expect(forward && channel && acked.isDirty)
        let first = acked.takeCommit().text
        #expect(first == "*:3,c:news:5,u:14")
        #expect(!acked.isDirty)
        acked.forget(.channel("news"))
        let second = acked.takeCommit().text
        #expect(second == "*:3,u:14")
    }
}
