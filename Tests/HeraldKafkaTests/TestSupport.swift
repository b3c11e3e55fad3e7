import Foundation
@_exported import HeraldTestSupport
import HeraldKafka
import Logging
import NIOCore
import ServiceLifecycle
import Testing

/// The logger tests hand to Kafka clients: quiet unless HERALD_TEST_LOG is set.
let testLogger: Logger = {
    var logger = Logger(label: "herald.test")
    logger.logLevel = ProcessInfo.processInfo.environment["HERALD_TEST_LOG"] != nil ? .debug : .critical
    return logger
}()

/// A mock cluster with one fresh topic, torn down at the end of `body`.
func withCluster<T>(
    brokers: Int32 = 1,
    partitions: Int32 = 12,
    _ body: (EmbeddedKafkaCluster, String) async throws -> T
) async throws -> T {
    let topic = "herald.test.\(UUID().uuidString.prefix(8))"
    let cluster = try EmbeddedKafkaCluster(
        brokers: brokers,
        topics: [KafkaTopicSpec(name: topic, partitions: partitions, replicationFactor: brokers)],
        logger: testLogger
    )
    defer { cluster.shutdown() }
    return try await body(cluster, topic)
}

func producerConfiguration(_ cluster: EmbeddedKafkaCluster) -> KafkaProducerConfiguration {
    var configuration = KafkaProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers))
    configuration.flushTimeoutMilliseconds = 5_000
    return configuration
}

/// Runs a live consumer as a service for the duration of `body`, then shuts it down.
func withLiveConsumer<T>(
    _ cluster: EmbeddedKafkaCluster,
    topic: String,
    start: KafkaStartPosition = .end,
    configure: (inout KafkaLiveConsumerConfiguration) -> Void = { _ in },
    _ body: (KafkaLiveConsumer) async throws -> T
) async throws -> T {
    var configuration = KafkaLiveConsumerConfiguration(
        kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), topic: topic
    )
    configuration.start = start
    configure(&configuration)
    let consumer = try KafkaLiveConsumer(configuration: configuration, logger: testLogger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await consumer.run() }
        await consumer.waitUntilAssigned()
        do {
            let result = try await body(consumer)
            group.cancelAll()
            try await group.waitForAll()
            return result
        } catch {
            group.cancelAll()
            try? await group.waitForAll()
            throw error
        }
    }
}

/// Reads batches until `count` records arrived or `limit` passed (a liveness bound for a stuck test,
/// not a performance assertion).
func collect(_ count: Int, from consumer: KafkaLiveConsumer, limit: Duration = .seconds(120)) async throws -> [KafkaRecord] {
    try await withThrowingTaskGroup(of: [KafkaRecord]?.self) { group in
        group.addTask {
            var records: [KafkaRecord] = []
            for await batch in consumer.batches {
                records.append(contentsOf: batch)
                if records.count >= count { break }
            }
            return records
        }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        guard let records = first else {
            throw TestFailure("timed out waiting for \(count) records")
        }
        return records
    }
}


func record(topic: String, key: String?, value: String, headers: [KafkaHeader] = []) -> KafkaOutgoingRecord {
    KafkaOutgoingRecord(topic: topic, key: key.map { Array($0.utf8) }, value: ByteBuffer(string: value), headers: headers)
}

/// Runs `body`, failing the test instead of hanging when it takes longer than `limit` (a liveness
/// bound for a stuck test, not a performance assertion).
func within<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        guard let result = first else { throw TestFailure("nothing happened within \(limit)") }
        return result
    }
}

