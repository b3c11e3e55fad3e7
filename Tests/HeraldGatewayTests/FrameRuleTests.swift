import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import NIOCore
import NIOWebSocket
import Testing

@Suite("WebSocket rules NIO leaves to Herald, over a real socket")
struct FrameRuleTests {
    private func open(_ node: GatewayHarness, user: String = "alice", ttl: TimeInterval = 3_600) async throws -> TestConnection {
        let session = try await node.client.connect(token: try await node.token(user, ttl: ttl))
        return try await TestConnection.open(session)
    }

    private func frame(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, rsv1: Bool = false, masked: Bool = true) -> WebSocketFrame {
        WebSocketFrame(fin: fin, rsv1: rsv1, opcode: opcode, maskKey: masked ? .random() : nil, data: ByteBuffer(bytes: bytes))
    }

    @Test("a message over 64 KiB closes with 1009, whole or in fragments")
    func tooBig() async throws {
        try await GatewayHarness.run { node in
            let whole = try await open(node)
            whole.session.connection.send(frame(.text, Array(repeating: UInt8(ascii: "a"), count: 70 * 1024)))
            #expect(try await whole.closeCode() == CloseCode.messageTooBig.rawValue)

            let fragmented = try await open(node)
            fragmented.session.connection.send(frame(.text, Array(repeating: UInt8(ascii: "a"), count: 40 * 1024), fin: false))
            fragmented.session.connection.send(frame(.continuation, Array(repeating: UInt8(ascii: "a"), count: 40 * 1024)))
            #expect(try await fragmented.closeCode() == CloseCode.messageTooBig.rawValue)
        }
    }

    @Test("invalid UTF-8 closes with 1007, failing fast inside a fragmented message")
    func invalidUTF8() async throws {
        try await GatewayHarness.run { node in
            let whole = try await open(node)
            whole.session.connection.send(frame(.text, [0x7B, 0xFF, 0x7D]))
            #expect(try await whole.closeCode() == CloseCode.invalidPayload.rawValue)

            let partial = try await open(node)
            // An overlong encoding in the first fragment: refused before the message ends.
            partial.session.connection.send(frame(.text, [0x22, 0xC0, 0xAF], fin: false))
            #expect(try await partial.closeCode() == CloseCode.invalidPayload.rawValue)

            let split = try await open(node)
            // A character split across fragments is fine: "é" is C3 A9.
            split.session.connection.send(frame(.text, Array(#"{"type":"ack","stream":"u","offset":1,"x":""#.utf8) + [0xC3], fin: false))
            split.session.connection.send(frame(.continuation, [0xA9] + Array(#""}"#.utf8)))
            split.session.connection.send(frame(.text, Array(#"{"type":"nonsense"}"#.utf8)))
            guard case .error(let code, _) = try await split.next() else { throw TestFailure("expected an error frame") }
            #expect(code == "bad-request", "the split character was accepted; only the nonsense frame is refused")
        }
    }

    @Test("unmasked frames, reserved bits and reserved opcodes close with 1002")
    func protocolErrors() async throws {
        try await GatewayHarness.run { node in
            let unmasked = try await open(node)
            unmasked.session.connection.send(frame(.text, Array("hi".utf8), masked: false))
            #expect(try await unmasked.closeCode() == CloseCode.protocolError.rawValue)

            let reserved = try await open(node)
            reserved.session.connection.send(frame(.text, Array("hi".utf8), rsv1: true))
            #expect(try await reserved.closeCode() == CloseCode.protocolError.rawValue)

            let opcode = try await open(node)
            // Opcode 0x3 is reserved: a masked, final frame with no payload.
            opcode.session.connection.sendRaw(ByteBuffer(bytes: [0x83, 0x80, 0x01, 0x02, 0x03, 0x04]))
            #expect(try await opcode.closeCode() == CloseCode.protocolError.rawValue)

            let orphan = try await open(node)
            orphan.session.connection.send(frame(.continuation, Array("x".utf8)))
            #expect(try await orphan.closeCode() == CloseCode.protocolError.rawValue)
        }
    }

    @Test("pings are answered with the same payload; a client's close is echoed")
    func pingAndClose() async throws {
        try await GatewayHarness.run { node in
            let session = try await node.client.connect(token: try await node.token("alice"))
            var events = session.connection.events.makeAsyncIterator()
            guard case .text = await events.next() else { throw TestFailure("welcome expected") }
            session.connection.send(frame(.ping, Array("are you there".utf8)))
            guard case .pong(let payload) = await events.next() else { throw TestFailure("pong expected") }
            #expect(String(buffer: payload) == "are you there")
            session.connection.close(code: 1000)
            guard case .closed(let code, _) = await events.next() else { throw TestFailure("close expected") }
            #expect(code == 1000)
        }
    }

    @Test("bad client frames get error frames; repeated abuse closes with 1008")
    func abuse() async throws {
        try await GatewayHarness.run { node in
            let connection = try await open(node)
            connection.session.connection.send(text: "not json")
            guard case .error(let code, let message) = try await connection.next() else { throw TestFailure("error frame expected") }
            #expect(code == "bad-request" && message.contains("JSON"))
            for _ in 0..<12 { connection.session.connection.send(text: #"{"type":"dance"}"#) }
            #expect(try await connection.closeCode() == CloseCode.policyViolation.rawValue)
        }
    }

    @Test("when the token expires the connection is closed with 4009")
    func tokenExpiry() async throws {
        try await GatewayHarness.run { node in
            let connection = try await open(node, user: "frank", ttl: 2)
            #expect(try await connection.closeCode(within: .seconds(15)) == CloseCode.tokenExpired.rawValue)
        }
    }
}

@Suite("Liveness, expiry and shutdown")
struct LifecycleTests {
    @Test("a client that answers no pings is disconnected after two missed pongs")
    func missedPongs() async throws {
        try await GatewayHarness.run(configure: { $0.pingInterval = .seconds(1) }) { node in
            let silent = try await TestConnection.open(try await node.client.connect(token: try await node.token("silent")))
            let lively = try await TestConnection.open(try await node.client.connect(token: try await node.token("lively")))
            // Not reading means not answering pings (the client answers each ping it reads).
            try await silent.session.connection.setReading(false)
            let deadline = ContinuousClock.now + .seconds(15)
            while node.gateway.registry.sessions(of: "silent").count > 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(node.gateway.registry.sessions(of: "silent").isEmpty, "closed after two unanswered pings")
            #expect(node.gateway.registry.sessions(of: "lively").count == 1, "a client that answers stays")
            _ = lively
        }
    }

    @Test("a record past its herald-expires-at is not delivered")
    func expiredRecords() async throws {
        try await GatewayHarness.run { node in
            let connection = try await TestConnection.open(try await node.client.connect(token: try await node.token("gina")))
            let past = Int64(Date().timeIntervalSince1970 * 1000) - 1_000
            let future = Int64(Date().timeIntervalSince1970 * 1000) + 600_000
            try await node.produce(HeraldRecord(stream: .user("gina"), expiresAt: past), "stale")
            let fresh = try await node.produce(HeraldRecord(stream: .user("gina"), expiresAt: future), "fresh")
            // Same user, same partition: in offset order, so the stale record would come first.
            let first = try await connection.nextMessage()
            #expect(first.offset == fresh.offset && first.data == #""fresh""#)
        }
    }

    @Test("on graceful shutdown every connection is closed with 1012 (reconnect elsewhere and resume)")
    func shutdownCloses1012() async throws {
        try await GatewayHarness.run { node in
            let connection = try await TestConnection.open(try await node.client.connect(token: try await node.token("hank")))
            await node.node.shutDown()
            #expect(try await connection.closeCode() == CloseCode.restarting.rawValue)
        }
    }
}
