import HeraldCore
@testable import HeraldGateway
import HeraldKafka
import NIOCore
import Synchronization
import Testing

/// Resumes that one Kafka read serves get the frames that read encoded, not a copy each.
@Suite("Shared Kafka replays: one read, one encoding, the same frames for every resume it serves")
struct SharedReplayFrameTests {
    final class Reads: Sendable {
        let count = Atomic<Int>(0)
    }

    @Test("two resumes served by one Kafka read get the same encoded frames (shared storage), equal to a lone read's")
    func framesEncodedOnceAndShared() async throws {
        let topic = "herald.events"
        let cluster = try EmbeddedKafkaCluster(topics: [KafkaTopicSpec(name: topic, partitions: 1)], logger: testLogger)
        defer { cluster.shutdown() }
        let kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(kafka: kafka), logger: testLogger)
        let records = (0..<5).map { n in
            let envelope = HeraldRecord(stream: .user("alice"), id: "m\(n)", contentType: .json)
            return KafkaOutgoingRecord(
                topic: topic, key: Array("alice".utf8), value: ByteBuffer(string: #"{"n":\#(n)}"#),
                headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
            )
        }
        for result in await producer.send(records) { _ = try result.get() }
        await producer.shutdown()

        let reader = try KafkaReplayReader(configuration: KafkaReplayReaderConfiguration(kafka: kafka, topic: topic), logger: testLogger)
        let reads = Reads()
        let shared = SharedKafkaReads(reader: reader, limit: 100, onRead: { _ in reads.count.add(1, ordering: .relaxed) })
        // Every request answered late: the first read is still under way when the next two arrive, so
        // those two wait and are served together by the second read.
        try cluster.setBrokerRoundTrip(1, milliseconds: 300)
        let key = Array("alice".utf8)
        async let lone = shared.records(partition: 0, key: key, after: -1, through: 4)
        try await Task.sleep(for: .milliseconds(100))
        async let first = shared.records(partition: 0, key: key, after: -1, through: 4)
        async let second = shared.records(partition: 0, key: key, after: 1, through: 4)
        let (alone, a, b) = try await (lone.get(), first.get(), second.get())
        await reader.close()

        #expect(reads.count.load(ordering: .relaxed) == 2, "one read for the first resume, one for the two that waited")
        #expect(alone.map(\.offset) == [0, 1, 2, 3, 4] && a.map(\.offset) == [0, 1, 2, 3, 4] && b.map(\.offset) == [2, 3, 4])
        func frames(_ deliveries: [Delivery]) -> [ByteBuffer] {
            deliveries.compactMap { if case .frame(let frame) = $0.action { frame } else { nil } }
        }
        func address(_ frame: ByteBuffer) -> UnsafeRawPointer? { frame.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) } }
        #expect(frames(a) == frames(alone), "the same bytes whichever read served them")
        for (x, y) in zip(frames(a).suffix(3), frames(b)) {
            #expect(x == y)
            #expect(address(x) == address(y), "the two resumes of one read share one encoding of each frame")
        }
    }
}
