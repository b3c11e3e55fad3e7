internal import CKafka
public import Logging
import Synchronization

/// librdkafka's mock cluster: real Kafka protocol on loopback TCP, in this process.
///
/// It is Herald's default broker for development and the broker of every test: any Kafka client,
/// kcat included, can produce to `bootstrapServers`. It keeps at most about 100,000 records or 5 MiB
/// per partition and nothing across restarts, so production points Herald at a real cluster.
public final class EmbeddedKafkaCluster: Sendable {
    public let bootstrapServers: String
    public let brokerCount: Int32

    private let host: RDKafkaClient
    // The mock cluster handle is created once and destroyed once, in `shutdown()`; librdkafka's mock
    // API locks internally, so concurrent calls on it are safe.
    private nonisolated(unsafe) let cluster: OpaquePointer
    private let stopped = Atomic<Bool>(false)

    public init(brokers: Int32 = 1, topics: [KafkaTopicSpec] = [], logger: Logger) throws(KafkaError) {
        // A dedicated handle hosts the cluster; it never produces or consumes.
        host = try RDKafkaClient(kind: .producer, properties: ["client.id": "herald-embedded-kafka", "log_level": "3"], logger: logger)
        guard let cluster = rd_kafka_mock_cluster_new(host.handle, brokers) else {
            host.destroy()
            throw KafkaError(.mockCluster, "librdkafka could not start a mock cluster of \(brokers) brokers")
        }
        self.cluster = cluster
        self.brokerCount = brokers
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
        for topic in topics {
            try createTopic(topic)
        }
    }

    /// The broker ids, 1 through `brokerCount`.
    public var brokerIDs: [Int32] { Array(1...brokerCount) }

    /// Creates a topic (the mock cluster does not implement the CreateTopics request, so this is how
    /// its topics are made).
    public func createTopic(_ topic: KafkaTopicSpec) throws(KafkaError) {
        let replication = min(topic.replicationFactor, brokerCount)
        let err = rd_kafka_mock_topic_create(cluster, topic.name, topic.partitions, replication)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(.mockCluster, "creating topic \(topic.name)", err)
        }
    }

    /// Takes a broker off the network: its connections drop and it accepts none until `setBrokerUp`.
    public func setBrokerDown(_ broker: Int32) throws(KafkaError) {
        let err = rd_kafka_mock_broker_set_down(cluster, broker)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(.mockCluster, "setting broker \(broker) down", err) }
    }

    public func setBrokerUp(_ broker: Int32) throws(KafkaError) {
        let err = rd_kafka_mock_broker_set_up(cluster, broker)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(.mockCluster, "setting broker \(broker) up", err) }
    }

    /// Adds round-trip latency to every request a broker answers.
    public func setBrokerRoundTrip(_ broker: Int32, milliseconds: Int32) throws(KafkaError) {
        let err = rd_kafka_mock_broker_set_rtt(cluster, broker, milliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(.mockCluster, "setting broker \(broker) latency", err) }
    }

    /// Makes a partition's leader another broker (clients must follow it).
    public func setPartitionLeader(topic: String, partition: Int32, broker: Int32) throws(KafkaError) {
        let err = rd_kafka_mock_partition_set_leader(cluster, topic, partition, broker)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(.mockCluster, "moving the leader of \(topic)[\(partition)]", err) }
    }

    /// A request error the mock can answer with.
    public enum RequestError: Sendable {
        /// Let the request through.
        case none
        /// `MESSAGE_TOO_LARGE` on a Produce request: not retriable, so the producer fails the records
        /// it carried (nothing of them is written).
        case messageTooLarge

        var code: rd_kafka_resp_err_t {
            switch self {
            case .none: RD_KAFKA_RESP_ERR_NO_ERROR
            case .messageTooLarge: RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
            }
        }
    }

    /// Answers the next Produce requests, whoever sends them, with `errors`, one per request in order.
    public func failNextProduceRequests(_ errors: [RequestError]) {
        let codes = errors.map(\.code)
        codes.withUnsafeBufferPointer { rd_kafka_mock_push_request_errors_array(cluster, 0, $0.count, $0.baseAddress) }
    }

    /// Answers the next `count` Metadata requests, whoever sends them, with `LEADER_NOT_AVAILABLE` for
    /// every topic: clients cannot learn a topic's leaders until the count is used up.
    public func failNextMetadataRequests(count: Int) {
        let codes = [rd_kafka_resp_err_t](repeating: RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, count: count)
        codes.withUnsafeBufferPointer { rd_kafka_mock_push_request_errors_array(cluster, 3, $0.count, $0.baseAddress) }
    }

    public func shutdown() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        rd_kafka_mock_cluster_destroy(cluster)
        host.destroy()
    }
}
