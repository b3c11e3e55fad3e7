import Foundation
import HeraldCore
import HeraldGateway
import HeraldKafka
import NIOCore
import NIOPosix
import Testing

@Suite("A slow Server-Sent Events reader is cut off by the same byte budget as a WebSocket")
struct SlowEventStreamTests {
    @Test("an event stream that stops reading ends with event: close 4008, the node holds at most its hard limit for it, and the others are not stalled")
    func slowEventStream() async throws {
        let hardLimit = 1 << 20
        let processes = try await NodeProcesses.start(nodeArguments: [
            "--outbound-cap", "262144", "--outbound-hard-limit", String(hardLimit), "--hot-window-bytes", "8388608",
        ])
        defer { processes.stop() }
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
                // Paced, as in SlowConsumerTests: the embedded Kafka keeps about 5 MiB per partition.
                try await Task.sleep(for: .milliseconds(200))
            }
            return sent
        }

        let slowPartition = Murmur2.partition(forKey: "slow", partitionCount: 4)
        let readerName = (0..<100).map { "reader\($0)" }.first { Murmur2.partition(forKey: $0, partitionCount: 4) != slowPartition }!
        // The other reader reads events too: a slow stream does not stall its own transport.
        let reader = try await EventStreamConnection.open(port: processes.port, token: try await token(readerName))
        let slow = try await EventStreamConnection.open(port: processes.port, token: try await token("slow"), receiveBufferBytes: 16 * 1_024)
        try await slow.setReading(false)
        let sent = try await send(to: "slow", megabytes: 8)
        let marker = try await producer.send(KafkaOutgoingRecord(topic: "herald.events", key: Array(readerName.utf8), value: ByteBuffer(string: "1")))
        #expect(try await reader.nextMessage(within: .seconds(30)).offset == marker.offset, "one slow stream does not stall the others")

        try await slow.setReading(true)
        #expect(try await slow.closeCode(within: .seconds(60)) == CloseCode.slowConsumer.rawValue)
        reader.close()
        await producer.shutdown()
        let apiPort = Int(try await processes.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!
        let peak = try await NodeReadings(apiPort: apiPort).peakQueuedBytes()
        print("slow event stream: \(sent / 1_000_000) MB sent to a reader that read nothing; the node held at most \(peak) bytes for it")
        #expect(peak <= hardLimit + 4_096, "the node held \(peak) bytes for one connection; its hard limit is \(hardLimit)")
    }
}
