import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import NIOPosix
import Testing

@Suite("Channel publishes across nodes")
struct ChannelPublishClusterTests {
    @Test("a comment published on one node reaches the channel's viewers on every node, anonymous ones included, and a page refreshing its token on another node keeps receiving")
    func commentReachesEveryNode() async throws {
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let environment = ["HERALD_NAMESPACES": "video subscribe=anonymous publish history=50"]
        let a = try await ClusterNode.start("node-a", bootstrap: bootstrap, environment: environment)
        let b = try await ClusterNode.start("node-b", bootstrap: bootstrap, environment: environment)
        defer { [a, b].forEach { $0.process.stop() } }
        let group = MultiThreadedEventLoopGroup.singleton
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        let onA = HeraldClient(host: "127.0.0.1", port: a.port, group: group)
        let onB = HeraldClient(host: "127.0.0.1", port: b.port, group: group)

        let viewerB = try await TestConnection.open(try await onB.connectAnonymously(channels: ["video:9"]))
        let viewerA = try await TestConnection.open(try await onA.connectAnonymously(channels: ["video:9"]))
        let bobToken = try await issuer.token(user: "bob", expiresAt: Date().addingTimeInterval(6))
        let bob = try await TestConnection.open(try await onB.connect(token: bobToken, channels: ["video:9"]))
        bob.session.refresh(token: try await issuer.token(user: "bob", expiresAt: Date().addingTimeInterval(600)))
        guard case .refreshed = try await bob.next() else { throw TestFailure("bob's refresh was not accepted") }
        let alice = try await TestConnection.open(
            try await onA.connect(token: try await issuer.token(user: "alice", expiresAt: Date().addingTimeInterval(600)), channels: ["video:9"])
        )
        // Past bob's first exp: his refreshed connection on node B still receives.
        try await Task.sleep(for: .seconds(7))
        alice.session.publish(json: #"{"comment":"first!"}"#, toChannel: "video:9", id: "c-1")
        for (name, viewer) in [("anonymous on B", viewerB), ("anonymous on A", viewerA), ("bob on B", bob)] {
            let message = try await viewer.nextMessage(within: .seconds(20))
            #expect(message.stream == "c:video:9" && message.id == "c-1" && message.data == #"{"comment":"first!"}"#, "\(name)")
        }
    }
}
