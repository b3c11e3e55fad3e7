import Foundation
import HeraldCore
import NIOCore
import Testing

@Suite("JSON and UTF-8 validation")
struct ValidationTests {
    @Test(arguments: [
        #"{}"#, #"[]"#, #"{"a":[1,2.5,-3e10,true,false,null,"x\n\u00e9"]}"#, #"  "text"  "#, "0", "-0.5E+3",
        #"{"nested":{"deeper":[{"k":"v"}]}}"#, "\"é\"",
    ])
    func validJSON(_ text: String) {
        #expect(JSONValidator.isJSON(Array(text.utf8)), "\(text)")
    }

    @Test(arguments: [
        "", "{", #"{"a":}"#, #"{"a" 1}"#, "[1,]", "01", "1.", ".5", "tru", #""\x""#, "\"\u{01}\"", "{} {}", "NaN", #"{'a':1}"#,
    ])
    func invalidJSON(_ text: String) {
        #expect(!JSONValidator.isJSON(Array(text.utf8)), "\(text)")
    }

    @Test func invalidUTF8InsideStringsIsNotJSON() {
        #expect(!JSONValidator.isJSON([0x22, 0xFF, 0x22]))
        #expect(!JSONValidator.isJSON([0x22, 0xC0, 0xAF, 0x22]), "overlong")
    }

    @Test func nestingIsBounded() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(!JSONValidator.isJSON(Array(deep.utf8)))
        let fine = String(repeating: "[", count: 10) + String(repeating: "]", count: 10)
        #expect(JSONValidator.isJSON(Array(fine.utf8)))
    }

    @Test func utf8Rules() {
        #expect(UTF8Validation.isValid(Array("héllo wörld 😀".utf8)))
        #expect(!UTF8Validation.isValid([0xED, 0xA0, 0x80]), "surrogate")
        #expect(!UTF8Validation.isValid([0xF4, 0x90, 0x80, 0x80]), "above U+10FFFF")
        #expect(!UTF8Validation.isValid([0xE2, 0x82]), "cut off")
        var streaming = UTF8Validation()
        let firstHalf = streaming.consume([0xF0, 0x9F])
        #expect(firstHalf && !streaming.isComplete, "a character may continue in the next chunk")
        let secondHalf = streaming.consume([0x98, 0x80])
        #expect(secondHalf && streaming.isComplete)
        var failing = UTF8Validation()
        let stray = failing.consume([0x61, 0x80])
        #expect(!stray, "a continuation byte with no lead fails at once")
    }
}

@Suite("Server frames are complete WebSocket frames with the protocol's JSON")
struct ServerMessageTests {
    /// Splits a server frame into its header fields and JSON payload.
    private func decode(_ frame: ByteBuffer) throws -> (opcode: UInt8, json: [String: Any]) {
        var buffer = frame
        guard let first = buffer.readInteger(as: UInt8.self), let second = buffer.readInteger(as: UInt8.self) else {
            throw ClientMessageError("frame too short")
        }
        #expect(first & 0x80 != 0 && second & 0x80 == 0)
        var length = Int(second)
        if length == 126 { length = Int(buffer.readInteger(as: UInt16.self) ?? 0) }
        if length == 127 { length = Int(buffer.readInteger(as: UInt64.self) ?? 0) }
        #expect(buffer.readableBytes == length)
        let object = try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any]
        return (first & 0x0F, try #require(object))
    }

    @Test func jsonPayloadIsEmbedded() throws {
        let frame = ServerMessage.message(stream: "u", offset: 1842, id: "5f0c", payload: ByteBuffer(string: #"{"any":"json"}"#), contentType: nil)
        let (opcode, json) = try decode(frame)
        #expect(opcode == 1)
        #expect(json["type"] as? String == "message" && json["stream"] as? String == "u")
        #expect((json["offset"] as? NSNumber)?.int64Value == 1842 && json["id"] as? String == "5f0c")
        #expect((json["data"] as? [String: Any])?["any"] as? String == "json")
        #expect(json["encoding"] == nil)
    }

    @Test func textBecomesAJSONStringAndBinaryBase64() throws {
        let text = try decode(ServerMessage.message(stream: "c:news", offset: 13, id: nil, payload: ByteBuffer(string: "say \"hi\"\n\t\u{01}"), contentType: nil))
        #expect(text.json["data"] as? String == "say \"hi\"\n\t\u{01}")
        #expect(text.json["id"] == nil)
        let declaredText = try decode(ServerMessage.message(stream: "u", offset: 1, id: nil, payload: ByteBuffer(string: "[1]"), contentType: .text))
        #expect(declaredText.json["data"] as? String == "[1]", "declared text is not parsed as JSON")
        let binary = try decode(ServerMessage.message(stream: "*", offset: 78, id: nil, payload: ByteBuffer(bytes: [0, 1, 2, 0xFF]), contentType: nil))
        #expect(binary.json["data"] as? String == "AAEC/w==" && binary.json["encoding"] as? String == "base64")
        let mislabelled = try decode(ServerMessage.message(stream: "u", offset: 2, id: nil, payload: ByteBuffer(string: "{oops"), contentType: .json))
        #expect(mislabelled.json["data"] as? String == "{oops", "JSON that is not JSON is delivered as text")
    }

    @Test func largePayloadsUseExtendedLengths() throws {
        for size in [125, 126, 70_000] {
            let payload = "\"" + String(repeating: "x", count: size) + "\""
            let (_, json) = try decode(ServerMessage.message(stream: "u", offset: 1, id: nil, payload: ByteBuffer(string: payload), contentType: nil))
            #expect((json["data"] as? String)?.count == size)
        }
    }

    @Test func welcomeAndError() throws {
        let welcome = try decode(ServerMessage.welcome(
            node: "herald-0", session: "00000000000000ab", epoch: "cluster.12",
            positions: [("u", 1841), ("*", -1), ("c:news", 12)], recovered: false, reason: "expired"
        ))
        #expect(welcome.json["type"] as? String == "welcome" && welcome.json["node"] as? String == "herald-0")
        let positions = try #require(welcome.json["positions"] as? [String: NSNumber])
        #expect(positions["u"]?.int64Value == 1841 && positions["*"]?.int64Value == -1 && positions["c:news"]?.int64Value == 12)
        #expect(welcome.json["recovered"] as? Bool == false && welcome.json["reason"] as? String == "expired")
        let plain = try decode(ServerMessage.welcome(node: "n", session: "s", epoch: "e", positions: []))
        #expect(plain.json["recovered"] == nil, "recovered only appears when a cursor was given")
        #expect(plain.json["source"] == nil, "source only appears for a stored cursor")
        let stored = try decode(ServerMessage.welcome(
            node: "n", session: "s", epoch: "e", positions: [("u", 3)], recovered: true, source: ServerMessage.storedCursorSource
        ))
        #expect(stored.json["recovered"] as? Bool == true && stored.json["source"] as? String == "stored-cursor")

        let error = try decode(ServerMessage.error(code: "bad-request", message: "the frame has no \"type\""))
        #expect(error.json["code"] as? String == "bad-request" && error.json["message"] as? String == "the frame has no \"type\"")
    }

    @Test("published and an error naming a publish carry the client's id, escaped, and a sync publish's position")
    func publishedAndPublishError() throws {
        let id = #"draft "7" \ ü"#
        let synced = try decode(ServerMessage.published(id: id, stream: "u", offset: 1842))
        #expect(synced.json["type"] as? String == "published" && synced.json["id"] as? String == id)
        #expect(synced.json["stream"] as? String == "u" && (synced.json["offset"] as? NSNumber)?.int64Value == 1842)
        let upstreamOnly = try decode(ServerMessage.published(id: "a"))
        #expect(upstreamOnly.json.keys.sorted() == ["id", "type"], "no position without sync")
        let failed = try decode(ServerMessage.error(code: "publish-failed", message: "send it again", id: id))
        #expect(failed.json["code"] as? String == "publish-failed" && failed.json["id"] as? String == id)
        let plain = try decode(ServerMessage.error(code: "bad-request", message: "m"))
        #expect(plain.json["id"] == nil, "an error about no publish names none")
    }

    @Test("refreshed carries the new expiry in Unix milliseconds")
    func refreshed() throws {
        let frame = try decode(ServerMessage.refreshed(expiresAt: 1_767_225_600_123))
        #expect(frame.json["type"] as? String == "refreshed")
        #expect((frame.json["expires_at"] as? NSNumber)?.int64Value == 1_767_225_600_123)
    }

    @Test func closeFrames() {
        var close = ServerFrame.close(code: 4008, reason: String(repeating: "é", count: 100))
        let first = close.readInteger(as: UInt8.self)
        let length = Int(close.readInteger(as: UInt8.self) ?? 255)
        let code = close.readInteger(as: UInt16.self)
        #expect(first == 0x88)
        #expect(length <= 125, "a control frame's payload fits 125 bytes")
        #expect(code == 4008)
        #expect(UTF8Validation.isValid(Array(close.readableBytesView)), "the reason is cut on a character boundary")
    }
}

@Suite("Client frames")
struct ClientMessageTests {
    private func parse(_ text: String) throws -> ClientMessage {
        try ClientMessage.parse(Array(text.utf8))
    }

    @Test func theFourFrames() throws {
        #expect(try parse(#"{"type":"ack","stream":"u","offset":1842}"#) == .ack(stream: "u", offset: 1842))
        #expect(try parse(#"{"type":"subscribe","channel":"news","offset":12}"#) == .subscribe(channel: "news", offset: 12))
        #expect(try parse(#"{"type":"subscribe","channel":"news"}"#) == .subscribe(channel: "news", offset: nil))
        #expect(try parse(#"{"type":"unsubscribe","channel":"news"}"#) == .unsubscribe(channel: "news"))
        // 0 and 1 are numbers, not booleans (Foundation on Linux says `1 is Bool`).
        #expect(try parse(#"{"type":"ack","stream":"u","offset":1}"#) == .ack(stream: "u", offset: 1))
        #expect(try parse(#"{"type":"subscribe","channel":"news","offset":0}"#) == .subscribe(channel: "news", offset: 0))
        guard case .publish(let data, let sync, let id) = try parse(#"{"type":"publish","data":{"k":[1,"x/y"]},"sync":true}"#) else {
            Issue.record("not a publish")
            return
        }
        #expect(sync && id == nil)
        #expect(String(decoding: data, as: UTF8.self) == #"{"k":[1,"x/y"]}"#)
        #expect(try parse(#"{"type":"publish","data":1,"id":"d-1"}"#) == .publish(data: Array("1".utf8), sync: false, id: "d-1"))
    }

    @Test(arguments: [
        "not json", "[1]", #"{"stream":"u"}"#, #"{"type":"dance"}"#, #"{"type":"ack","stream":"u"}"#,
        #"{"type":"ack","stream":"u","offset":"12"}"#, #"{"type":"ack","stream":"u","offset":1.5}"#,
        #"{"type":"ack","stream":"u","offset":true}"#, #"{"type":"subscribe"}"#, #"{"type":"subscribe","channel":""}"#,
        #"{"type":"publish"}"#, #"{"type":"publish","data":1,"sync":1}"#, #"{"type":"subscribe","channel":"n","offset":false}"#,
        #"{"type":"publish","data":1,"id":""}"#, #"{"type":"publish","data":1,"id":7}"#,
        #"{"type":"publish","data":1,"id":"\#(String(repeating: "x", count: 129))"}"#,
        #"{"type":"publish","channel":"video:1","data":1,"sync":false}"#, #"{"type":"publish","channel":"","data":1}"#,
        #"{"type":"publish","channel":7,"data":1}"#, #"{"type":"refresh"}"#, #"{"type":"refresh","token":""}"#,
        #"{"type":"refresh","token":7}"#, #"{"type":"refresh","token":"\#(String(repeating: "x", count: 8 * 1024 + 1))"}"#,
    ])
    func refusedWithAMessage(_ text: String) {
        #expect {
            try parse(text)
        } throws: { error in
            !((error as? ClientMessageError)?.message.isEmpty ?? true)
        }
    }

    @Test("every client frame round-trips through its text, whatever a channel or stream name holds")
    func roundTrip() throws {
        let awkward = #"news "live" \ back/slash ünï 😀 "# + "\u{1}"
        let messages: [ClientMessage] = [
            .ack(stream: "c:" + awkward, offset: 42),
            .subscribe(channel: awkward, offset: nil),
            .subscribe(channel: awkward, offset: -1),
            .unsubscribe(channel: awkward),
            .publish(data: Array(#"{"draft":"a \"quote\""}"#.utf8), sync: true),
            .publish(data: Array("[1,2,3]".utf8), sync: false),
            .publish(data: Array("null".utf8), sync: true, id: awkward),
            .channelPublish(channel: "video:" + awkward, data: Array(#"{"comment":"nice"}"#.utf8), id: "c-1"),
            .channelPublish(channel: awkward, data: Array("1".utf8)),
            .refresh(token: "eyJhbGciOiJIUzI1NiJ9.e30.sig"),
        ]
        for message in messages {
            #expect(try parse(message.text) == message, "\(message.text)")
        }
    }

    @Test("a cursor built from a welcome's positions is the text the node parses back")
    func cursorFromPositions() throws {
        let cursor = ResumeCursor(positions: ["u": 17, "*": 3, "c:a:b": 9, "nonsense": 1])
        #expect(cursor.text == "*:3,c:a:b:9,u:17")
        #expect(try ResumeCursor.parse(cursor.text) == cursor)
    }
}
