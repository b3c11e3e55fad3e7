import HeraldKafka
import NIOCore
import Testing

@Suite("Producer and live consumer against the mock cluster over TCP")
struct ProduceConsumeTests {
    @Test("100k keyed records with headers: every delivery report matches what the consumer reads")
    func roundTrip() async throws {
        try await withCluster(partitions: 12) { cluster, topic in
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            let total = 100_000
            let keys = 1_000

            try await withLiveConsumer(cluster, topic: topic) { consumer in
                #expect(consumer.assignedPartitions == Array(0..<12))

                var delivered: [Int: KafkaDelivery] = [:]
                let batchSize = 5_000
                for start in stride(from: 0, to: total, by: batchSize) {
                    let records = (start..<start + batchSize).map { sequence in
                        record(
                            topic: topic, key: "user-\(sequence % keys)", value: "payload-\(sequence)",
                            headers: [
                                KafkaHeader(name: "herald-id", value: Array("\(sequence)".utf8)),
                                KafkaHeader(name: "empty", value: nil),
                            ]
                        )
                    }
                    let results = await producer.send(records)
                    for (offset, result) in results.enumerated() {
                        delivered[start + offset] = try result.get()
                    }
                }
                #expect(delivered.count == total)

                let received = try await collect(total, from: consumer)
                #expect(received.count == total, "nothing duplicated")

                var seen = Set<Int>()
                var lastSequenceByKey: [String: Int] = [:]
                var lastOffsetByPartition: [Int32: Int64] = [:]
                for record in received {
                    let sequence = try #require(record.header("herald-id").flatMap(Int.init))
                    #expect(seen.insert(sequence).inserted, "record \(sequence) read twice")
                    let delivery = try #require(delivered[sequence])
                    #expect(delivery.partition == record.partition && delivery.offset == record.offset)
                    #expect(record.keyString == "user-\(sequence % keys)")
                    #expect(record.valueString == "payload-\(sequence)")
                    #expect(record.headers.contains(KafkaHeader(name: "empty", value: nil)))
                    #expect(record.timestamp > 0)
                    let key = record.keyString!
                    #expect((lastSequenceByKey[key] ?? -1) < sequence, "per-key order kept")
                    lastSequenceByKey[key] = sequence
                    #expect((lastOffsetByPartition[record.partition] ?? -1) < record.offset)
                    lastOffsetByPartition[record.partition] = record.offset
                }
                #expect(seen.count == total, "nothing lost")
            }
            await producer.shutdown()
        }
    }
}

@Suite("A prepared producer: its first send does not wait for topic metadata")
struct ProducerPreparationTests {
    @Test("a producer prepared for a topic holds that topic's metadata and only what it was prepared for (the first push of a fresh node waited most of a second for it)")
    func preparedProducerHoldsItsTopicsMetadata() async throws {
        try await withCluster(partitions: 3) { cluster, topic in
            try cluster.createTopic(KafkaTopicSpec(name: "unrelated.topic", partitions: 1))
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            try await producer.prepare(topics: [topic], timeout: .seconds(5))
            let known = try await producer.knownTopics()
            #expect(known == [topic], "\(known)")
            let delivery = try await producer.send(record(topic: topic, key: "user-1", value: "first"))
            #expect(delivery.offset >= 0)
            await producer.shutdown()
        }
    }
}
