import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import NIOCore
import NIOWebSocket
import Synchronization

/// The soak's hostile clients, each a loop until the deadline, each from its own loopback address so
/// that per-source limits meet them and not the well-behaved devices. What each was answered goes
/// into the tally under its name: `never-read.4008`, `handshake.401`, `batch.413`, …
struct SoakHostiles: Sendable {
    let host: String
    let port: Int
    let apiPort: Int
    let hostileKey: String
    let issuer: TokenIssuer
    let group: any EventLoopGroup
    let tally: SoakTally
    let deadline: ContinuousClock.Instant
    /// How long a never-reading client floods at most before it reads again and looks at how it was
    /// closed: well past the node's slow-consumer window.
    let hold: Duration
    /// The epoch the devices were welcomed with (a resume needs it).
    let epoch: @Sendable () -> String?
    /// The last offset produced to a hog user's stream (a never-reading resume starts a little before).
    let latestOffset: @Sendable (String) -> Int64?

    private func token(_ user: String) async throws -> String {
        try await issuer.token(user: user, device: "hostile", expiresAt: Date().addingTimeInterval(3_600))
    }

    /// An error's kind for a tally name: its type and first words, no quotes.
    static func kind(_ error: any Error) -> String {
        String("\(error)".prefix(48)).replacingOccurrences(of: "\"", with: "'").replacingOccurrences(of: "\\", with: "/")
            .replacingOccurrences(of: "\n", with: " ")
    }

    private static func query(_ value: String) -> String {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+,;")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }

    /// Connects with a 16 KiB receive buffer (Linux would otherwise autotune it to 32 MiB and a stalled
    /// reader would take a long time to fill anything); close codes go to `closed`.
    private func connect(_ user: String, path: String = "/v1/ws", source: String, closed: CloseWatch) async throws -> WebSocketClientConnection {
        try await WebSocketClientConnection.connect(
            host: host, port: port, path: path, headers: [("Authorization", "Bearer \(try await token(user))")], group: group,
            sourceAddress: source, receiveBufferBytes: 16 * 1_024,
            observer: { event in if case .closed(let code, _) = event { closed.set(code) } }
        )
    }

    /// Reads again after holding, and records how the node closed the connection (`none`: the socket
    /// ended without a close frame the client could read).
    private func outcome(_ name: String, _ connection: WebSocketClientConnection, _ closed: CloseWatch) async {
        try? await connection.setReading(true)
        let until = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < until, !closed.isClosed {
            try? await Task.sleep(for: .milliseconds(50))
        }
        switch closed.code {
        case .some(.some(let code)): tally.add("\(name).\(code)")
        case .some(.none): tally.add("\(name).none")
        case .none:
            tally.add("\(name).open")
            connection.channel.close(promise: nil)
        }
    }

    /// Resumes a hog user's stream from 2,500 messages (5 MB) back, beyond what the node's socket buffer
    /// takes, then reads nothing and floods pings until the node closes it.
    func neverReadingResumes(_ index: Int) async {
        let user = "hog-\(index)"
        while ContinuousClock.now < deadline {
            let closed = CloseWatch()
            do {
                let from = max(-1, (latestOffset(user) ?? -1) - 2_500)
                var path = "/v1/ws?cursor=" + Self.query("u:\(from)")
                if let epoch = epoch() { path += "&epoch=" + Self.query(epoch) }
                let connection = try await connect(user, path: path, source: "127.0.0.\(200 + index)", closed: closed)
                try await connection.setReading(false)
                await floodPings(connection, closed)
                await outcome("never-read", connection, closed)
            } catch let refused as HandshakeRejected {
                tally.add("never-read.handshake-\(refused.status)")
                try? await Task.sleep(for: .seconds(1))
            } catch {
                tally.add("never-read.error \(Self.kind(error))")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Floods the largest pings (5,000 a second, written 50 at a time) while reading nothing, until the
    /// node has closed the connection (the socket ends: a write fails) or `hold`. The node's socket
    /// buffer on loopback takes megabytes before the node's own queue counts anything, so this takes
    /// seconds. Masked with the all-zero key (valid, and the payload needs no masking).
    private func floodPings(_ connection: WebSocketClientConnection, _ closed: CloseWatch) async {
        var burst = ByteBuffer()
        for _ in 0..<50 {
            burst.writeBytes([0x89, 0x80 | 125, 0, 0, 0, 0])
            burst.writeBytes(Array(repeating: 0x70, count: 125))
        }
        let stop = ContinuousClock.now + hold
        while ContinuousClock.now < stop, !closed.isClosed, connection.channel.isActive {
            connection.sendRaw(burst)
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Floods pings while reading nothing, then looks at how it was closed.
    func pingFlood(_ index: Int) async {
        while ContinuousClock.now < deadline {
            let closed = CloseWatch()
            do {
                let connection = try await connect("pinger-\(index)", source: "127.0.0.\(210 + index)", closed: closed)
                try await connection.setReading(false)
                await floodPings(connection, closed)
                await outcome("ping-flood", connection, closed)
            } catch let refused as HandshakeRejected {
                tally.add("ping-flood.handshake-\(refused.status)")
                try? await Task.sleep(for: .seconds(1))
            } catch {
                tally.add("ping-flood.error \(Self.kind(error))")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Reads in short bursts with long pauses: a device on a bad network, fed by the hog stream.
    func slowReader(_ index: Int) async {
        let user = "hog-slow-\(index)"
        while ContinuousClock.now < deadline {
            let closed = CloseWatch()
            do {
                let connection = try await connect(user, source: "127.0.0.\(215 + index)", closed: closed)
                while ContinuousClock.now < deadline, !closed.isClosed, connection.channel.isActive {
                    try await connection.setReading(false)
                    try await Task.sleep(for: .milliseconds(1_500))
                    try await connection.setReading(true)
                    try await Task.sleep(for: .milliseconds(20))
                }
                if !closed.isClosed, connection.channel.isActive {
                    // Its bursts kept up with what it was sent: the node had no reason to close it.
                    tally.add("slow-reader.kept-up")
                    connection.channel.close(promise: nil)
                } else {
                    await outcome("slow-reader", connection, closed)
                }
            } catch let refused as HandshakeRejected {
                tally.add("slow-reader.handshake-\(refused.status)")
                try? await Task.sleep(for: .seconds(1))
            } catch {
                tally.add("slow-reader.error \(Self.kind(error))")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Publishes as fast as it can, reading what the node says: slow-down, then 1008.
    func publishFlood(_ index: Int) async {
        while ContinuousClock.now < deadline {
            let closed = CloseWatch()
            let slowDowns = Atomic<Int>(0)
            do {
                let connection = try await WebSocketClientConnection.connect(
                    host: host, port: port, path: "/v1/ws", headers: [("Authorization", "Bearer \(try await token("publisher-\(index)"))")],
                    group: group, sourceAddress: "127.0.0.\(220 + index)",
                    observer: { event in
                        switch event {
                        case .text(let text) where text.contains(#""code":"slow-down""#): slowDowns.add(1, ordering: .relaxed)
                        case .closed(let code, _): closed.set(code)
                        default: break
                        }
                    }
                )
                var n = 0
                let stop = ContinuousClock.now + .seconds(10)
                while ContinuousClock.now < stop, !closed.isClosed, connection.channel.isActive {
                    for _ in 0..<50 {
                        n += 1
                        connection.send(text: ClientMessage.publish(data: Array(#"{"flood":\#(n)}"#.utf8), sync: n % 2 == 0).text)
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
                tally.add("publish-flood.slow-down", slowDowns.load(ordering: .relaxed))
                await outcome("publish-flood", connection, closed)
            } catch let refused as HandshakeRejected {
                tally.add("publish-flood.handshake-\(refused.status)")
                try? await Task.sleep(for: .seconds(1))
            } catch {
                tally.add("publish-flood.error \(Self.kind(error))")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Handshakes without a token and with garbage tokens, `rate` a second, from one address.
    func handshakeFlood(rate: Int) async {
        let source = "127.0.0.230"
        let concurrency = 16
        let interval = Duration.seconds(Double(concurrency) / Double(max(1, rate)))
        await withTaskGroup(of: Void.self) { tasks in
            for lane in 0..<concurrency {
                tasks.addTask {
                    var n = lane
                    while ContinuousClock.now < deadline {
                        let started = ContinuousClock.now
                        n += concurrency
                        let headers: [(String, String)] = switch n % 3 {
                        case 0: []
                        case 1: [("Authorization", "Bearer not.a.token")]
                        default: [("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.\(n)")]
                        }
                        do {
                            let connection = try await WebSocketClientConnection.connect(
                                host: host, port: port, path: "/v1/ws", headers: headers, group: group, sourceAddress: source
                            )
                            tally.add("handshake.101")
                            connection.channel.close(promise: nil)
                        } catch let refused as HandshakeRejected {
                            tally.add("handshake.\(refused.status)")
                        } catch {
                            tally.add("handshake.error \(Self.kind(error))")
                        }
                        try? await Task.sleep(until: started + interval)
                    }
                }
            }
        }
    }

    /// Giant batches (over the per-request record cap: 413), and batches within it sent far faster
    /// than the hostile key's rate (429 once its second's budget is spent), from one API connection.
    func giantBatches(recordsPerRequest cap: Int) async {
        guard let connection = try? await HTTPLoadConnection.connect(host: host, port: apiPort, group: group) else {
            tally.add("batch.error")
            return
        }
        defer { connection.close() }
        // Over the cap: 1,000 pushes × enough targets to pass it.
        let targets = max(2, cap / 1_000 + 2)
        let users = (0..<targets).map { #""void-\#($0)""# }.joined(separator: ",")
        let push = #"{"to":{"users":[\#(users)]},"data":{"giant":true}}"#
        let giant = #"{"messages":[\#(Array(repeating: push, count: 1_000).joined(separator: ","))]}"#
        // Within the cap: one push to 100 users nobody connects as.
        let small = #"{"to":{"users":[\#((0..<100).map { #""void-\#($0)""# }.joined(separator: ","))]},"data":{"rate":true}}"#
        var n = 0
        while ContinuousClock.now < deadline {
            n += 1
            let (path, body) = n % 5 == 0 ? ("/v1/push/batch", giant) : ("/v1/push", small)
            let request = ByteBuffer(string: "POST \(path) HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer \(hostileKey)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            do {
                let (status, _) = try await connection.send(request)
                tally.add("\(path == "/v1/push" ? "rate" : "batch").\(status)")
            } catch {
                tally.add("batch.error")
                return
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }
}

/// How a hostile connection ended: not yet (nil), or closed with the code the node sent (nil inside
/// when the socket ended without a close frame the client could read).
final class CloseWatch: Sendable {
    private let state = Mutex<UInt16??>(nil)
    func set(_ code: UInt16?) { state.withLock { $0 = .some(code) } }
    var code: UInt16?? { state.withLock { $0 } }
    var isClosed: Bool { code != nil }
}
