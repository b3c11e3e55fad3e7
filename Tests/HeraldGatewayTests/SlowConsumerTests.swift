import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import HeraldKafka
import Logging
import NIOCore
import NIOPosix
import Testing

@Suite("Slow consumers are cut off at the outbound cap")
struct SlowConsumerTests {
    @Test("a client that stops reading is closed with 4008 and the node process's memory stays bounded")
    func slowConsumer() async throws {
        // The hot window is bounded too (8 MiB here, 64 MiB by default); it is full after the warm-up.
        let processes = try await NodeProcesses.start(nodeArguments: ["--outbound-cap", "262144", "--hot-window-bytes", "8388608"])
        defer { processes.stop() }
        let group = MultiThreadedEventLoopGroup.singleton
        let client = HeraldClient(host: "127.0.0.1", port: processes.port, group: group)
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        func token(_ user: String) async throws -> String {
            try await issuer.token(user: user, expiresAt: Date().addingTimeInterval(600))
        }
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: processes.bootstrap)), logger: testLogger
        )
        let payload = String(repeating: "x", count: 2_000)
        func send(to user: String, megabytes: Int, readBy reader: TestConnection? = nil) async throws -> Int {
            var sent = 0
            while sent < megabytes * 1_000_000 {
                let records = (0..<500).map { _ in
                    KafkaOutgoingRecord(topic: "herald.events", key: Array(user.utf8), value: ByteBuffer(string: #""\#(payload)""#))
                }
                for result in await producer.send(records) { _ = try result.get() }
                sent += records.count * payload.utf8.count
                if let reader {
                    for _ in records { _ = try await reader.nextMessage(within: .seconds(30)) }
                }
            }
            return sent
        }

        // Warm-up: the same traffic at the same speed to a user with no connection, so that the node's
        // Kafka prefetch, batch pipe and malloc's pools reach their working size first; then some
        // to a client that reads.
        let reader = try await TestConnection.open(try await client.connect(token: try await token("reader")))
        _ = try await send(to: "nobody", megabytes: 80)
        _ = try await send(to: "reader", megabytes: 10, readBy: reader)

        let slow = try await TestConnection.open(try await client.connect(token: try await token("slow")))
        try await slow.session.connection.setReading(false)
        let before = processes.node.residentBytes
        let sent = try await send(to: "slow", megabytes: 80)
        let marker = try await producer.send(KafkaOutgoingRecord(topic: "herald.events", key: Array("reader".utf8), value: ByteBuffer(string: "1")))
        #expect(try await reader.nextMessage(within: .seconds(30)).offset == marker.offset, "one slow client does not stall the others")
        let after = processes.node.residentBytes

        try await slow.session.connection.setReading(true)
        #expect(try await slow.closeCode(within: .seconds(30)) == CloseCode.slowConsumer.rawValue)
        await producer.shutdown()
        let growth = after - before
        print("slow consumer: \(sent / 1_000_000) MB sent to a client that read nothing; node RSS \(before / 1_000_000) MB -> \(after / 1_000_000) MB")
        // Buffering for the slow client would grow the node by at least what was sent (80 MB of
        // frames); the cap keeps it to the node's working set, which varies by a few MB between runs.
        #expect(growth < sent / 4, "node RSS grew \(growth / 1_000_000) MB while \(sent / 1_000_000) MB went to a client that read nothing")
    }
}
