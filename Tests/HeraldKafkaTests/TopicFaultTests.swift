import Foundation
import HeraldKafka
import NIOCore
import Testing

@Suite("Kafka-side faults the live consumer and the epoch must not hide: retention gaps, recreated topics")
struct TopicFaultTests {
    @Test("a live consumer that falls behind retention reports the gap where it happened and never jumps silently")
    func fallsBehindRetention() async throws {
        try await withCluster(partitions: 1) { cluster, topic in
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            // Read a little at a time and hold the rest back, so that production outruns the reader.
            try await withLiveConsumer(cluster, topic: topic, start: .beginning, configure: { configuration in
                configuration.maxBatchSize = 1
                configuration.bufferedBatches = 1
                configuration.prefetchKilobytes = 1
                configuration.kafka.extraProperties = ["queued.min.messages": "1", "max.partition.fetch.bytes": "1024"]
            }) { consumer in
                var early = consumer.batches.withEvents.makeAsyncIterator()
                for result in await producer.send((0..<3).map { record(topic: topic, key: "k", value: "early-\($0)") }) {
                    _ = try result.get()
                }
                guard case .records(let first)? = await early.next() else { throw TestFailure("no first batch") }
                #expect(first.map(\.offset) == [0])

                // The mock keeps about 5 MiB per partition: 8 MiB more push the first offsets out.
                try await produceIncompressible(8 << 20, to: topic, producer)
                let admin = try KafkaAdmin(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), logger: testLogger)
                let low = try await admin.watermarks(topic: topic, partition: 0).low
                await admin.close()
                #expect(low > 3, "retention removed the first records (low watermark \(low))")

                // Everything before the gap is contiguous, the gap names exactly what was skipped, and
                // reading goes on at its end.
                let items = consumer.batches.withEvents
                let (next, reported, after) = try await within(.seconds(60)) { () async throws -> (Int64, (from: Int64, to: Int64), Int64?) in
                    var iterator = items.makeAsyncIterator()
                    var next: Int64 = 1
                    while let item = await iterator.next() {
                        switch item {
                        case .records(let records):
                            for record in records {
                                guard record.offset == next else {
                                    throw TestFailure("offset \(record.offset) came after \(next - 1) with no gap reported")
                                }
                                next = record.offset + 1
                            }
                        case .event(.partitionGap(let partition, let from, let to)):
                            #expect(partition == 0)
                            guard case .records(let after)? = await iterator.next() else { throw TestFailure("nothing read after the gap") }
                            return (next, (from, to), after.first?.offset)
                        case .event(let other):
                            throw TestFailure("unexpected event \(other)")
                        }
                    }
                    throw TestFailure("the records ended with no gap")
                }
                #expect(reported.from == next, "the gap starts at the first offset not read")
                #expect(reported.to >= low && reported.to > reported.from, "the gap ends where Kafka's log now begins")
                #expect(after == reported.to)
            }
            await producer.shutdown()
        }
    }

    @Test("a consumer started at an offset Kafka no longer has reports the gap to the first kept offset")
    func startsBeforeRetention() async throws {
        try await withCluster(partitions: 1) { cluster, topic in
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            try await produceIncompressible(8 << 20, to: topic, producer)
            let admin = try KafkaAdmin(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), logger: testLogger)
            let low = try await admin.watermarks(topic: topic, partition: 0).low
            await admin.close()
            #expect(low > 0)
            try await withLiveConsumer(cluster, topic: topic, start: .offsets([0: 0])) { consumer in
                let items = consumer.batches.withEvents
                let (event, first) = try await within(.seconds(60)) { () async throws -> (KafkaLiveEvent, Int64?) in
                    var iterator = items.makeAsyncIterator()
                    guard case .event(let event)? = await iterator.next() else { throw TestFailure("the first item was not the gap") }
                    guard case .records(let records)? = await iterator.next() else { throw TestFailure("nothing read after the gap") }
                    return (event, records.first?.offset)
                }
                #expect(event == .partitionGap(partition: 0, from: 0, to: low))
                #expect(first == low)
            }
            await producer.shutdown()
        }
    }

    @Test("another events topic with the same partition count on the same cluster is another epoch")
    func anotherTopicIsAnotherEpoch() async throws {
        try await withCluster(partitions: 12) { cluster, topic in
            try cluster.createTopic(KafkaTopicSpec(name: topic + ".v2", partitions: 12))
            let admin = try KafkaAdmin(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), logger: testLogger)
            let first = try await admin.topicEpoch(topic: topic)
            let second = try await admin.topicEpoch(topic: topic + ".v2")
            await admin.close()
            #expect(first.clusterID == second.clusterID)
            #expect(first.description != second.description, "a cursor of \(topic) would replay records of \(topic).v2")
        }
    }

    @Test("a topic recreated under the same name and partition count is a new epoch; the same topic keeps its epoch")
    func recreatedTopicIsANewEpoch() async throws {
        let topic = "herald.events"
        func epochs(_ cluster: EmbeddedKafkaCluster) async throws -> (KafkaTopicEpoch, KafkaTopicEpoch) {
            let kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)
            // Two nodes (two admins) asking in turn see the same epoch.
            let first = try KafkaAdmin(kafka: kafka, logger: testLogger)
            let one = try await first.topicEpoch(topic: topic)
            await first.close()
            let second = try KafkaAdmin(kafka: kafka, logger: testLogger)
            let two = try await second.topicEpoch(topic: topic)
            await second.close()
            return (one, two)
        }
        // The embedded Kafka cannot delete a topic: a fresh cluster with the same topic is the same
        // name and count with none of the old records, as a deleted and recreated topic is.
        let before = try EmbeddedKafkaCluster(topics: [KafkaTopicSpec(name: topic, partitions: 12)], logger: testLogger)
        let (old, oldAgain) = try await epochs(before)
        before.shutdown()
        let after = try EmbeddedKafkaCluster(topics: [KafkaTopicSpec(name: topic, partitions: 12)], logger: testLogger)
        defer { after.shutdown() }
        let (new, newAgain) = try await epochs(after)

        #expect(old == oldAgain, "every node of one topic agrees on its epoch")
        #expect(new == newAgain)
        #expect(old.partitionCount == 12 && new.partitionCount == 12)
        #expect(old.description != new.description, "\(old) is the epoch of the recreated topic too")
        #expect(old.description.hasPrefix(old.clusterID + ".12."))
    }
}

/// Random bytes in 64 KiB records to key `k` (random, so that compression cannot shrink them).
func produceIncompressible(_ bytes: Int, to topic: String, _ producer: KafkaProducer) async throws {
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<(bytes / (1 << 20)) {
        let records = (0..<16).map { _ in
            KafkaOutgoingRecord(
                topic: topic, key: Array("k".utf8),
                value: ByteBuffer(bytes: (0..<(8 * 1024)).flatMap { _ in withUnsafeBytes(of: generator.next()) { Array($0) } })
            )
        }
        for result in await producer.send(records) { _ = try result.get() }
    }
}
