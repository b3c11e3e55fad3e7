import ArgumentParser
import Foundation
import HeraldKafka
import Logging
import NIOCore

/// Producer and consumer throughput through HeraldKafka, against the embedded Kafka (a fresh one per
/// run) or a real cluster.
struct KafkaBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "Producer throughput (until every acknowledgement) and live-consumer throughput."
    )

    @Option(help: "Records per run.") var records = 200_000
    @Option(help: "Value size in bytes.") var valueSize = 100
    @Option(help: "Distinct keys (users).") var keys = 10_000
    @Option(help: "Partitions of the bench topic (embedded Kafka only).") var partitions: Int32 = 12
    @Option(help: "Records per send call.") var batch = 2_000
    @Option(help: "Send calls in flight at once.") var concurrency = 4
    @Option(help: "Runs; the median is reported.") var runs = 3
    @Option(help: "A real cluster to measure instead of the embedded Kafka.") var kafkaBrokers: String?
    @Option(help: "Extra librdkafka properties for the bench's clients, key=value,...") var kafkaProperties = ""
    @Option(help: "Producer linger in milliseconds.") var lingerMs = 5
    @Flag(help: "One JSON line instead of a table.") var json = false

    struct Run {
        var produceSeconds: Double
        var consumeSeconds: Double
        var consumed: Int
        var consumeRate: Double { Double(consumed) / consumeSeconds }
    }

    func run() async throws {
        var logger = Logger(label: "herald.bench")
        logger.logLevel = .error
        var results: [Run] = []
        for index in 0..<runs {
            let run = try await measure(logger: logger)
            results.append(run)
            if !json {
                print(String(format: "run %d: produce %.0f rec/s, consume %.0f rec/s", index + 1,
                             Double(records) / run.produceSeconds, run.consumeRate))
            }
        }
        let produce = median(results.map { Double(records) / $0.produceSeconds })
        let consume = median(results.map(\.consumeRate))
        let megabytes = Double(valueSize) / 1_000_000
        if json {
            print(#"{"bench":"kafka","records":\#(records),"value_bytes":\#(valueSize),"keys":\#(keys),"partitions":\#(partitions),"runs":\#(runs),"produce_records_per_second":\#(Int(produce)),"consume_records_per_second":\#(Int(consume))}"#)
        } else {
            print("")
            print("records \(records) × \(valueSize) B, \(keys) keys, \(partitions) partitions, batch \(batch) × \(concurrency) in flight; median of \(runs)")
            print(String(format: "  produce (acks=all, idempotent, until every ack)   %9.0f records/s  %6.1f MB/s", produce, produce * megabytes))
            print(String(format: "  consume (live consumer, all partitions, no group) %9.0f records/s  %6.1f MB/s", consume, consume * megabytes))
        }
    }

    private func measure(logger: Logger) async throws -> Run {
        let topic = "herald.bench.\(UUID().uuidString.prefix(8))"
        var cluster: EmbeddedKafkaCluster? = nil
        let bootstrap: String
        if let kafkaBrokers {
            bootstrap = kafkaBrokers
        } else {
            let started = try EmbeddedKafkaCluster(topics: [KafkaTopicSpec(name: topic, partitions: partitions)], logger: logger)
            cluster = started
            bootstrap = started.bootstrapServers
        }
        defer { cluster?.shutdown() }
        let kafka = KafkaConfiguration(
            bootstrapServers: bootstrap, clientID: "herald-bench", extraProperties: try KafkaConfiguration.properties(parsing: kafkaProperties)
        )
        if cluster == nil {
            let admin = try KafkaAdmin(kafka: kafka, logger: logger)
            try await admin.createTopics([KafkaTopicSpec(name: topic, partitions: partitions)])
            await admin.close()
        }

        let value = ByteBuffer(repeating: UInt8(ascii: "x"), count: valueSize)
        let keyBytes = (0..<keys).map { Array("user-\($0)".utf8) }
        let header = [KafkaHeader(name: "herald-id", value: Array("bench".utf8))]
        var producerConfiguration = KafkaProducerConfiguration(kafka: kafka)
        producerConfiguration.lingerMilliseconds = lingerMs
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)

        let produceStart = ContinuousClock.now
        let failures = try await withThrowingTaskGroup(of: Int.self) { group in
            let batches = stride(from: 0, to: records, by: batch).map { $0..<min($0 + batch, records) }
            var next = 0
            var failed = 0
            func submit(_ range: Range<Int>) {
                group.addTask {
                    let outgoing = range.map { KafkaOutgoingRecord(topic: topic, key: keyBytes[$0 % keys], value: value, headers: header) }
                    return await producer.send(outgoing).filter { (try? $0.get()) == nil }.count
                }
            }
            while next < min(concurrency, batches.count) { submit(batches[next]); next += 1 }
            while let done = try await group.next() {
                failed += done
                if next < batches.count { submit(batches[next]); next += 1 }
            }
            return failed
        }
        let produceSeconds = (ContinuousClock.now - produceStart).seconds
        await producer.shutdown()
        guard failures == 0 else { throw ValidationError("\(failures) records were not acknowledged") }

        // The embedded Kafka keeps about 5 MiB per partition: the consumer reads what is still kept.
        let admin = try KafkaAdmin(kafka: kafka, logger: logger)
        var kept = 0
        for partition in 0..<partitions {
            let marks = try await admin.watermarks(topic: topic, partition: partition)
            kept += Int(marks.high - marks.low)
        }
        await admin.close()

        var consumerConfiguration = KafkaLiveConsumerConfiguration(kafka: kafka, topic: topic)
        consumerConfiguration.start = .beginning
        let consumer = try KafkaLiveConsumer(configuration: consumerConfiguration, logger: logger)
        let consumeSeconds = try await withThrowingTaskGroup(of: Double?.self) { group in
            group.addTask { try await consumer.run(); return nil }
            await consumer.waitUntilAssigned()
            let start = ContinuousClock.now
            var count = 0
            for await batch in consumer.batches {
                count += batch.count
                if count >= kept { break }
            }
            let seconds = (ContinuousClock.now - start).seconds
            group.cancelAll()
            try await group.waitForAll()
            return seconds
        }
        return Run(produceSeconds: produceSeconds, consumeSeconds: consumeSeconds, consumed: kept)
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
