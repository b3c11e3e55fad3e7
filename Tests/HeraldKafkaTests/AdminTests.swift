import HeraldKafka
import Testing

@Suite("Admin and metadata against the mock cluster")
struct AdminTests {
    @Test func metadataWatermarksAndClusterID() async throws {
        try await withCluster(partitions: 3) { cluster, topic in
            let admin = try KafkaAdmin(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), logger: testLogger)
            #expect(try await admin.partitionCount(topic: topic) == 3)
            #expect(try await admin.partitionCount(topic: "no.such.topic") == nil)
            #expect(try await admin.partitionCount(topic: "no.such.topic") == nil, "asking did not create it")
            let id = try await admin.clusterID()
            #expect(!id.isEmpty)

            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            for _ in 0..<5 {
                _ = try await producer.send(KafkaOutgoingRecord(topic: topic, key: nil, value: .init(string: "x"), partition: 1))
            }
            await producer.shutdown()
            let marks = try await admin.watermarks(topic: topic, partition: 1)
            #expect(marks.low == 0 && marks.high == 5)
            #expect(try await admin.endOffsets(topic: topic) == [0, 5, 0])
            await #expect {
                try await admin.watermarks(topic: topic, partition: 9)
            } throws: { error in
                (error as? KafkaError)?.code == .unknownTopicOrPartition
            }
            await admin.close()
        }
    }

    /// The mock cluster does not implement CreateTopics or CreatePartitions (its topics are made with
    /// `EmbeddedKafkaCluster.createTopic`): a broker that cannot answer gives a typed error in the
    /// admin's time, never a hang.
    @Test func unansweredAdminRequestsFailInTime() async throws {
        try await withCluster(partitions: 1) { cluster, topic in
            let admin = try KafkaAdmin(
                kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), logger: testLogger, timeout: .seconds(2)
            )
            await #expect {
                try await admin.createTopics([KafkaTopicSpec(name: "created.by.admin", partitions: 4)])
            } throws: { error in
                [.timedOut, .admin].contains((error as? KafkaError)?.code)
            }
            await #expect(throws: KafkaError.self) { try await admin.createPartitions(topic: topic, total: 6) }
            await admin.close()
        }
    }
}
