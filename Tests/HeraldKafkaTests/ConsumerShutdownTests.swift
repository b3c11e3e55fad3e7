import HeraldKafka
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

/// A node stops its parts in reverse order: the data plane first (it stops reading the consumer's
/// batches), then the control plane, then the consumer. The consumer must not end on its own in
/// between: a service group counts a service that ends out of order as failed, and the node would
/// exit 1 after a clean SIGTERM.
@Suite("Live consumer shutdown: it ends in its own turn, not when its reader stops")
struct ConsumerShutdownTests {
    final class Count: Sendable {
        let value = Atomic<Int>(0)
    }

    /// Reads batches until its graceful shutdown, then stops reading (as the gateway does).
    struct Reader: Service {
        let consumer: KafkaLiveConsumer
        let read: Count

        func run() async throws {
            await cancelWhenGracefulShutdown {
                for await batch in consumer.batches { read.value.add(batch.count, ordering: .relaxed) }
            }
        }
    }

    /// Takes a while to stop (as the control plane waits for its requests), producing meanwhile.
    struct SlowToStop: Service {
        let producer: KafkaProducer
        let topic: String

        func run() async throws {
            try? await gracefulShutdown()
            // Records keep coming while this service stops: the consumer sees that its reader is gone.
            for index in 0..<40 {
                _ = try? await producer.send(KafkaOutgoingRecord(topic: topic, key: nil, value: ByteBuffer(string: "late-\(index)"), partition: 0))
                try? await Task.sleep(for: .milliseconds(25))
            }
        }
    }

    @Test("a live consumer whose reader stopped keeps running until its own graceful shutdown, so the group ends cleanly")
    func consumerEndsInItsTurn() async throws {
        try await withCluster(partitions: 1) { cluster, topic in
            let producer = try KafkaProducer(configuration: producerConfiguration(cluster), logger: testLogger)
            let consumer = try KafkaLiveConsumer(
                configuration: KafkaLiveConsumerConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), topic: topic),
                logger: testLogger
            )
            let read = Count()
            // Started in this order, stopped in reverse: reader, then the slow one, then the consumer.
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: producer),
                    .init(service: consumer, successTerminationBehavior: .gracefullyShutdownGroup),
                    .init(service: SlowToStop(producer: producer, topic: topic), successTerminationBehavior: .gracefullyShutdownGroup),
                    .init(service: Reader(consumer: consumer, read: read), successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                logger: testLogger
            ))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                await consumer.waitUntilAssigned()
                _ = try await producer.send(KafkaOutgoingRecord(topic: topic, key: nil, value: ByteBuffer(string: "first"), partition: 0))
                let deadline = ContinuousClock.now + .seconds(10)
                while read.value.load(ordering: .relaxed) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
                #expect(read.value.load(ordering: .relaxed) == 1)
                await group.triggerGracefulShutdown()
                // Before the fix: ServiceGroupError.serviceFinishedUnexpectedly (the consumer).
                try await tasks.waitForAll()
            }
        }
    }
}
