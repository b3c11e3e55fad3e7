import Foundation
import HeraldClient
import HeraldCore
@testable import HeraldGateway
import NIOCore
import Testing

@Suite("In-band token refresh")
struct RefreshTests {
    @Test("a connection refreshed before its exp stays open past it and receives everything; one of the same user that did not refresh closes with 4009")
    func refreshKeepsTheConnection() async throws {
        try await GatewayHarness.run { node in
            let refreshed = try await TestConnection.open(try await node.client.connect(token: try await node.token("rita", device: "a", ttl: 6)))
            let stale = try await TestConnection.open(try await node.client.connect(token: try await node.token("rita", device: "b", ttl: 6)))
            let before = Int64(Date().timeIntervalSince1970 * 1_000)
            refreshed.session.refresh(token: try await node.token("rita", device: "a", ttl: 600))
            guard case .refreshed(let expiresAt) = try await refreshed.next() else { throw TestFailure("the refresh was not answered refreshed") }
            #expect(expiresAt > before + 500_000 && expiresAt < before + 700_000, "the new token's exp, in milliseconds")
            var expected: [Int64] = []
            expected.append(try await node.produce(HeraldRecord(stream: .user("rita")), #"{"n":0}"#).offset)
            #expect(try await stale.closeCode(within: .seconds(30)) == CloseCode.tokenExpired.rawValue, "4009 stays for a connection that does not refresh")
            // By now the old exp has passed (the stale connection closed on it): the refreshed one goes on.
            for n in 1..<4 { expected.append(try await node.produce(HeraldRecord(stream: .user("rita")), #"{"n":\#(n)}"#).offset) }
            var received: [Int64] = []
            while received.count < expected.count { received.append(try await refreshed.nextMessage().offset) }
            #expect(received == expected)
            #expect(Int64(Date().timeIntervalSince1970 * 1_000) > before + 6_000)
            let pending = await refreshed.pending()
            #expect(pending.isEmpty, "\(pending)")
        }
    }

    @Test("a refresh with another user's or device's token, an expired token or a bad signature is refused with an error naming it; the connection stays open under its old exp and nothing else closes")
    func refusedRefreshes() async throws {
        try await GatewayHarness.run { node in
            // Long enough that the refusals and a message fit before the old exp on a loaded machine.
            let connection = try await TestConnection.open(try await node.client.connect(token: try await node.token("rita", device: "a", ttl: 15)))
            let sibling = try await node.connect("rita", device: "b")
            let bystander = try await node.connect("mallory")
            let forger = try await TokenIssuer(hmacSecret: "another-secret-that-is-at-least-32-bytes")
            let cases: [(String, String, String)] = [
                (try await node.token("mallory", device: "a"), "wrong-user", "another user"),
                (try await node.token("rita", device: "b"), "wrong-user", "another device"),
                (try await node.token("rita", device: "a", ttl: -120), "expired-token", "expired"),
                (try await forger.token(user: "rita", device: "a", expiresAt: Date().addingTimeInterval(600)), "invalid-token", "signature"),
                ("not a token", "invalid-token", "JWS"),
            ]
            for (token, code, reason) in cases {
                connection.session.refresh(token: token)
                guard case .error(let got, let message) = try await connection.next() else { throw TestFailure("\(reason): not refused") }
                #expect(got == code && message.contains(reason), "\(reason): \(got) \(message)")
            }
            let message = try await node.produce(HeraldRecord(stream: .user("rita")), #"{"still":"open"}"#)
            #expect(try await connection.nextMessage().offset == message.offset)
            #expect(try await sibling.nextMessage().offset == message.offset)
            #expect(try await connection.closeCode(within: .seconds(40)) == CloseCode.tokenExpired.rawValue, "the old exp still holds")
            let fence = try await node.produce(HeraldRecord(stream: .broadcast), #"{"fence":true}"#)
            #expect(try await sibling.nextMessage().offset == fence.offset)
            #expect(try await bystander.nextMessage().offset == fence.offset)
        }
    }

    @Test("a refreshed token that grants fewer channels unsubscribes the ones it no longer grants")
    func refreshNarrowsGrants() async throws {
        try await GatewayHarness.run { node in
            let token = try await node.token("rita", channels: ["news", "payroll"])
            let connection = try await TestConnection.open(try await node.client.connect(token: token, channels: ["news", "payroll"]))
            connection.session.refresh(token: try await node.token("rita", channels: ["news"], ttl: 600))
            guard case .error(let code, let text) = try await connection.next() else { throw TestFailure("payroll was not dropped") }
            #expect(code == "channel-not-allowed" && text.contains("payroll"))
            guard case .refreshed = try await connection.next() else { throw TestFailure("no refreshed") }
            try await node.produce(HeraldRecord(stream: .channel("payroll")), #"{"secret":1}"#)
            let news = try await node.produce(HeraldRecord(stream: .channel("news")), #"{"news":1}"#)
            #expect(try await connection.nextMessage().offset == news.offset)
            connection.session.subscribe("payroll")
            guard case .error(let again, _) = try await connection.next() else { throw TestFailure("payroll subscribe not refused") }
            #expect(again == "channel-not-allowed")
        }
    }

    @Test("ResumingConnection refreshes ahead of exp through its token function: with 6 s tokens it stays open and receives what comes later")
    func swiftClientRefreshes() async throws {
        try await GatewayHarness.run { node in
            let connection = ResumingConnection(client: node.client, token: { try await node.token("swifty", device: "mac", ttl: 6) })
            let inbox = Inbox<ResumingConnection.Event>()
            let reader = Task { for await event in connection.events { await inbox.append(event) } }
            defer { reader.cancel() }
            connection.start()
            defer { connection.stop() }
            var refreshes = 0
            func next() async throws -> ResumingConnection.Event {
                let event = try await inbox.next(within: .seconds(15))
                if case .closed = event { throw TestFailure("the connection closed: \(event)") }
                if case .refreshed = event { refreshes += 1 }
                return event
            }
            while true { if case .welcome = try await next() { break } }
            try await Task.sleep(for: .seconds(10))
            let late = try await node.produce(HeraldRecord(stream: .user("swifty")), #"{"late":true}"#)
            while true {
                if case .message(let message) = try await next() {
                    #expect(message.offset == late.offset)
                    break
                }
            }
            #expect(refreshes >= 2, "\(refreshes) refreshes in 10 s of 6 s tokens")
            for event in await inbox.drain() {
                if case .closed = event { Issue.record("closed: \(event)") }
                if case .welcome = event { Issue.record("reconnected: \(event)") }
            }
        }
    }
}
