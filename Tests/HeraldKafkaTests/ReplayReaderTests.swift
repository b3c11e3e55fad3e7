import HeraldKafka
import NIOCore
import Synchronization
import Testing

/// A count a read's callbacks share with the test.
private final class Counted: Sendable {
    private let count = Atomic<Int>(0)
    func add(_ amount: Int) { count.add(amount, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

@Suite("Replay reader: exact tails and honest errors")
struct ReplayReaderTests {
    private func reader(_ cluster: EmbeddedKafkaCluster, _ topic: String) throws -> KafkaReplayReader {
        try KafkaReplayReader(
            configuration: KafkaReplayReaderConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), topic: topic),
            logger: testLogger
        )
    }

    @Test func midOffsetReturnsExactlyTheTail() async throws {
        try await withCluster(partitions: 2) { cluster, topic in
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            let records = (0..<100).map { i in
                KafkaOutgoingRecord(topic: topic, key: Array((i % 3 == 0 ? "alice" : "bob").utf8), value: ByteBuffer(string: "m\(i)"), partition: 0)
            }
            for result in await producer.send(records) { _ = try result.get() }
            await producer.shutdown()

            let replay = try reader(cluster, topic)
            let tail = try await replay.read(partition: 0, from: 40)
            #expect(tail.records.map(\.offset) == Array(40..<100))
            #expect(tail.records.map(\.valueString) == (40..<100).map { "m\($0)" })
            #expect(tail.end == 100)

            let window = try await replay.read(partition: 0, from: 10, until: 20)
            #expect(window.records.map(\.offset) == Array(10..<20))

            let alice = try await replay.read(partition: 0, from: 0, key: Array("alice".utf8))
            #expect(alice.records.map(\.offset) == Array(stride(from: 0, to: 100, by: 3)))

            let atEnd = try await replay.read(partition: 0, from: 100)
            #expect(atEnd.records.isEmpty && atEnd.end == 100)

            // Reads in sequence do not see each other's records.
            let again = try await replay.read(partition: 0, from: 95)
            #expect(again.records.map(\.offset) == Array(95..<100))

            await #expect {
                _ = try await replay.read(partition: 0, from: 0, key: Array("bob".utf8), limit: 10)
            } throws: { error in
                (error as? KafkaError)?.code == .tooMany
            }
            await replay.close()
        }
    }

    @Test("one pass serves several keys, each bounded to its last records")
    func sharedKeyedRead() async throws {
        try await withCluster(partitions: 1) { cluster, topic in
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            let keys = ["alice", "bob", "carol", "*"]
            let records = (0..<200).map { i in
                KafkaOutgoingRecord(topic: topic, key: Array(keys[i % 4].utf8), value: ByteBuffer(string: "m\(i)"), partition: 0)
            }
            for result in await producer.send(records) { _ = try result.get() }
            await producer.shutdown()

            let replay = try reader(cluster, topic)
            let read = try await replay.read(
                partition: 0, from: 20, until: 180, keys: [Array("alice".utf8), Array("bob".utf8), Array("nobody".utf8)], retainPerKey: 30
            )
            #expect(read.end == 180)
            // alice: offsets 20, 24, …, 176 (40 records): the last 30 kept, 136 and below dropped.
            #expect(read.records[Array("alice".utf8)]?.map(\.offset) == Array(stride(from: 60, to: 180, by: 4)))
            #expect(read.dropped[Array("alice".utf8)] == 56)
            #expect(read.records[Array("bob".utf8)]?.map(\.valueString) == stride(from: 61, to: 180, by: 4).map { "m\($0)" })
            #expect(read.records[Array("carol".utf8)] == nil && read.records[Array("nobody".utf8)] == nil)

            let small = try await replay.read(partition: 0, from: 190, until: 200, keys: [Array("*".utf8)], retainPerKey: 30)
            #expect(small.records[Array("*".utf8)]?.map(\.offset) == [191, 195, 199])
            #expect(small.dropped.isEmpty)
            await replay.close()
        }
    }

    @Test("a keyed read stops with cancelled once unwanted, and the next read on the same handle is exact")
    func cancelledReadLeavesNothingBehind() async throws {
        try await withCluster(partitions: 1) { cluster, topic in
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            for i in 0..<300 {
                _ = try await producer.send(KafkaOutgoingRecord(topic: topic, key: Array("alice".utf8), value: ByteBuffer(string: "m\(i)"), partition: 0))
            }
            await producer.shutdown()
            var configuration = KafkaReplayReaderConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), topic: topic)
            configuration.readers = 1
            configuration.kafka.extraProperties["max.partition.fetch.bytes"] = "1"
            let replay = try KafkaReplayReader(configuration: configuration, logger: testLogger)
            let scanned = Counted()
            await #expect {
                _ = try await replay.read(
                    partition: 0, from: 0, until: 300, keys: [Array("alice".utf8)], retainPerKey: 1_000,
                    isWanted: { scanned.value < 20 }, progress: { scanned.add($0) }
                )
            } throws: { error in
                (error as? KafkaError)?.code == .cancelled
            }
            #expect(scanned.value < 300, "stopped early: \(scanned.value) records scanned")
            // The one handle, again: records the stopped read had fetched are not taken as this one's.
            let next = try await replay.read(partition: 0, from: 250, until: 300, keys: [Array("alice".utf8)], retainPerKey: 1_000)
            #expect(next.records[Array("alice".utf8)]?.map(\.offset) == Array(250..<300))
            #expect {
                _ = try KafkaReplayReader(configuration: { var c = configuration; c.readers = 0; return c }(), logger: testLogger)
            } throws: { error in
                (error as? KafkaError)?.code == .configuration
            }
            await replay.close()
        }
    }

    @Test func offsetsBeyondTheEndAndBelowTheStartAreDistinctErrors() async throws {
        try await withCluster(partitions: 1) { cluster, topic in
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            // The mock keeps about 5 MiB per partition: 8 MiB of incompressible records push the log
            // start forward.
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<8 {
                let results = await producer.send((0..<64).map { _ in
                    let bytes = (0..<(16 * 1024)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                    return KafkaOutgoingRecord(topic: topic, key: nil, value: ByteBuffer(bytes: bytes))
                })
                for result in results { _ = try result.get() }
            }
            await producer.shutdown()

            let replay = try reader(cluster, topic)
            let (low, high) = try await replay.watermarks(partition: 0)
            #expect(high == 512)
            #expect(low > 0, "the mock dropped the oldest records")

            await #expect {
                _ = try await replay.read(partition: 0, from: 0)
            } throws: { error in
                (error as? KafkaError)?.code == .offsetExpired
            }
            await #expect {
                _ = try await replay.read(partition: 0, from: high + 5)
            } throws: { error in
                (error as? KafkaError)?.code == .offsetAhead
            }
            let kept = try await replay.read(partition: 0, from: low)
            #expect(kept.records.map(\.offset) == Array(low..<high))
            await replay.close()
        }
    }
}
