import Foundation
import HeraldClient
import HeraldCore
@testable import HeraldGateway
import NIOCore
import NIOPosix
import Testing

/// A handshake with this token, from `source`, read until the server answers: the status line's code.
private func handshakeStatus(port: Int, token: String, source: String = "127.0.0.1") async throws -> Int {
    do {
        let session = try await HeraldClient(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton)
            .connect(token: token, sourceAddress: source)
        session.close()
        return 101
    } catch let refused as HandshakeRejected {
        return refused.status
    }
}

@Suite("Admission slots come back whatever path a handshake ends on")
struct AdmissionSlotTests {
    @Test("clients that hang up during token verification, a few thousand times, leave no connection counted and no slot taken")
    func hangUpsDuringVerification() async throws {
        try await BudgetNode.run(["HERALD_MAX_CONNECTIONS": "50", "HERALD_ACCEPT_RATE": "100000"]) { node in
            let token = try await node.token("hangup")
            let request = "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer \(token)\r\n\r\n"
            let port = node.node.port
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<20 {
                    group.addTask {
                        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                        for attempt in 0..<150 {
                            let channel = try await bootstrap.connect(host: "127.0.0.1", port: port).get()
                            channel.writeAndFlush(ByteBuffer(string: request), promise: nil)
                            // Hang up at once or after a moment: during the token check, or around the upgrade.
                            if (worker + attempt) % 3 == 0 { try await Task.sleep(for: .microseconds(200)) }
                            try await channel.close()
                        }
                    }
                }
                try await group.waitForAll()
            }
            let readings = node.readings
            try await readings.wait(within: .seconds(10), "no connection counted after 3,000 hang-ups") {
                (try await readings.status()["connections"] as? NSNumber)?.intValue == 0
            }
            // And the node still admits: all 50 places are free.
            var held: [TestConnection] = []
            for index in 0..<50 { held.append(try await TestConnection.open(try await node.client.connect(token: try await node.token("after\(index)")))) }
            #expect(held.count == 50)
        }
    }
}

@Suite("Handshakes: what a flood from one address or without a credential may spend")
struct HandshakeBudgetTests {
    @Test("forged tokens do not spend the accept budget: valid clients connect during a flood of them")
    func forgedTokensSpendNothing() async throws {
        try await BudgetNode.run(["HERALD_ACCEPT_RATE": "20"]) { node in
            let forged = try await TokenIssuer(hmacSecret: String(repeating: "f", count: 40)).token(user: "mallory", expiresAt: Date().addingTimeInterval(600))
            let port = node.node.port
            let flood = Task {
                var refused = 0
                for _ in 0..<300 where try await handshakeStatus(port: port, token: forged, source: "127.0.0.2") == 401 { refused += 1 }
                return refused
            }
            var statuses: [Int] = []
            for index in 0..<15 { statuses.append(try await handshakeStatus(port: port, token: try await node.token("real\(index)"), source: "127.0.0.3")) }
            #expect(try await flood.value == 300, "every forged handshake is a 401")
            #expect(statuses == Array(repeating: 101, count: 15), "valid clients were refused during the flood: \(statuses)")
        }
    }

    @Test("one address over its handshake rate gets 429 with Retry-After; other addresses are not affected")
    func perSourceRate() async throws {
        try await BudgetNode.run(["HERALD_SOURCE_HANDSHAKE_RATE": "5"]) { node in
            let token = try await node.token("busy")
            var statuses: [Int] = []
            for _ in 0..<30 { statuses.append(try await handshakeStatus(port: node.node.port, token: token, source: "127.0.0.4")) }
            #expect(statuses.filter { $0 == 429 }.count >= 10, "\(statuses)")
            #expect(statuses.allSatisfy { $0 == 101 || $0 == 429 }, "\(statuses)")
            #expect(try await handshakeStatus(port: node.node.port, token: try await node.token("other"), source: "127.0.0.5") == 101)
            // What a refusal says: 429, Retry-After, and the code.
            var refusal: HandshakeRejected?
            for _ in 0..<50 where refusal == nil {
                do {
                    try await node.client.connect(token: token, sourceAddress: "127.0.0.4").close()
                } catch let refused as HandshakeRejected {
                    refusal = refused
                }
            }
            let refused = try #require(refusal)
            #expect(refused.status == 429 && refused.header("Retry-After") == "1", "\(refused)")
            #expect(refused.body.contains("source-rate-limited"), "\(refused.body)")
        }
    }

    @Test("the source limiter: in flight and per second, per address, forgetting idle addresses")
    func sourceLimiter() {
        let start = ContinuousClock.now
        let inFlight = SourceLimiter(.init(inFlight: 2, perSecond: 0))
        #expect(inFlight.begin("a", now: start) == nil)
        #expect(inFlight.begin("a", now: start) == nil)
        #expect(inFlight.begin("a", now: start)?.code == .sourceRateLimited)
        #expect(inFlight.begin("b", now: start) == nil, "another address has its own limit")
        inFlight.end("a")
        #expect(inFlight.begin("a", now: start) == nil)
        inFlight.end("a")
        inFlight.end("a")
        inFlight.end("b")
        #expect(inFlight.trackedAddresses == 0, "nothing in flight: nothing remembered")
        let rate = SourceLimiter(.init(inFlight: 0, perSecond: 2))
        #expect(rate.begin("a", now: start) == nil)
        rate.end("a")
        #expect(rate.begin("a", now: start) == nil)
        rate.end("a")
        #expect(rate.begin("a", now: start)?.code == .sourceRateLimited)
        #expect(rate.begin("a", now: start + .milliseconds(500)) == nil, "a token per half second comes back")
    }
}
