import ArgumentParser
import HeraldKafka

/// Shows the events topic as Kafka sees it: partitions and the offsets each keeps.
struct TopicsShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show the partitions and watermarks of Herald's topics on a Kafka cluster."
    )

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let options = try common.resolve()
        guard let brokers = options.kafkaBrokers else {
            throw ValidationError("--kafka-brokers (or HERALD_KAFKA_BROKERS) is required: the embedded Kafka of another process is reached through its bootstrap address")
        }
        let admin = try KafkaAdmin(kafka: options.kafka(bootstrapServers: brokers, clientID: "herald-topics"), logger: options.logger("herald.topics"))
        print("cluster \(try await admin.clusterID())")
        for topic in [options.eventsTopic, options.upstreamTopic, options.sessionsTopic] {
            guard let count = try await admin.partitionCount(topic: topic) else {
                print("\(topic): does not exist")
                continue
            }
            print("\(topic): \(count) partitions")
            for partition in 0..<count {
                let marks = try await admin.watermarks(topic: topic, partition: partition)
                print("  [\(partition)] first kept \(marks.low), next \(marks.high)")
            }
        }
        await admin.close()
    }
}
