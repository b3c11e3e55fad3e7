import Foundation
package import HeraldClient
import HeraldCore
package import NIOCore
import NIOPosix
import Synchronization

/// A Server-Sent Events client for the tests, over a real socket: it sends `GET /v1/sse` as a browser's
/// `EventSource` does (with `Last-Event-ID` on a resume), parses the `text/event-stream` by the WHATWG
/// rules (fields `data`, `id`, `event`; comments; a blank line dispatches) and reports each event as
/// the `ServerEvent` the same frame would be over a WebSocket. `event: close` becomes `.closed` with
/// its code; a stream that ends without one, `.closed(code: nil)`.
package final class EventStreamConnection: Sendable {
    package let channel: any Channel
    package let welcome: ServerEvent.Welcome
    private let inbox: Inbox<ServerEvent>
    private let parser: EventStreamParser

    private init(channel: any Channel, welcome: ServerEvent.Welcome, inbox: Inbox<ServerEvent>, parser: EventStreamParser) {
        self.channel = channel
        self.welcome = welcome
        self.inbox = inbox
        self.parser = parser
    }

    /// Opens the stream and reads its welcome, or throws `EventStreamRefused` with the HTTP status and body.
    package static func open(
        port: Int, token: String?, channels: [String] = [], cursor: String? = nil, epoch: String? = nil, lastEventID: String? = nil,
        bearer: Bool = false, origin: String? = nil, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        receiveBufferBytes: Int? = nil
    ) async throws -> EventStreamConnection {
        var query: [String] = []
        func encode(_ value: String) -> String {
            var allowed = CharacterSet.urlQueryAllowed
            allowed.remove(charactersIn: "&=+,;")
            return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
        }
        if !channels.isEmpty { query.append("channels=" + channels.joined(separator: ",")) }
        if let cursor { query.append("cursor=" + encode(cursor)) }
        if let epoch { query.append("epoch=" + encode(epoch)) }
        if let token, !bearer { query.append("token=" + encode(token)) }
        var request = "GET /v1/sse" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")) + " HTTP/1.1\r\n"
        request += "Host: 127.0.0.1:\(port)\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
        if let token, bearer { request += "Authorization: Bearer \(token)\r\n" }
        if let lastEventID { request += "Last-Event-ID: \(lastEventID)\r\n" }
        if let origin { request += "Origin: \(origin)\r\n" }
        request += "\r\n"

        let inbox = Inbox<ServerEvent>()
        let parser = EventStreamParser(inbox: inbox)
        var bootstrap = ClientBootstrap(group: group).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EventStreamReader(parser: parser)) }
        }
        if let receiveBufferBytes {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: max(1, receiveBufferBytes))
        }
        let channel = try await bootstrap.connect(host: "127.0.0.1", port: port).get()
        try await channel.writeAndFlush(ByteBuffer(string: request))
        let response = try await parser.response.next(within: .seconds(10))
        guard response.status == 200 else {
            _ = try? await channel.closeFuture.get()
            throw EventStreamRefused(status: response.status, headers: response.headers, body: response.body)
        }
        let first = try await inbox.next(within: .seconds(10))
        guard case .welcome(let welcome) = first else {
            channel.close(promise: nil)
            throw TestFailure("the first event was not a welcome but \(first)")
        }
        return EventStreamConnection(channel: channel, welcome: welcome, inbox: inbox, parser: parser)
    }

    /// The id of the last event that had one: what an `EventSource` sends as `Last-Event-ID`.
    package var lastEventID: String? { parser.lastEventID }
    /// Comment lines read so far (the node's heartbeats).
    package var heartbeats: Int { parser.comments }

    package func next(within limit: Duration = .seconds(10)) async throws -> ServerEvent {
        try await inbox.next(within: limit)
    }

    package func nextMessage(within limit: Duration = .seconds(10)) async throws -> ServerEvent.Message {
        let event = try await next(within: limit)
        guard case .message(let message) = event else { throw TestFailure("expected a message, got \(event)") }
        return message
    }

    package func closeCode(within limit: Duration = .seconds(15)) async throws -> UInt16? {
        while true {
            if case .closed(let code, _) = try await next(within: limit) { return code }
        }
    }

    package func pending() async -> [ServerEvent] { await inbox.drain() }

    /// Ends the stream from this side, as `EventSource.close()` does.
    package func close() { channel.close(promise: nil) }

    package func setReading(_ reading: Bool) async throws {
        try await channel.setOption(.autoRead, value: reading).get()
    }
}

/// The node answered `GET /v1/sse` with something other than a stream.
package struct EventStreamRefused: Error, CustomStringConvertible {
    package let status: Int
    package let headers: [(String, String)]
    package let body: String
    package var description: String { "event stream refused: \(status) \(body)" }
    package func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}

struct EventStreamResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: String
}

/// The parsing state of one stream, fed on its channel's loop.
final class EventStreamParser: Sendable {
    let inbox: Inbox<ServerEvent>
    let response = Inbox<EventStreamResponse>()
    private struct State {
        var buffer: [UInt8] = []
        var headRead = false
        var refused: (status: Int, headers: [(String, String)], length: Int)?
        var data: [String] = []
        var eventType = ""
        var lastEventID: String?
        var closed = false
        var skipLF = false
        var comments = 0
    }
    private let state = Mutex(State())

    init(inbox: Inbox<ServerEvent>) {
        self.inbox = inbox
    }

    var lastEventID: String? { state.withLock { $0.lastEventID } }
    var comments: Int { state.withLock { $0.comments } }

    func feed(_ bytes: [UInt8]) {
        var events: [ServerEvent] = []
        var answered: EventStreamResponse?
        state.withLock { state in
            state.buffer += bytes
            if !state.headRead {
                guard let end = state.buffer.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
                let head = String(decoding: state.buffer[..<end.lowerBound], as: UTF8.self)
                let lines = head.components(separatedBy: "\r\n")
                let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
                let headers = lines.dropFirst().compactMap { line -> (String, String)? in
                    guard let colon = line.firstIndex(of: ":") else { return nil }
                    return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
                }
                state.buffer.removeSubrange(..<end.upperBound)
                state.headRead = true
                if status != 200 {
                    let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
                    state.refused = (status, headers, length)
                } else {
                    answered = EventStreamResponse(status: 200, headers: headers, body: "")
                }
            }
            if let refused = state.refused {
                if state.buffer.count >= refused.length {
                    answered = EventStreamResponse(status: refused.status, headers: refused.headers, body: String(decoding: state.buffer.prefix(refused.length), as: UTF8.self))
                    state.refused = nil
                    state.buffer = []
                    state.closed = true
                }
                return
            }
            events = Self.lines(&state)
        }
        if let answered { Task { await response.append(answered) } }
        appendInOrder(events)
    }

    /// The socket ended: a stream that ended with no `event: close` is `.closed(code: nil)`.
    func ended() {
        let wasClosed = state.withLock { state in
            defer { state.closed = true }
            return state.closed
        }
        if !wasClosed { appendInOrder([.closed(code: nil, reason: "")]) }
    }

    /// Events are appended by one task chain per stream, so they keep their order.
    private let tail = Mutex<Task<Void, Never>?>(nil)
    private func appendInOrder(_ events: [ServerEvent]) {
        guard !events.isEmpty else { return }
        tail.withLock { tail in
            let previous = tail
            tail = Task { [inbox] in
                await previous?.value
                for event in events { await inbox.append(event) }
            }
        }
    }

    private static func lines(_ state: inout State) -> [ServerEvent] {
        var events: [ServerEvent] = []
        var start = 0
        var index = 0
        let buffer = state.buffer
        while index < buffer.count {
            let byte = buffer[index]
            if state.skipLF {
                state.skipLF = false
                if byte == UInt8(ascii: "\n") {
                    index += 1
                    start = index
                    continue
                }
            }
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                let line = String(decoding: buffer[start..<index], as: UTF8.self)
                if byte == UInt8(ascii: "\r") { state.skipLF = true }
                if let event = process(line, &state) { events.append(event) }
                start = index + 1
            }
            index += 1
        }
        state.buffer = Array(buffer[start...])
        return events
    }

    private static func process(_ line: String, _ state: inout State) -> ServerEvent? {
        if line.isEmpty {
            defer {
                state.data = []
                state.eventType = ""
            }
            guard !state.data.isEmpty else { return nil }
            let data = state.data.joined(separator: "\n")
            if state.eventType == "close" {
                state.closed = true
                let object = (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any]
                return .closed(code: (object?["code"] as? NSNumber).map { UInt16(truncating: $0) }, reason: object?["reason"] as? String ?? "")
            }
            return ServerEvent.parse(data)
        }
        if line.hasPrefix(":") {
            state.comments += 1
            return nil
        }
        let field: Substring
        var value: Substring
        if let colon = line.firstIndex(of: ":") {
            field = line[..<colon]
            value = line[line.index(after: colon)...]
            if value.hasPrefix(" ") { value = value.dropFirst() }
        } else {
            field = Substring(line)
            value = ""
        }
        switch field {
        case "data": state.data.append(String(value))
        case "event": state.eventType = String(value)
        case "id": if !value.contains("\0") { state.lastEventID = String(value) }
        default: break
        }
        return nil
    }
}

/// Hands the socket's bytes to the parser.
final class EventStreamReader: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let parser: EventStreamParser

    init(parser: EventStreamParser) {
        self.parser = parser
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        parser.feed(Array(unwrapInboundIn(data).readableBytesView))
    }

    func channelInactive(context: ChannelHandlerContext) {
        parser.ended()
        context.fireChannelInactive()
    }
}
