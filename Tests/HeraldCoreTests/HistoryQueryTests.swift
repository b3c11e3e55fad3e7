import HeraldCore
import NIOCore
import Testing

@Suite("History requests: the HTTP query and the history frame are range-checked before they become numbers")
struct HistoryQueryTests {
    @Test("the HTTP query: digits only, limit at least 1 and any size, before an offset that fits")
    func httpQuery() throws {
        #expect(try HistoryQuery.parse(limit: nil, before: nil) == HistoryQuery(limit: 50, before: nil))
        #expect(try HistoryQuery.parse(limit: "7", before: "0") == HistoryQuery(limit: 7, before: 0))
        #expect(try HistoryQuery.parse(limit: "007", before: "0012") == HistoryQuery(limit: 7, before: 12))
        #expect(try HistoryQuery.parse(limit: "99999999999999999999999999999", before: nil).limit == Int.max)
        #expect(try HistoryQuery.parse(limit: nil, before: "9223372036854775807").before == Int64.max)
        for limit in ["0", "000", "-1", "+1", "1.0", "1e3", "", " 1", "abc", "١"] {
            #expect(throws: ClientMessageError.self, "limit \(limit)") { try HistoryQuery.parse(limit: limit, before: nil) }
        }
        for before in ["-1", "9223372036854775808", "99999999999999999999", "", "0x1", "1 "] {
            #expect(throws: ClientMessageError.self, "before \(before)") { try HistoryQuery.parse(limit: nil, before: before) }
        }
    }

    @Test("the history frame: id and stream required, limit a whole number of 1 or more, before of 0 or more")
    func frame() throws {
        let parsed = try ClientMessage.parse(Array(#"{"type":"history","id":"h","stream":"c:news","limit":5,"before":12}"#.utf8))
        #expect(parsed == .history(id: "h", stream: "c:news", query: HistoryQuery(limit: 5, before: 12)))
        #expect(try ClientMessage.parse(Array(parsed.text.utf8)) == parsed, "the client's writer and the node's reader agree")
        #expect(try ClientMessage.parse(Array(#"{"type":"history","id":"h","stream":"u"}"#.utf8))
            == .history(id: "h", stream: "u", query: HistoryQuery()))
        for bad in [
            #"{"type":"history","stream":"u"}"#, #"{"type":"history","id":"","stream":"u"}"#, #"{"type":"history","id":"h"}"#,
            #"{"type":"history","id":"h","stream":"u","limit":0}"#, #"{"type":"history","id":"h","stream":"u","limit":1.5}"#,
            #"{"type":"history","id":"h","stream":"u","limit":true}"#, #"{"type":"history","id":"h","stream":"u","limit":"5"}"#,
            #"{"type":"history","id":"h","stream":"u","limit":1e300}"#, #"{"type":"history","id":"h","stream":"u","before":-1}"#,
            #"{"type":"history","id":7,"stream":"u"}"#,
        ] {
            #expect(throws: ClientMessageError.self, "\(bad)") { try ClientMessage.parse(Array(bad.utf8)) }
        }
    }

    @Test("a page's JSON: messages in order, next null at the start, cut and limit only when a bound cut")
    func pageJSON() {
        var json = ByteBuffer()
        ServerMessage.writeMessage(into: &json, stream: "c:a", offset: 3, id: nil, payload: ByteBuffer(string: "{}"), contentType: nil)
        let page = HistoryPage(stream: "c:a", partition: 1, messages: [.init(offset: 3, json: json)], earliest: 2, end: 9, next: nil, expired: true)
        #expect(String(buffer: page.json())
            == #"{"stream":"c:a","partition":1,"messages":[{"type":"message","stream":"c:a","offset":3,"data":{}}],"earliest":2,"end":9,"next":null,"expired":true}"#)
        let cut = HistoryPage(stream: "*", partition: 0, messages: [], earliest: 0, end: 0, next: 4, cut: .bytes, limit: 10, expired: false)
        #expect(String(buffer: cut.json()) == #"{"stream":"*","partition":0,"messages":[],"earliest":0,"end":0,"next":4,"cut":"bytes","limit":10,"expired":false}"#)
    }
}
