import Foundation
import HeraldClient
import HeraldGateway
import NIOCore
import NIOPosix
import Testing

@Suite("Refusals before the upgrade, as plain HTTP statuses")
struct HandshakeTests {
    private func rejection(_ operation: () async throws -> Any) async -> HandshakeRejected? {
        do {
            _ = try await operation()
            return nil
        } catch let rejected as HandshakeRejected {
            return rejected
        } catch {
            Issue.record("expected a refused handshake, got \(error)")
            return nil
        }
    }

    @Test("missing, expired, wrong-key and alg:none tokens get 401; unknown paths 404; a plain GET of /v1/ws 400")
    func tokensAndPaths() async throws {
        try await GatewayHarness.run { node in
            let missing = await rejection {
                try await WebSocketClientConnection.connect(host: "127.0.0.1", port: node.port, path: "/v1/ws", group: node.group)
            }
            #expect(missing?.status == 401)
            #expect(missing?.body.contains("missing-token") == true)

            let expired = try await hs256(claims(expiresIn: -300))
            #expect(await rejection { try await node.client.connect(token: expired) }?.status == 401)
            let wrongKey = try await hs256(claims(), secret: "a-different-secret-of-at-least-32-bytes")
            #expect(await rejection { try await node.client.connect(token: wrongKey) }?.status == 401)
            let none = base64URL(#"{"alg":"none","typ":"JWT"}"#) + "." + base64URL(#"{"sub":"alice","exp":9999999999}"#) + "."
            let refusedNone = await rejection { try await node.client.connect(token: none) }
            #expect(refusedNone?.status == 401)
            #expect(refusedNone?.header("Content-Type") == "application/json")

            // The token may come in the query, as browsers must send it.
            let good = try await node.token("alice")
            let viaQuery = try await node.client.connect(token: good, tokenInQuery: true)
            viaQuery.close()

            let elsewhere = await rejection {
                try await WebSocketClientConnection.connect(host: "127.0.0.1", port: node.port, path: "/nowhere", group: node.group)
            }
            #expect(elsewhere?.status == 404)
            let plain = try await rawHTTP(port: node.port, "GET /v1/ws HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(plain.hasPrefix("HTTP/1.1 400"))
        }
    }

    @Test("a channel the token does not grant is 403; an origin outside the allow-list is 403")
    func channelsAndOrigins() async throws {
        try await GatewayHarness.run(configure: { $0.allowedOrigins = ["https://app.example"] }) { node in
            let token = try await node.token("alice", channels: ["news"])
            #expect(await rejection { try await node.client.connect(token: token, channels: ["news", "secret"]) }?.status == 403)
            #expect(await rejection { try await node.client.connect(token: token, origin: "https://evil.example") }?.status == 403)
            let allowed = try await node.client.connect(token: token, channels: ["news"], origin: "https://app.example")
            allowed.close()
            // Non-browser clients send no Origin and are not refused for it.
            let native = try await node.client.connect(token: token)
            native.close()
        }
    }

    @Test("over the accept rate: 503 with a spread of Retry-After; over the connection cap: 503 with Retry-After")
    func loadShedding() async throws {
        try await GatewayHarness.run(configure: { $0.acceptsPerSecond = 2 }) { node in
            let token = try await node.token("alice")
            // Twelve handshakes at once against a bucket of two per second: most are refused.
            let refusals = await withTaskGroup(of: HandshakeRejected?.self) { group in
                for _ in 0..<12 {
                    group.addTask {
                        do {
                            let session = try await node.client.connect(token: token)
                            session.close()
                            return nil
                        } catch {
                            return error as? HandshakeRejected
                        }
                    }
                }
                return await group.compactMap { $0 }.reduce(into: []) { $0.append($1) }
            }
            #expect(refusals.count >= 6)
            #expect(refusals.allSatisfy { $0.status == 503 && $0.body.contains("rate-limited") })
            #expect(refusals.allSatisfy { (1...5).contains(Int($0.header("Retry-After") ?? "") ?? 0) })
        }
        try await GatewayHarness.run(configure: { $0.maxConnections = 2 }) { node in
            let token = try await node.token("bob")
            let first = try await node.client.connect(token: token)
            let second = try await node.client.connect(token: token)
            let third = await rejection { try await node.client.connect(token: token) }
            #expect(third?.status == 503)
            #expect(third?.header("Retry-After") != nil)
            first.close()
            second.close()
            // Slots come back when connections end, upgraded or refused.
            let deadline = ContinuousClock.now + .seconds(10)
            while node.gateway.admission.openConnections > 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(node.gateway.admission.openConnections == 0)
            let again = try await node.client.connect(token: token)
            again.close()
        }
    }

    @Test("a client that never completes its handshake is disconnected (slowloris)")
    func handshakeTimeout() async throws {
        try await GatewayHarness.run(configure: { $0.handshakeTimeout = .seconds(1) }) { node in
            let channel = try await ClientBootstrap(group: node.group).connect(host: "127.0.0.1", port: node.port).get()
            try await channel.writeAndFlush(ByteBuffer(string: "GET /v1/ws HTTP/1.1\r\nHost: x\r\n"))
            let closed = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask { try await channel.closeFuture.get(); return true }
                group.addTask { try await Task.sleep(for: .seconds(10)); return false }
                let first = try await group.next()!
                group.cancelAll()
                return first
            }
            #expect(closed, "the server closed the half-finished handshake")
        }
    }
}

