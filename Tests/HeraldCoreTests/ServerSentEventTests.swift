import HeraldCore
import NIOCore
import Testing

@Suite("Server-Sent Event encoding and the cursor as an event id")
struct ServerSentEventTests {
    @Test("a frame's JSON becomes data lines: every CR, LF or CRLF starts a new data line, nothing else changes")
    func dataLines() {
        let json = ByteBuffer(string: "{\"a\": 1,\n\"b\":\r\n[2,\r3]}")
        #expect(String(buffer: ServerSentEvent.dataLines(json)) == "data: {\"a\": 1,\ndata: \"b\":\ndata: [2,\ndata: 3]}\n")
        #expect(String(buffer: ServerSentEvent.dataLines(ByteBuffer(string: "{}"))) == "data: {}\n")
    }

    @Test("a server text frame's data lines are those of its payload, for frames of every header length; other frames have none")
    func fromFrames() {
        for size in [10, 300, 70_000] {
            let text = "\"" + String(repeating: "x", count: size) + "\""
            let frame = ServerFrame.build(.text) { $0.writeString(text) }
            #expect(ServerSentEvent.dataLines(ofTextFrame: frame).map { String(buffer: $0) } == "data: \(text)\n")
            #expect(!ServerSentEvent.isDataLines(frame))
        }
        #expect(ServerSentEvent.dataLines(ofTextFrame: ServerFrame.control(.ping)) == nil)
        #expect(ServerSentEvent.isDataLines(ServerSentEvent.dataLines(ByteBuffer(string: "{}"))))
        let close = ServerFrame.close(code: 4008, reason: "slow")
        #expect(ServerFrame.parts(of: close).map { ($0.opcode, $0.payload.readableBytes) } ?? (.text, 0) == (.close, 6))
    }

    @Test("the close event carries the code and reason as JSON after event: close")
    func closeEvent() {
        #expect(String(buffer: ServerSentEvent.close(code: 4008, reason: "too \"slow\"")) ==
            "event: close\ndata: {\"type\":\"close\",\"code\":4008,\"reason\":\"too \\\"slow\\\"\"}\n\n")
    }

    @Test("an event id is EPOCH CURSOR and reads back; ids without both parts are not ids")
    func eventIDs() throws {
        let cursor = try ResumeCursor.parse("*:78,c:news:13,u:1842")
        let id = cursor.eventID(epoch: "abc.4.x")
        #expect(id == "abc.4.x *:78,c:news:13,u:1842")
        let parts = try #require(ResumeCursor.parts(ofEventID: id))
        #expect(parts.epoch == "abc.4.x")
        #expect(try ResumeCursor.parse(parts.cursor) == cursor)
        // A channel name with a space stays in the cursor: only the first space splits.
        #expect(ResumeCursor.parts(ofEventID: "e c:a b:3")?.cursor == "c:a b:3")
        #expect(ResumeCursor.parts(ofEventID: "nospace") == nil)
        #expect(ResumeCursor.parts(ofEventID: " u:3") == nil)
        #expect(ResumeCursor.parts(ofEventID: "e ") == nil)
    }
}
