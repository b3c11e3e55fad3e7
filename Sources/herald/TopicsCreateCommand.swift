import ArgumentParser
import HeraldKafka

/// Creates the events, upstream and sessions topics (CreateTopics) with a partition count, a replication
/// factor and a retention. A topic that exists is left as it is: with the partition count asked for
/// that is success (the command can run at every deploy); with another count it is an error, since
/// adding partitions moves users to other partitions and changes the resume epoch.
struct TopicsCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create Herald's topics on a Kafka cluster without a topic operator (partitions, replication, retention)."
    )

    @OptionGroup var common: CommonOptions

    @Option(help: "Partitions of each topic (1 to 10000; fixed for the topic's life: users are placed by hash). Default: 12.")
    var partitions: Int = 12

    @Option(help: "Copies of each partition (1 to 32; at most the number of brokers). Default: 3.")
    var replicationFactor: Int = 3

    @Option(help: "How long records are kept (resumes reach back this far): seconds, or 90s, 30m, 12h, 7d. Default: 24h.")
    var retention: String = "24h"

    @Option(help: "Smallest number of in-sync copies a write needs (min.insync.replicas; 1 to the replication factor). Default: the replication factor less one, at least 1.")
    var minInsyncReplicas: Int?

    @Option(help: "Seconds to wait for the cluster's answer. Default: 30.")
    var timeoutSeconds: Int = 30

    func validate() throws {
        guard (1...10_000).contains(partitions) else { throw ValidationError("--partitions must be 1 to 10000, not \(partitions)") }
        guard (1...32).contains(replicationFactor) else { throw ValidationError("--replication-factor must be 1 to 32, not \(replicationFactor)") }
        if let minInsyncReplicas, !(1...replicationFactor).contains(minInsyncReplicas) {
            throw ValidationError("--min-insync-replicas must be 1 to the replication factor (\(replicationFactor)), not \(minInsyncReplicas)")
        }
        guard (1...3_600).contains(timeoutSeconds) else { throw ValidationError("--timeout-seconds must be 1 to 3600") }
    }

    /// The topics' settings, as `KafkaTopicSpec`s (no cluster needed).
    func specs(topics: [String]) throws -> [KafkaTopicSpec] {
        guard let retained = try Settings(environment: [:]).duration(retention, "--retention") else {
            throw ValidationError("--retention must be a duration like 90s, 30m, 12h or 7d")
        }
        let milliseconds = retained.components.seconds * 1_000 + retained.components.attoseconds / 1_000_000_000_000_000
        guard milliseconds >= 60_000 else { throw ValidationError("--retention must be at least a minute (resumes read back through it)") }
        let insync = minInsyncReplicas ?? max(1, replicationFactor - 1)
        return topics.map {
            KafkaTopicSpec(
                name: $0, partitions: Int32(partitions), replicationFactor: Int32(replicationFactor),
                config: ["retention.ms": String(milliseconds), "min.insync.replicas": String(insync)]
            )
        }
    }

    /// The sessions topic: compacted, not deleted by age (a node rebuilds the view from it), with the
    /// same partitions and copies as the others.
    func sessionsSpec(topic: String) -> KafkaTopicSpec {
        KafkaTopicSpec(
            name: topic, partitions: Int32(partitions), replicationFactor: Int32(replicationFactor),
            config: ["cleanup.policy": "compact", "min.insync.replicas": String(minInsyncReplicas ?? max(1, replicationFactor - 1))]
        )
    }

    func run() async throws {
        let options = try common.resolve()
        guard let brokers = options.kafkaBrokers else {
            throw ValidationError("--kafka-brokers (or HERALD_KAFKA_BROKERS) is required: the cluster to create the topics on")
        }
        var specs = try specs(topics: options.topics.filter { $0 != options.sessionsTopic }) + [sessionsSpec(topic: options.sessionsTopic)]
        if let cursors = options.cursorsTopic, let index = specs.firstIndex(where: { $0.name == cursors }) {
            // One record per device is kept (the last), for as long as the topic lives.
            specs[index].config["cleanup.policy"] = "compact"
            specs[index].config["retention.ms"] = nil
        }
        let admin = try KafkaAdmin(
            kafka: options.kafka(bootstrapServers: brokers, clientID: "herald-topics"), logger: options.logger("herald.topics"),
            timeout: .seconds(timeoutSeconds)
        )
        do {
            var missing: [KafkaTopicSpec] = []
            for spec in specs {
                if let count = try await admin.partitionCount(topic: spec.name) {
                    guard count == spec.partitions else {
                        throw TopicsError(
                            "\(spec.name) exists with \(count) partitions, not \(spec.partitions): topics create does not change an existing topic (more partitions would move users to other partitions and end every resume)"
                        )
                    }
                    print("\(spec.name): exists with \(count) partitions, left as it is")
                } else {
                    missing.append(spec)
                }
            }
            if !missing.isEmpty {
                do {
                    try await admin.createTopics(missing)
                } catch {
                    throw TopicsError("the cluster did not create \(missing.map(\.name).joined(separator: ", ")): \(error)")
                }
                for spec in missing {
                    let retention = spec.config["retention.ms"].map { "retention.ms \($0)" } ?? "cleanup.policy compact"
                    print("\(spec.name): created with \(spec.partitions) partitions, replication factor \(spec.replicationFactor), \(retention)")
                }
            }
        } catch {
            await admin.close()
            throw error
        }
        await admin.close()
    }
}

/// What the cluster answered against the command (not a usage error: no usage text follows it).
struct TopicsError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
