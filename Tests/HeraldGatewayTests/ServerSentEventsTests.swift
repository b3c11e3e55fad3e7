import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import NIOCore
import Testing

@Suite("Server-Sent Events: GET /v1/sse, the second transport on the public port")
struct ServerSentEventsTests {
    private func push(_ node: GatewayHarness, to: String, _ data: String) async throws -> Int64 {
        let response = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":\#(to),"data":\#(data)}"#)
        guard response.status == 202, let results = response.json["results"] as? [[String: Any]], let offset = results.first?["offset"] as? NSNumber else {
            throw TestFailure("push failed: \(response.status) \(response.body)")
        }
        return offset.int64Value
    }

    @Test("an event stream gets the welcome and each record as the same JSON a WebSocket gets, each with its cursor as the event id")
    func recordsAsEvents() async throws {
        try await GatewayHarness.run { node in
            let token = try await node.token("ann", channels: ["news"])
            let stream = try await EventStreamConnection.open(port: node.port, token: token, channels: ["news"])
            let socket = try await node.connect("ann", device: "ws", channels: ["news"], subscribe: ["news"])
            #expect(stream.welcome.epoch == socket.welcome.epoch)
            #expect(Set(stream.welcome.positions.keys) == ["u", "*", "c:news"])
            // A payload with line breaks inside: each becomes its own data line, and the JSON survives.
            let user = try await push(node, to: #"{"users":["ann"]}"#, "{\n\"text\": \"two\\nlines\"\r\n}")
            let channel = try await push(node, to: #"{"channels":["news"]}"#, #"{"headline":1}"#)
            // Two streams in two partitions: their order between each other is not fixed.
            let overStream = [try await stream.nextMessage(), try await stream.nextMessage()].sorted { $0.stream > $1.stream }
            let overSocket = [try await socket.nextMessage(), try await socket.nextMessage()].sorted { $0.stream > $1.stream }
            #expect(overStream == overSocket, "the same messages over both transports")
            #expect(overStream.map(\.stream) == ["u", "c:news"] && overStream.map(\.offset) == [user, channel])
            #expect(overStream[0].data == #"{"text":"two\nlines"}"#, "\(overStream[0].data)")
            var expected = stream.welcome.positions
            expected["u"] = user
            expected["c:news"] = channel
            #expect(stream.lastEventID == ResumeCursor(positions: expected).eventID(epoch: stream.welcome.epoch))
            stream.close()
        }
    }

    @Test("Last-Event-ID resumes: the missed records replayed after a recovered welcome whose positions are the cursor, then live")
    func resumeThroughLastEventID() async throws {
        try await GatewayHarness.run { node in
            let token = try await node.token("bea", channels: ["news"])
            let first = try await EventStreamConnection.open(port: node.port, token: token, channels: ["news"])
            let seen = try await push(node, to: #"{"users":["bea"]}"#, #"{"n":1}"#)
            #expect(try await first.nextMessage().offset == seen)
            let lastEventID = try #require(first.lastEventID)
            first.close()
            #expect(try await first.closeCode() == nil, "a stream the client ends has no close event")
            var missed: [Int64] = []
            for n in 2...4 { missed.append(try await push(node, to: #"{"users":["bea"]}"#, #"{"n":\#(n)}"#)) }
            missed.append(try await push(node, to: #"{"channels":["news"]}"#, #"{"n":5}"#))
            // As a browser reconnects: the same URL, with the last id.
            let second = try await EventStreamConnection.open(port: node.port, token: token, channels: ["news"], lastEventID: lastEventID)
            #expect(second.welcome.recovered == true, "\(second.welcome)")
            let cursor = try ResumeCursor.parse(try #require(ResumeCursor.parts(ofEventID: lastEventID)).cursor)
            #expect(ResumeCursor(positions: second.welcome.positions) == cursor)
            var got: [Int64] = []
            for _ in missed { got.append(try await second.nextMessage().offset) }
            #expect(got.sorted() == missed.sorted())
            let live = try await push(node, to: #"{"users":["bea"]}"#, #"{"n":6}"#)
            #expect(try await second.nextMessage().offset == live)
            second.close()
        }
    }

    @Test("refusals are HTTP statuses with a message: no token, a bad token, another user's cursor, an ungranted channel or cursor channel")
    func refusals() async throws {
        try await GatewayHarness.run { node in
            func refusal(_ token: String?, channels: [String] = [], cursor: String? = nil, lastEventID: String? = nil) async throws -> EventStreamRefused {
                do {
                    let stream = try await EventStreamConnection.open(
                        port: node.port, token: token, channels: channels, cursor: cursor, epoch: cursor.map { _ in "e" }, lastEventID: lastEventID
                    )
                    stream.close()
                    throw TestFailure("the stream was opened: token \(token != nil), channels \(channels), cursor \(cursor ?? "-"), last id \(lastEventID ?? "-"), welcome \(stream.welcome)")
                } catch let refused as EventStreamRefused {
                    return refused
                }
            }
            func message(_ refused: EventStreamRefused) -> String {
                let object = (try? JSONSerialization.jsonObject(with: Data(refused.body.utf8))) as? [String: Any]
                return ((object?["error"] as? [String: Any])?["message"] as? String) ?? ""
            }
            let missing = try await refusal(nil)
            #expect(missing.status == 401 && message(missing).contains("token is required"), "\(missing)")
            let forged = try await refusal("not-a-jwt")
            #expect(forged.status == 401 && !message(forged).isEmpty, "\(forged)")
            let token = try await node.token("cai", channels: ["news"])
            let channel = try await refusal(token, channels: ["secret"])
            #expect(channel.status == 403 && message(channel).contains("secret"), "\(channel)")
            let foreign = try await refusal(token, cursor: "u:bob:3")
            #expect(foreign.status == 403 && message(foreign).contains("another user"), "\(foreign)")
            let foreignID = try await refusal(token, lastEventID: "some-epoch u:bob:3,*:1")
            #expect(foreignID.status == 403 && message(foreignID).contains("another user"), "\(foreignID)")
            // A cursor of this node's epoch that names an ungranted channel (of another epoch, the cursor
            // is not used at all: recovered:false, as over a WebSocket).
            let probe = try await EventStreamConnection.open(port: node.port, token: token)
            probe.close()
            let ungrantedID = try await refusal(token, lastEventID: "\(probe.welcome.epoch) c:secret:4")
            #expect(ungrantedID.status == 403 && message(ungrantedID).contains("secret"), "\(ungrantedID)")
            let post = try await api(node.port, "POST", "/v1/sse", body: "{}", key: nil)
            #expect(post.status == 400 && post.errorMessage?.contains("GET") == true, "\(post.body)")
            // A malformed id, or one from another epoch, is no refusal: the stream continues live, told so.
            let malformed = try await EventStreamConnection.open(port: node.port, token: token, lastEventID: "garbage")
            #expect(malformed.welcome.recovered == false && malformed.welcome.reason == "malformed", "\(malformed.welcome)")
            malformed.close()
            let otherEpoch = try await EventStreamConnection.open(port: node.port, token: token, lastEventID: "old-epoch u:3")
            #expect(otherEpoch.welcome.recovered == false && otherEpoch.welcome.reason == "epoch", "\(otherEpoch.welcome)")
            otherEpoch.close()
        }
    }

    @Test("the token in Authorization: Bearer works as in the query; a kick ends the stream with event: close and 4003")
    func bearerAndCloseEvent() async throws {
        try await GatewayHarness.run { node in
            let stream = try await EventStreamConnection.open(port: node.port, token: try await node.token("dan"), bearer: true)
            let kick = try await api(node.apiPort, "DELETE", "/v1/users/dan/connections")
            #expect(kick.status == 202, "\(kick.body)")
            let end = try await stream.next(within: .seconds(15))
            guard case .closed(let code, let reason) = end else { throw TestFailure("expected the close event, got \(end)") }
            #expect(code == CloseCode.kicked.rawValue && !reason.isEmpty, "\(reason)")
        }
    }

    @Test("a client that keeps sending on its one-way stream is closed; a stray request's worth of bytes is ignored")
    func clientBytesAreBounded() async throws {
        try await GatewayHarness.run { node in
            let token = try await node.token("gus")
            let stream = try await EventStreamConnection.open(port: node.port, token: token)
            try await stream.channel.writeAndFlush(ByteBuffer(string: "GET /v1/sse HTTP/1.1\r\nHost: x\r\n\r\n"))
            let offset = try await push(node, to: #"{"users":["gus"]}"#, #"{"after":"stray bytes"}"#)
            #expect(try await stream.nextMessage().offset == offset, "a few bytes close nothing")
            try await stream.channel.writeAndFlush(ByteBuffer(repeating: UInt8(ascii: "x"), count: 16 * 1024))
            #expect(try await stream.closeCode(within: .seconds(15)) == nil, "closed without a close event")
        }
    }

    @Test("the token's expiry ends the stream with event: close and 4009")
    func tokenExpiry() async throws {
        try await GatewayHarness.run { node in
            let stream = try await EventStreamConnection.open(port: node.port, token: try await node.token("fay", ttl: 2))
            #expect(try await stream.closeCode(within: .seconds(15)) == CloseCode.tokenExpired.rawValue)
        }
    }

    @Test("heartbeats are SSE comments, and an SSE client that cannot answer pings is not closed for it")
    func heartbeats() async throws {
        try await GatewayHarness.run(configure: { $0.pingInterval = .seconds(1) }) { node in
            let token = try await node.token("eve")
            let stream = try await EventStreamConnection.open(port: node.port, token: token)
            // Past two unanswered pings, which would abort a WebSocket that answers none.
            try await Task.sleep(for: .seconds(4))
            let pending = await stream.pending()
            #expect(!pending.contains { if case .closed = $0 { true } else { false } }, "\(pending)")
            #expect(stream.heartbeats >= 2, "\(stream.heartbeats) heartbeats")
            let offset = try await push(node, to: #"{"users":["eve"]}"#, #"{"still":"here"}"#)
            #expect(try await stream.nextMessage().offset == offset)
            stream.close()
        }
    }
}
