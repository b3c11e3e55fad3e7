import HeraldClient
import NIOCore
import NIOPosix
import Testing

@Suite("HeraldClient: a connection that never opens")
struct ClientConnectFailureTests {
    @Test("connecting to a port nobody listens on throws, and the process stays up (the handshake's promise is not leaked)")
    func refusedConnectThrows() async throws {
        // A port just bound and released: nothing listens there now.
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = probe.localAddress!.port!
        try await probe.close()
        for _ in 0..<3 {
            await #expect(throws: (any Error).self) {
                _ = try await WebSocketClientConnection.connect(
                    host: "127.0.0.1", port: port, path: "/v1/ws", group: MultiThreadedEventLoopGroup.singleton
                )
            }
        }
        // The leaked promise trapped when its handler was freed, a moment after the refusal.
        try await Task.sleep(for: .milliseconds(500))
    }
}
