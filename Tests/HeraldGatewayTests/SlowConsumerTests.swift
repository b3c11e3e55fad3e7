import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import HeraldKafka
import Logging
import NIOCore
import NIOPosix
import Testing

@Suite("Slow consumers are cut off at their byte budget")
struct SlowConsumerTests {
    @Test("a client that stops reading is closed with 4008, what the node queues for it stays under the hard limit, and the others are not stalled")
    func slowConsumer() async throws {
        let hardLimit = 1 << 20
        let processes = try await NodeProcesses.start(nodeArguments: [
            "--outbound-cap", "262144", "--outbound-hard-limit", String(hardLimit), "--hot-window-bytes", "8388608",
        ])
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
        func send(to user: String, megabytes: Int) async throws -> Int {
            var sent = 0
            while sent < megabytes * 1_000_000 {
                let records = (0..<500).map { _ in
                    KafkaOutgoingRecord(topic: "herald.events", key: Array(user.utf8), value: ByteBuffer(string: #""\#(payload)""#))
                }
                for result in await producer.send(records) { _ = try result.get() }
                sent += records.count * payload.utf8.count
                // Paced: the embedded Kafka keeps about 5 MiB per partition, and a node that fell that
                // far behind would (rightly) close the partition's connections to resume.
                try await Task.sleep(for: .milliseconds(200))
            }
            return sent
        }

        // The reader's stream is in another partition than the slow client's.
        let slowPartition = Murmur2.partition(forKey: "slow", partitionCount: 4)
        let readerName = (0..<100).map { "reader\($0)" }.first { Murmur2.partition(forKey: $0, partitionCount: 4) != slowPartition }!
        let reader = try await TestConnection.open(try await client.connect(token: try await token(readerName)))
        // A small fixed receive buffer: the kernel would otherwise take up to 32 MiB for a client that reads nothing.
        let slow = try await TestConnection.open(try await client.connect(token: try await token("slow"), receiveBufferBytes: 16 * 1_024))
        try await slow.session.connection.setReading(false)
        // More than the kernel's buffers (the node's send buffer may autotune to 4 MiB) and the hard limit.
        let sent = try await send(to: "slow", megabytes: 8)
        let marker = try await producer.send(KafkaOutgoingRecord(topic: "herald.events", key: Array(readerName.utf8), value: ByteBuffer(string: "1")))
        #expect(try await reader.nextMessage(within: .seconds(30)).offset == marker.offset, "one slow client does not stall the others")

        try await slow.session.connection.setReading(true)
        #expect(try await slow.closeCode(within: .seconds(30)) == CloseCode.slowConsumer.rawValue)
        await producer.shutdown()
        let apiPort = Int(try await processes.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!
        let peak = try await NodeReadings(apiPort: apiPort).peakQueuedBytes()
        print("slow consumer: \(sent / 1_000_000) MB sent to a client that read nothing; the node held at most \(peak) bytes for it")
        // The write that crosses the limit is one frame (about 2 KB here) past it.
        #expect(peak <= hardLimit + 4_096, "the node held \(peak) bytes for one connection; its hard limit is \(hardLimit)")
    }
}
