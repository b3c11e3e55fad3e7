import HeraldCore
import Testing

@Suite("Resume cursors")
struct ResumeCursorTests {
    @Test("parses the spec's example and writes it back")
    func example() throws {
        let cursor = try ResumeCursor.parse("u:1842,*:78,c:news:13")
        #expect(cursor.entries == [
            .init(stream: .user, offset: 1842), .init(stream: .broadcast, offset: 78), .init(stream: .channel("news"), offset: 13),
        ])
        #expect(cursor.text == "u:1842,*:78,c:news:13")
        #expect(cursor.channels == ["news"])
        #expect(cursor.entries[0].stream.stream(of: "alice") == .user("alice"))
    }

    @Test("a channel name may contain colons; -1 means nothing seen yet")
    func colonsAndMinusOne() throws {
        let cursor = try ResumeCursor.parse("c:team:42:7,u:-1")
        #expect(cursor.entries == [.init(stream: .channel("team:42"), offset: 7), .init(stream: .user, offset: -1)])
    }

    @Test(arguments: [
        "", "u", "u:", "u:abc", "u:-2", "u:+5", "x:1", "c::1", "u:1,u:2", "u:1,,*:2", "*:99999999999999999999", " u:1",
    ])
    func malformed(text: String) {
        do {
            _ = try ResumeCursor.parse(text)
            Issue.record("\(text) parsed")
        } catch {
            if case .foreignStream = error { Issue.record("\(text): \(error) is not .malformed") }
        }
    }

    @Test("naming another user's stream is its own error")
    func foreign() {
        #expect(throws: ResumeCursorError.foreignStream("cursor entry \"u:bob:3\" names another user's stream; a connection's own stream is \"u\"")) {
            try ResumeCursor.parse("*:1,u:bob:3")
        }
    }

    @Test("too many entries")
    func tooMany() {
        let text = (0...ResumeCursor.maxEntries).map { "c:ch\($0):1" }.joined(separator: ",")
        #expect(throws: ResumeCursorError.self) { try ResumeCursor.parse(text) }
    }
}
