import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import NIOPosix
import Testing

@Suite("Kick: exact, URL-decoded ids; an honest answer; revocation on every node")
struct KickTests {
    @Test("a URL-encoded user id in DELETE /v1/users/{id}/connections kicks that user (bob%40example.com is bob@example.com)")
    func encodedIdKicks() async throws {
        try await GatewayHarness.run { node in
            let bob = try await node.connect("bob@example.com")
            let presence = try await api(node.apiPort, "GET", "/v1/users/bob%40example.com/connections")
            #expect((presence.json["connections"] as? [Any])?.count == 1, "\(presence.body)")
            let kick = try await api(node.apiPort, "DELETE", "/v1/users/bob%40example.com/connections")
            #expect(kick.status == 202, "\(kick.body)")
            #expect(kick.json["user"] as? String == "bob@example.com")
            #expect(try await bob.closeCode() == CloseCode.kicked.rawValue)
        }
    }

    @Test("a kick that matches no connection on this node says so in its answer, instead of a silent 202")
    func kickOfNobodySaysSo() async throws {
        try await GatewayHarness.run { node in
            let nobody = try await api(node.apiPort, "DELETE", "/v1/users/nobody/connections")
            #expect(nobody.json["connections_here"] as? Int == 0, "\(nobody.body)")
            let zoe = try await node.connect("zoe")
            let kick = try await api(node.apiPort, "DELETE", "/v1/users/zoe/connections")
            #expect(kick.status == 202 && kick.json["connections_here"] as? Int == 1, "\(kick.body)")
            #expect(try await zoe.closeCode() == CloseCode.kicked.rawValue)
            let invalid = try await api(node.apiPort, "DELETE", "/v1/users/zoe/connections?revoke=maybe")
            #expect(invalid.status == 400 && invalid.errorMessage?.contains("revoke") == true, "\(invalid.body)")
        }
    }

    @Test("a kick with revoke=true on one node: the same token gets 401 on every node until a token issued after it")
    func revocationAcrossNodes() async throws {
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let a = try await ClusterNode.start("node-a", bootstrap: bootstrap, environment: [:])
        let b = try await ClusterNode.start("node-b", bootstrap: bootstrap, environment: [:])
        defer { [a, b].forEach { $0.process.stop() } }
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        let old = try await issuer.token(user: "rita", expiresAt: Date().addingTimeInterval(600))
        let group = MultiThreadedEventLoopGroup.singleton
        func client(_ node: ClusterNode) -> HeraldClient { HeraldClient(host: "127.0.0.1", port: node.port, group: group) }
        func status(_ node: ClusterNode, _ token: String) async -> Int {
            do {
                let session = try await client(node).connect(token: token)
                session.close()
                return 101
            } catch let rejected as HandshakeRejected {
                return rejected.status
            } catch {
                return -1
            }
        }

        let onB = try await TestConnection.open(try await client(b).connect(token: old))
        let kick = try await api(a.apiPort, "DELETE", "/v1/users/rita/connections?revoke=true")
        #expect(kick.status == 202, "\(kick.body)")
        #expect(kick.json["revoked_before"] is NSNumber, "\(kick.body)")
        #expect(try await onB.closeCode() == CloseCode.kicked.rawValue)
        // Node B applied the revocation before it closed the connection; node A applied it at once.
        #expect(await status(b, old) == 401)
        #expect(await status(a, old) == 401)
        let fresh = try await issuer.token(user: "rita", expiresAt: Date().addingTimeInterval(600))
        #expect(await status(b, fresh) == 101, "a token issued after the revocation connects")
        #expect(await status(a, fresh) == 101)
        #expect(await status(b, try await issuer.token(user: "other", expiresAt: Date().addingTimeInterval(600))) == 101, "other users are not affected")
    }
}
