import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import HeraldKafka
import NIOCore
import Testing

@Suite("History: the newest messages of a stream from Kafka, paged back with before, bounded, honest after retention")
struct HistoryTests {
    /// A key other than `key` whose records land in the same partition of the harness's 4.
    static func neighbour(of key: String) -> String {
        (0...).lazy.map { "other\($0)" }.first {
            Murmur2.partition(forKey: $0, partitionCount: 4) == Murmur2.partition(forKey: key, partitionCount: 4)
        }!
    }

    /// One history page over the internal API, checked to be a 200.
    static func page(_ node: GatewayHarness, _ stream: String, _ query: String = "") async throws -> [String: Any] {
        let response = try await api(node.apiPort, "GET", "/v1/streams/\(stream)/history\(query)")
        guard response.status == 200 else { throw TestFailure("history \(stream)\(query): \(response.status) \(response.body)") }
        return response.json
    }

    static func messages(_ page: [String: Any]) -> [(offset: Int64, n: Int)] {
        (page["messages"] as? [[String: Any]] ?? []).map { message in
            ((message["offset"] as? NSNumber)?.int64Value ?? -1, ((message["data"] as? [String: Any])?["n"] as? NSNumber)?.intValue ?? -1)
        }
    }

    static func number(_ page: [String: Any], _ key: String) -> Int64? { (page[key] as? NSNumber)?.int64Value }

    @Test("GET history: the last N of a channel in offset order, without the other streams of its partition; before pages back to the first")
    func lastNInOrderThenPaging() async throws {
        try await GatewayHarness.run { node in
            let other = Self.neighbour(of: "news")
            var offsets: [Int64] = []
            for n in 0..<30 {
                // Noise in the same partition: another key, and the user stream that shares the channel's key.
                try await node.produce(HeraldRecord(stream: .user(other)), #"{"noise":\#(n)}"#)
                if n % 3 == 0 { try await node.produce(HeraldRecord(stream: .user("news")), #"{"n":-1}"#) }
                offsets.append(try await node.produce(HeraldRecord(stream: .channel("news"), id: "m\(n)"), #"{"n":\#(n)}"#).offset)
            }
            let first = try await Self.page(node, "c:news", "?limit=10")
            #expect(Self.messages(first).map(\.n) == Array(20..<30), "the newest ten, oldest first")
            #expect(Self.messages(first).map(\.offset) == Array(offsets[20..<30]))
            #expect(first["stream"] as? String == "c:news")
            #expect(Self.number(first, "next") == offsets[20])
            #expect(Self.number(first, "earliest") == 0)
            #expect(first["expired"] as? Bool == false)
            #expect(first["cut"] == nil, "ten asked, ten given: nothing cut")
            let element = try #require((first["messages"] as? [[String: Any]])?.first)
            #expect(element["type"] as? String == "message" && element["id"] as? String == "m20" && element["stream"] as? String == "c:news")

            var all = Self.messages(first).map(\.n)
            var before = Self.number(first, "next")
            var pages = 1
            while let cursor = before {
                let page = try await Self.page(node, "c:news", "?limit=10&before=\(cursor)")
                let got = Self.messages(page)
                #expect(got.allSatisfy { $0.offset < cursor }, "before is exclusive")
                all = got.map(\.n) + all
                before = Self.number(page, "next")
                pages += 1
                #expect(pages <= 4)
                if pages > 4 { break }
            }
            #expect(all == Array(0..<30), "the pages together are the channel, each message once, in order")

            // The default count is 50: all thirty.
            #expect(Self.messages(try await Self.page(node, "c:news")).map(\.n) == Array(0..<30))
            // A stream with no messages: an empty page, nothing earlier.
            let empty = try await Self.page(node, "c:nothing-here")
            #expect(Self.messages(empty).isEmpty && empty["next"] is NSNull && empty["expired"] as? Bool == false)
        }
    }

    @Test("a huge limit gets at most the node's count bound and says so; a byte bound cuts and says so; the next pages lose nothing")
    func boundedAnswers() async throws {
        try await GatewayHarness.run(configure: {
            $0.history.maxMessages = 5
            $0.history.maxBytes = 2_048
        }) { node in
            for n in 0..<12 { try await node.produce(HeraldRecord(stream: .channel("small")), #"{"n":\#(n)}"#) }
            let huge = try await Self.page(node, "c:small", "?limit=99999999999999999999999999")
            #expect(Self.messages(huge).map(\.n) == Array(7..<12))
            #expect(huge["cut"] as? String == "count" && Self.number(huge, "limit") == 5)

            let padding = String(repeating: "x", count: 600)
            for n in 0..<7 { try await node.produce(HeraldRecord(stream: .channel("big")), #"{"n":\#(n),"pad":"\#(padding)"}"#) }
            var page = try await Self.page(node, "c:big", "?limit=5")
            #expect(Self.messages(page).map(\.n) == [4, 5, 6], "three of about 650 bytes fit in 2048")
            #expect(page["cut"] as? String == "bytes" && Self.number(page, "limit") == 2_048)
            var all = Self.messages(page).map(\.n)
            var rounds = 0
            while let before = Self.number(page, "next"), rounds < 5 {
                page = try await Self.page(node, "c:big", "?limit=5&before=\(before)")
                all = Self.messages(page).map(\.n) + all
                rounds += 1
            }
            #expect(all == Array(0..<7))

            // A message larger than the byte bound by itself is stepped over, said so, and paging goes on.
            try await node.produce(HeraldRecord(stream: .channel("odd")), #"{"n":0}"#)
            let oversized = try await node.produce(HeraldRecord(stream: .channel("odd")), #"{"n":1,"pad":"\#(String(repeating: "y", count: 3_000))"}"#)
            try await node.produce(HeraldRecord(stream: .channel("odd")), #"{"n":2}"#)
            let newest = try await Self.page(node, "c:odd")
            #expect(Self.messages(newest).map(\.n) == [2] && newest["cut"] as? String == "bytes")
            #expect(Self.number(newest, "next") == oversized.offset + 1, "the next page starts with the message that did not fit")
            let alone = try await Self.page(node, "c:odd", "?before=\(oversized.offset + 1)")
            #expect(Self.messages(alone).isEmpty && alone["cut"] as? String == "bytes")
            #expect(Self.number(alone, "next") == oversized.offset, "a message that can never fit is stepped over")
            let oldest = try await Self.page(node, "c:odd", "?before=\(oversized.offset)")
            #expect(Self.messages(oldest).map(\.n) == [0] && oldest["next"] is NSNull)
        }
    }

    @Test("a channel whose messages are far apart in a busy partition: the read stops at its scan bound, says so, and the next pages find them")
    func scanBound() async throws {
        try await GatewayHarness.run(configure: { $0.history.maxScannedRecords = 50 }) { node in
            let other = Self.neighbour(of: "rare")
            try await node.produce(HeraldRecord(stream: .channel("rare")), #"{"n":0}"#)
            let noise = await node.producer.send((0..<120).map { n in
                KafkaOutgoingRecord(topic: node.topic, key: Array(other.utf8), value: ByteBuffer(string: #"{"noise":\#(n)}"#))
            })
            for result in noise { _ = try result.get() }
            try await node.produce(HeraldRecord(stream: .channel("rare")), #"{"n":1}"#)

            var page = try await Self.page(node, "c:rare", "?limit=2")
            #expect(Self.messages(page).map(\.n) == [1])
            #expect(page["cut"] as? String == "scan" && Self.number(page, "limit") == 50)
            var all = Self.messages(page).map(\.n)
            var rounds = 0
            while let before = Self.number(page, "next"), rounds < 10 {
                page = try await Self.page(node, "c:rare", "?limit=2&before=\(before)")
                all = Self.messages(page).map(\.n) + all
                rounds += 1
            }
            #expect(all == [0, 1], "paging on past the scan bound finds the older message")
            #expect(rounds >= 2, "the 120 records between them take more than one scan")
        }
    }

    @Test("after retention removed a channel's first messages, history names the earliest offset still held and says older ones expired")
    func honestAfterRetention() async throws {
        try await GatewayHarness.run { node in
            var old: [Int64] = []
            for n in 0..<3 { old.append(try await node.produce(HeraldRecord(stream: .channel("old")), #"{"n":\#(n)}"#).offset) }
            // The mock keeps about 5 MiB per partition: 8 MiB of incompressible records in the channel's
            // partition push its log start past the first messages.
            let other = Self.neighbour(of: "old")
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<8 {
                let results = await node.producer.send((0..<64).map { _ in
                    let bytes = (0..<(16 * 1024)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                    return KafkaOutgoingRecord(topic: node.topic, key: Array(other.utf8), value: ByteBuffer(bytes: bytes))
                })
                for result in results { _ = try result.get() }
            }
            for n in 3..<5 { try await node.produce(HeraldRecord(stream: .channel("old")), #"{"n":\#(n)}"#) }

            let page = try await Self.page(node, "c:old", "?limit=50")
            let earliest = try #require(Self.number(page, "earliest"))
            #expect(earliest > old[2], "retention removed the first messages (log start \(earliest))")
            #expect(Self.messages(page).map(\.n) == [3, 4], "what is still held, and nothing invented")
            #expect(page["expired"] as? Bool == true)
            #expect(page["next"] is NSNull)

            let gone = try await Self.page(node, "c:old", "?before=\(old[2] + 1)")
            #expect(Self.messages(gone).isEmpty)
            #expect(gone["expired"] as? Bool == true && Self.number(gone, "earliest") == earliest)
        }
    }

    @Test("GET history refuses every malformed parameter with 400 naming it, and other methods with 405")
    func refusesBadParameters() async throws {
        try await GatewayHarness.run { node in
            for (query, word) in [
                ("?limit=0", "limit"), ("?limit=-1", "limit"), ("?limit=abc", "limit"), ("?limit=", "limit"), ("?limit=1.5", "limit"),
                ("?before=-1", "before"), ("?before=99999999999999999999", "before"), ("?before=9223372036854775808", "before"),
                ("?before=0x10", "before"), ("?offset=3", "offset"),
            ] {
                let response = try await api(node.apiPort, "GET", "/v1/streams/c:news/history\(query)")
                #expect(response.status == 400, "\(query): \(response.status) \(response.body)")
                #expect(response.errorMessage?.contains(word) == true, "\(query): \(response.body)")
            }
            for stream in ["news", "c:", "u:", "x:y", "c:" + String(repeating: "a", count: 257)] {
                let response = try await api(node.apiPort, "GET", "/v1/streams/\(stream)/history")
                #expect(response.status == 400, "\(stream): \(response.status) \(response.body)")
            }
            let longest = try await api(node.apiPort, "GET", "/v1/streams/c:\(String(repeating: "a", count: 256))/history")
            #expect(longest.status == 200, "258 characters in all is the documented bound: \(longest.body)")
            let largest = try await api(node.apiPort, "GET", "/v1/streams/c:news/history?before=9223372036854775807")
            #expect(largest.status == 200, "the largest offset is a valid bound: \(largest.body)")
            let post = try await api(node.apiPort, "POST", "/v1/streams/c:news/history", body: "{}")
            #expect(post.status == 405)
            let anonymous = try await api(node.apiPort, "GET", "/v1/streams/c:news/history", key: nil)
            #expect(anonymous.status == 401)
        }
    }

    @Test("GET history of a user's stream and of broadcast")
    func userAndBroadcast() async throws {
        try await GatewayHarness.run { node in
            try await node.produce(HeraldRecord(stream: .user("bob@example.com")), #"{"n":1}"#)
            try await node.produce(HeraldRecord(stream: .broadcast), #"{"n":2}"#)
            let user = try await Self.page(node, "u:bob%40example.com")
            #expect(Self.messages(user).map(\.n) == [1] && user["stream"] as? String == "u:bob@example.com")
            #expect(Self.messages(try await Self.page(node, "*")).map(\.n) == [2])
        }
    }

    @Test("a history frame answers u, * and granted channels with the request's id and the live frames' messages; any other stream is refused")
    func overWebSocket() async throws {
        try await GatewayHarness.run { node in
            let alice = try await node.connect("alice", channels: ["news"], subscribe: ["news"])
            for n in 0..<3 { try await node.produce(HeraldRecord(stream: .channel("news"), id: "n\(n)"), #"{"n":\#(n)}"#) }
            try await node.produce(HeraldRecord(stream: .user("alice")), #"{"mine":1}"#)
            try await node.produce(HeraldRecord(stream: .broadcast), #"{"all":1}"#)
            try await node.produce(HeraldRecord(stream: .channel("payroll")), #"{"secret":1}"#)
            try await node.produce(HeraldRecord(stream: .user("bob")), #"{"secret":2}"#)
            var live: [ServerEvent.Message] = []
            for _ in 0..<5 { live.append(try await alice.nextMessage(within: .seconds(30))) }

            func history(_ id: String, _ stream: String, limit: Int = 50, before: Int64? = nil) async throws -> ServerEvent {
                alice.session.history(id: id, stream: stream, limit: limit, before: before)
                return try await alice.next(within: .seconds(30))
            }
            guard case .history(let news) = try await history("h1", "c:news") else { throw TestFailure("no history for c:news") }
            #expect(news.id == "h1" && news.stream == "c:news")
            #expect(news.messages == live.filter { $0.stream == "c:news" }, "the same message objects as live delivery")
            guard case .history(let older) = try await history("h2", "c:news", limit: 1, before: news.messages[1].offset) else {
                throw TestFailure("no second page")
            }
            #expect(older.messages == [news.messages[0]])
            guard case .history(let mine) = try await history("h3", "u") else { throw TestFailure("no history for u") }
            #expect(mine.messages.map(\.data) == [#"{"mine":1}"#] && mine.messages.first?.stream == "u")
            guard case .history(let all) = try await history("h4", "*") else { throw TestFailure("no history for *") }
            #expect(all.messages.map(\.data) == [#"{"all":1}"#])
            for (id, stream) in [("h5", "c:payroll"), ("h6", "u:bob"), ("h7", "bob"), ("h8", "c:")] {
                guard case .publishFailed(let answered, let code, _) = try await history(id, stream) else {
                    throw TestFailure("\(stream) was not refused")
                }
                #expect(answered == id && code == "channel-not-allowed", "\(stream)")
            }
            alice.session.connection.send(text: #"{"type":"history","id":"h9","stream":"c:news","limit":0}"#)
            guard case .error(let code, let message) = try await alice.next(within: .seconds(30)) else { throw TestFailure("limit 0 accepted") }
            #expect(code == "bad-request" && message.contains("limit"))
            try await Task.sleep(for: .milliseconds(300))
            #expect(await alice.pending().isEmpty, "nothing of payroll or bob, ever")
        }
    }

    @Test("a history frame gives a channel at most its namespace's history length, says so and pages on; history=0 offers none; the internal API keeps the node's bound")
    func namespaceHistoryLength() async throws {
        try await GatewayHarness.run(configure: {
            $0.namespaces = try! ChannelNamespaces.parse("video subscribe=anonymous history=3; quiet subscribe=anonymous history=0")
        }) { node in
            let viewer = try await node.anonymous(channels: ["video:1", "quiet:1"])
            for n in 0..<5 { try await node.produce(HeraldRecord(stream: .channel("video:1"), id: "v\(n)"), #"{"n":\#(n)}"#) }
            try await node.produce(HeraldRecord(stream: .channel("quiet:1")), #"{"n":0}"#)
            for _ in 0..<6 { _ = try await viewer.nextMessage(within: .seconds(30)) }
            func history(_ id: String, _ stream: String, before: Int64? = nil) async throws -> ServerEvent {
                viewer.session.history(id: id, stream: stream, limit: 50, before: before)
                return try await viewer.next(within: .seconds(30))
            }
            let first = try await history("h1", "c:video:1")
            guard case .history(let newest) = first else { throw TestFailure("no history for c:video:1: \(first)") }
            #expect(newest.messages.map(\.id) == ["v2", "v3", "v4"], "the newest 3, oldest first")
            #expect(newest.cut == "count" && newest.limit == 3, "the namespace's bound, named")
            guard case .history(let older) = try await history("h2", "c:video:1", before: newest.next) else { throw TestFailure("no second page") }
            #expect(older.messages.map(\.id) == ["v0", "v1"] && older.next == nil)
            guard case .publishFailed(let answered, let code, let message) = try await history("h3", "c:quiet:1") else {
                throw TestFailure("history=0 answered")
            }
            #expect(answered == "h3" && code == "history-not-offered" && message.contains("quiet:1"), "\(message)")
            #expect(Self.messages(try await Self.page(node, "c:video:1")).map(\.n) == Array(0..<5), "business services read past the namespace's bound")
            #expect(Self.messages(try await Self.page(node, "c:quiet:1")).map(\.n) == [0])
        }
    }

    @Test("history reads past the node's concurrent bound are refused busy: 503 with Retry-After over HTTP, busy with the id in a frame; a connection's second request while its first is read is busy")
    func busyBounds() async throws {
        // Two replay readers leave one history read at a time (one handle stays with resumes).
        try await GatewayHarness.run(replay: { $0.readers = 2 }) { node in
            // Connected first: a connection without a cursor starts live, so records the node consumed
            // before it registered would never reach it.
            let alice = try await node.connect("alice", channels: ["news"], subscribe: ["news"])
            for n in 0..<3 { try await node.produce(HeraldRecord(stream: .channel("news")), #"{"n":\#(n)}"#) }
            for _ in 0..<3 { _ = try await alice.nextMessage(within: .seconds(30)) }
            // Slow brokers keep a read under way long enough for the next request to meet it.
            for broker in node.cluster.brokerIDs { try node.cluster.setBrokerRoundTrip(broker, milliseconds: 800) }

            async let first = api(node.apiPort, "GET", "/v1/streams/c:news/history")
            try await Task.sleep(for: .milliseconds(300))
            let second = try await api(node.apiPort, "GET", "/v1/streams/c:news/history")
            #expect(second.status == 503 && (second.json["error"] as? [String: Any])?["code"] as? String == "busy", "\(second.status) \(second.body)")
            #expect(second.headers["retry-after"] == "1")
            alice.session.history(id: "f1", stream: "c:news")
            guard case .publishFailed(let id, let code, let message) = try await alice.next(within: .seconds(30)) else {
                throw TestFailure("a frame met no node bound")
            }
            #expect(id == "f1" && code == "busy" && message.contains("history requests already"), "\(message)")
            #expect(try await first.status == 200)

            alice.session.history(id: "f2", stream: "c:news")
            alice.session.history(id: "f3", stream: "c:news")
            guard case .publishFailed(let secondID, let secondCode, let secondMessage) = try await alice.next(within: .seconds(30)) else {
                throw TestFailure("the second request of one connection was not refused")
            }
            #expect(secondID == "f3" && secondCode == "busy" && secondMessage.contains("previous history request"), "\(secondMessage)")
            guard case .history(let answered) = try await alice.next(within: .seconds(30)) else { throw TestFailure("f2 unanswered") }
            #expect(answered.id == "f2" && answered.messages.count == 3)
            for broker in node.cluster.brokerIDs { try node.cluster.setBrokerRoundTrip(broker, milliseconds: 0) }
        }
    }

    @Test("a comment published into a channel names its publisher in history as it does live: the same message object, user included, in the frame and over HTTP")
    func historyNamesThePublisher() async throws {
        try await GatewayHarness.run(configure: {
            $0.namespaces = try! ChannelNamespaces.parse("video subscribe=anonymous publish history=50")
        }) { node in
            let viewer = try await node.anonymous(channels: ["video:7"])
            let ana = try await node.connect("ana", channels: ["video:7"], subscribe: ["video:7"])
            ana.session.publish(json: #"{"text":"first!"}"#, toChannel: "video:7", id: "c-1")
            let live = try await viewer.nextMessage(within: .seconds(30))
            #expect(live.user == "ana")
            viewer.session.history(id: "h1", stream: "c:video:7")
            guard case .history(let page) = try await viewer.next(within: .seconds(30)) else { throw TestFailure("no history") }
            #expect(page.messages == [live], "history's message is live delivery's, with the publisher")
            let overHTTP = try await Self.page(node, "c:video:7")
            #expect((overHTTP["messages"] as? [[String: Any]])?.first?["user"] as? String == "ana")
        }
    }
}
