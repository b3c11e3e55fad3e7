import Foundation
import HeraldCore
import HeraldKafka
import HeraldTestSupport
import NIOCore
import Testing

@Suite("Herald's partitioner agrees with librdkafka's murmur2_random, as kcat uses it")
struct PartitionParityTests {
    @Test("records kcat produces land where Murmur2.partition says, and direct records decode as user messages")
    func kcatParity() async throws {
        try await withCluster(partitions: 12) { cluster, topic in
            let keys = (0..<500).map { "user-\($0)-\(String(repeating: "x", count: $0 % 9))" } + ["*", "news", "ü-ñ"]
            try await withLiveConsumer(cluster, topic: topic) { consumer in
                let input = keys.map { "\($0)\t\($0)-value" }.joined(separator: "\n") + "\n"
                try runKcat(
                    ["-P", "-b", cluster.bootstrapServers, "-t", topic, "-K", "\t", "-X", "partitioner=murmur2_random"],
                    stdin: input
                )
                let records = try await collect(keys.count, from: consumer)
                #expect(records.count == keys.count)
                var partitionsUsed = Set<Int32>()
                for record in records {
                    let key = try #require(record.keyString)
                    #expect(record.partition == Murmur2.partition(forKey: key, partitionCount: 12), "key \(key)")
                    #expect(record.valueString == "\(key)-value")
                    partitionsUsed.insert(record.partition)
                    let envelope = try HeraldRecord.decode(key: record.key, headers: [])
                    #expect(envelope.stream == .user(key))
                }
                #expect(partitionsUsed.count == 12, "the keys spread over every partition")
            }
        }
    }

    @Test("Herald's own producer places keys exactly as Murmur2.partition says")
    func producerParity() async throws {
        try await withCluster(partitions: 7) { cluster, topic in
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            let keys = (0..<300).map { "k\($0)" }
            let results = await producer.send(keys.map { record(topic: topic, key: $0, value: "v") })
            for (key, result) in zip(keys, results) {
                #expect(try result.get().partition == Murmur2.partition(forKey: key, partitionCount: 7))
            }
            await producer.shutdown()
        }
    }
}
