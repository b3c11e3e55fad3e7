import Foundation
import Testing

@Suite("herald serve: the message id memory and the stored cursors are range-checked")
struct DeviceCursorOptionsTests {
    @Test("--message-id-memory and --stored-cursors out of range stop the node at start, naming the setting")
    func rangeChecked() async throws {
        for (arguments, message) in [
            (["--message-id-memory", "0"], "the message id memory must be 1 to 100000000 ids, not 0"),
            (["--stored-cursors", "0"], "the stored cursors must be 1 to 100000000 devices, not 0"),
            (["--stored-cursors", "100000001"], "the stored cursors must be 1 to 100000000 devices, not 100000001"),
        ] {
            // An address nothing listens on: the check comes before any Kafka client is made.
            let node = try HeraldProcess(
                ["serve", "--kafka-brokers", "127.0.0.1:1", "--port", "0", "--api-port", "0"] + arguments,
                environment: ["HERALD_JWT_SECRET": testSecret, "HERALD_API_KEYS": testAPIKey]
            )
            let status = try await node.exitStatus(within: .seconds(30))
            node.kill()
            #expect(status != nil && status != 0, "\(arguments): \(node.text.suffix(500))")
            #expect(node.text.contains(message), "\(arguments): \(node.text.suffix(500))")
        }
    }
}
