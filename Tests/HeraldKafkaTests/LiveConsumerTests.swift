import HeraldKafka
import NIOCore
import Testing

@Suite("Live consumer: start positions, late topics, backpressure")
struct LiveConsumerTests {
    @Test func startsAtGivenOffsetsOrTheBeginning() async throws {
        try await withCluster(partitions: 2) { cluster, topic in
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            let records = (0..<10).map { KafkaOutgoingRecord(topic: topic, key: nil, value: ByteBuffer(string: "p0-\($0)"), partition: 0) }
                + (0..<4).map { KafkaOutgoingRecord(topic: topic, key: nil, value: ByteBuffer(string: "p1-\($0)"), partition: 1) }
            for result in await producer.send(records) { _ = try result.get() }

            try await withLiveConsumer(cluster, topic: topic, start: .offsets([0: 7])) { consumer in
                #expect(consumer.startOffsets == [0: 7, 1: 4], "unlisted partitions start at their end")
                let tail = try await collect(3, from: consumer)
                #expect(tail.map(\.valueString) == ["p0-7", "p0-8", "p0-9"])
            }
            try await withLiveConsumer(cluster, topic: topic, start: .beginning) { consumer in
                let all = try await collect(14, from: consumer)
                #expect(all.filter { $0.partition == 0 }.map(\.offset) == Array(0..<10))
                #expect(all.filter { $0.partition == 1 }.map(\.offset) == Array(0..<4))
            }
            await producer.shutdown()
        }
    }

    @Test("a consumer started before its topic exists waits for it, then reads it")
    func topicCreatedLater() async throws {
        try await withCluster(partitions: 1) { cluster, _ in
            let topic = "created.later"
            var configuration = KafkaLiveConsumerConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), topic: topic)
            configuration.start = .beginning
            let consumer = try KafkaLiveConsumer(configuration: configuration, logger: testLogger)
            let running = Task { try await consumer.run() }
            try await Task.sleep(for: .milliseconds(700))
            #expect(consumer.assignedPartitions.isEmpty)
            try cluster.createTopic(KafkaTopicSpec(name: topic, partitions: 3))
            await consumer.waitUntilAssigned()
            #expect(consumer.assignedPartitions == [0, 1, 2])

            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            _ = try await producer.send(record(topic: topic, key: "alice", value: "hello"))
            let received = try await collect(1, from: consumer)
            #expect(received.map(\.valueString) == ["hello"])
            await producer.shutdown()
            running.cancel()
            try await running.value
        }
    }

    @Test("a slow reader holds the poll thread back and still gets every record in order")
    func backpressure() async throws {
        try await withCluster(partitions: 1) { cluster, topic in
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            try await withLiveConsumer(cluster, topic: topic, configure: { $0.maxBatchSize = 50; $0.bufferedBatches = 1 }) { consumer in
                for result in await producer.send((0..<3_000).map { record(topic: topic, key: "k", value: "\($0)") }) {
                    _ = try result.get()
                }
                var values: [String] = []
                for await batch in consumer.batches {
                    #expect(batch.count <= 50)
                    values.append(contentsOf: batch.map(\.valueString))
                    try await Task.sleep(for: .milliseconds(1))
                    if values.count >= 3_000 { break }
                }
                #expect(values == (0..<3_000).map(String.init))
            }
            await producer.shutdown()
        }
    }
}
