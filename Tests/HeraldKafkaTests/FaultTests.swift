import HeraldKafka
import NIOCore
import Testing

@Suite("Faults: broker down, flush on shutdown, nothing acknowledged is lost")
struct FaultTests {
    @Test("sends made while the broker is down succeed once it returns, and the consumer sees each one once")
    func brokerDownThenUp() async throws {
        try await withCluster(partitions: 3) { cluster, topic in
            var configuration = producerConfiguration(cluster)
            configuration.deliveryTimeoutMilliseconds = 20_000
            let producer = try KafkaProducer(configuration: configuration, logger: testLogger)
            // Connect first, so the outage hits an established producer.
            _ = try await producer.send(record(topic: topic, key: "warm-up", value: "0"))

            try await withLiveConsumer(cluster, topic: topic) { consumer in
                try cluster.setBrokerDown(1)
                let sending = Task { await producer.send((0..<200).map { record(topic: topic, key: "k\($0 % 10)", value: "v\($0)") }) }
                try await Task.sleep(for: .seconds(1))
                try cluster.setBrokerUp(1)
                let results = await sending.value

                var acknowledged: Set<String> = []
                for (index, result) in results.enumerated() {
                    switch result {
                    case .success: acknowledged.insert("v\(index)")
                    case .failure(let error): #expect(error.code == .delivery, "a failure is a delivery error: \(error)")
                    }
                }
                #expect(!acknowledged.isEmpty)
                let received = try await collect(acknowledged.count, from: consumer)
                let values = received.map(\.valueString)
                #expect(Set(values).count == values.count, "nothing duplicated")
                #expect(acknowledged.isSubset(of: Set(values)), "every acknowledged record is read")
            }
            await producer.shutdown()
        }
    }

    @Test("with the broker down past the delivery timeout every send fails with a delivery error, and none appears later")
    func brokerDownPastTimeout() async throws {
        try await withCluster(partitions: 1) { cluster, topic in
            var configuration = producerConfiguration(cluster)
            configuration.deliveryTimeoutMilliseconds = 1_500
            let producer = try KafkaProducer(configuration: configuration, logger: testLogger)
            _ = try await producer.send(record(topic: topic, key: "a", value: "before"))

            try cluster.setBrokerDown(1)
            let results = await producer.send((0..<20).map { record(topic: topic, key: "a", value: "lost-\($0)") })
            for result in results {
                #expect(throws: KafkaError.self) { try result.get() }
                if case .failure(let error) = result {
                    #expect(error.code == .delivery)
                    #expect(error.isRetriable, "a timed-out delivery may be retried by the caller: \(error)")
                }
            }
            try cluster.setBrokerUp(1)
            // The producer reconnects with backoff; a caller retries a retriable failure.
            var after: KafkaDelivery? = nil
            var afterValue = ""
            for attempt in 0..<20 where after == nil {
                afterValue = "after-\(attempt)"
                do {
                    after = try await producer.send(record(topic: topic, key: "a", value: afterValue))
                } catch let error as KafkaError {
                    #expect(error.isRetriable, "\(error)")
                }
            }
            await producer.shutdown()

            let reader = try KafkaReplayReader(
                configuration: KafkaReplayReaderConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), topic: topic),
                logger: testLogger
            )
            let log = try await reader.read(partition: 0, from: 0)
            let values = log.records.map(\.valueString)
            #expect(values.first == "before")
            #expect(!values.contains { $0.hasPrefix("lost-") }, "nothing sent while the broker was away was written")
            let acknowledged = try #require(after)
            #expect(log.records.first { $0.offset == acknowledged.offset }?.valueString == afterValue)
            await reader.close()
        }
    }

    @Test("shutdown flushes what was enqueued; a send after shutdown is refused")
    func shutdownFlushes() async throws {
        try await withCluster(partitions: 4) { cluster, topic in
            var configuration = producerConfiguration(cluster)
            configuration.lingerMilliseconds = 500
            let producer = try KafkaProducer(configuration: configuration, logger: testLogger)
            try await withLiveConsumer(cluster, topic: topic) { consumer in
                let sending = Task { await producer.send((0..<1_000).map { record(topic: topic, key: "k\($0 % 7)", value: "v\($0)") }) }
                // All 1,000 wait in librdkafka's queue for the linger when shutdown begins.
                while producer.inFlightCount < 1_000 { await Task.yield() }
                await producer.shutdown()
                let results = await sending.value
                let acknowledged = results.filter { (try? $0.get()) != nil }.count
                #expect(acknowledged == 1_000, "the flush sent what was queued instead of dropping it")
                let received = try await collect(acknowledged, from: consumer)
                #expect(received.count == acknowledged)
            }
            await #expect {
                _ = try await producer.send(record(topic: topic, key: "late", value: "x"))
            } throws: { error in
                (error as? KafkaError)?.code == .shutdown
            }
        }
    }

    @Test("a flush that cannot finish fails the records back to their senders instead of hanging")
    func flushTimeoutFailsRecords() async throws {
        try await withCluster(partitions: 1) { cluster, topic in
            var configuration = producerConfiguration(cluster)
            configuration.flushTimeoutMilliseconds = 500
            configuration.deliveryTimeoutMilliseconds = 60_000
            let producer = try KafkaProducer(configuration: configuration, logger: testLogger)
            _ = try await producer.send(record(topic: topic, key: "a", value: "warm-up"))
            try cluster.setBrokerDown(1)
            let sending = Task { await producer.send((0..<10).map { record(topic: topic, key: "a", value: "v\($0)") }) }
            while producer.inFlightCount == 0 { await Task.yield() }
            await producer.shutdown()
            let results = await sending.value
            for result in results {
                #expect(throws: KafkaError.self) { try result.get() }
            }
            try cluster.setBrokerUp(1)
        }
    }
}
