internal import CKafka
public import Logging

/// A topic to create.
public struct KafkaTopicSpec: Sendable, Hashable {
    public var name: String
    public var partitions: Int32
    public var replicationFactor: Int32
    /// Topic configuration, e.g. `retention.ms`.
    public var config: [String: String]

    public init(name: String, partitions: Int32, replicationFactor: Int32 = 1, config: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.config = config
    }
}

/// Cluster administration and the metadata a gateway needs: topics, partition counts, watermarks,
/// the cluster id (part of a resume epoch). Every call runs on the admin's own thread.
public final class KafkaAdmin: Sendable {
    private let client: RDKafkaClient
    private let worker = BlockingWorker(name: "herald-kafka-admin")
    private let timeoutMs: Int32
    private let kafka: KafkaConfiguration
    private let logger: Logger

    public init(kafka: KafkaConfiguration, logger: Logger, timeout: Duration = .seconds(10)) throws(KafkaError) {
        self.kafka = kafka
        self.logger = logger
        self.client = try RDKafkaClient(kind: .producer, properties: kafka.properties([:]), logger: logger)
        self.timeoutMs = Int32(timeout.components.seconds * 1_000 + timeout.components.attoseconds / 1_000_000_000_000_000)
    }

    /// Creates topics; a topic that already exists is not an error (start-up may race other nodes).
    public func createTopics(_ topics: [KafkaTopicSpec]) async throws(KafkaError) {
        try await worker.run { [self] () throws(KafkaError) in try self.createTopicsBlocking(topics) }
    }

    /// Raises a topic's partition count to `total`.
    public func createPartitions(topic: String, total: Int32) async throws(KafkaError) {
        try await worker.run { [self] () throws(KafkaError) in try self.createPartitionsBlocking(topic: topic, total: total) }
    }

    /// The topic's partition count, or `nil` if it does not exist.
    public func partitionCount(topic: String) async throws(KafkaError) -> Int32? {
        try await worker.run { [self] () throws(KafkaError) -> Int32? in
            try self.client.partitionCount(topic: topic, timeoutMs: self.timeoutMs)
        }
    }

    /// The first offset still kept and the next offset to be written.
    public func watermarks(topic: String, partition: Int32) async throws(KafkaError) -> (low: Int64, high: Int64) {
        try await worker.run { [self] () throws(KafkaError) -> (low: Int64, high: Int64) in
            try self.client.watermarks(topic: topic, partition: partition, timeoutMs: self.timeoutMs)
        }
    }

    /// The high watermark of every partition of `topic`, indexed by partition.
    public func endOffsets(topic: String) async throws(KafkaError) -> [Int64] {
        try await worker.run { [self] () throws(KafkaError) -> [Int64] in
            guard let count = try self.client.partitionCount(topic: topic, timeoutMs: self.timeoutMs) else {
                throw KafkaError(.unknownTopicOrPartition, "topic \(topic) does not exist")
            }
            var ends: [Int64] = []
            for partition in 0..<count {
                ends.append(try self.client.watermarks(topic: topic, partition: partition, timeoutMs: self.timeoutMs).high)
            }
            return ends
        }
    }

    /// Where a consumer starting now at `start` begins each of the topic's `partitionCount` partitions:
    /// fixed before it runs, so every part of a node agrees on them.
    public func startOffsets(topic: String, partitionCount: Int32, start: KafkaStartPosition) async throws(KafkaError) -> [Int32: Int64] {
        try await worker.run { [self] () throws(KafkaError) -> [Int32: Int64] in
            var offsets: [Int32: Int64] = [:]
            for partition in 0..<partitionCount {
                if case .offsets(let given) = start, let offset = given[partition] {
                    offsets[partition] = offset
                    continue
                }
                let marks = try self.client.watermarks(topic: topic, partition: partition, timeoutMs: self.timeoutMs)
                offsets[partition] = start == .beginning ? marks.low : marks.high
            }
            return offsets
        }
    }

    public func clusterID() async throws(KafkaError) -> String {
        try await worker.run { [self] () throws(KafkaError) -> String in try self.client.clusterID(timeoutMs: self.timeoutMs) }
    }

    /// The topic's resume epoch: the cluster id, the partition count and the topic's own marker (see
    /// `KafkaTopicEpoch`), written here if the topic has none yet.
    public func topicEpoch(topic: String) async throws(KafkaError) -> KafkaTopicEpoch {
        try await worker.run { [self] () throws(KafkaError) -> KafkaTopicEpoch in
            guard let count = try self.client.partitionCount(topic: topic, timeoutMs: self.timeoutMs) else {
                throw KafkaError(.unknownTopicOrPartition, "topic \(topic) does not exist")
            }
            let marker = try KafkaTopicEpoch.marker(kafka: self.kafka, topic: topic, timeoutMs: self.timeoutMs, logger: self.logger)
            return KafkaTopicEpoch(clusterID: try self.client.clusterID(timeoutMs: self.timeoutMs), partitionCount: count, topicMarker: marker)
        }
    }

    public func close() async {
        await worker.stop()
        client.destroy()
    }

    private func createTopicsBlocking(_ topics: [KafkaTopicSpec]) throws(KafkaError) {
        var errorText = [CChar](repeating: 0, count: 512)
        var newTopics: [OpaquePointer?] = []
        defer { newTopics.forEach { rd_kafka_NewTopic_destroy($0) } }
        for topic in topics {
            guard let newTopic = rd_kafka_NewTopic_new(topic.name, topic.partitions, topic.replicationFactor, &errorText, errorText.count) else {
                throw KafkaError(.admin, "topic \(topic.name): \(String(cBuffer: errorText))")
            }
            newTopics.append(newTopic)
            for (key, value) in topic.config {
                let err = rd_kafka_NewTopic_set_config(newTopic, key, value)
                guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(.admin, "topic \(topic.name) config \(key)", err) }
            }
        }
        try withAdminResult(
            request: { queue, options in rd_kafka_CreateTopics(client.handle, &newTopics, newTopics.count, options, queue) },
            topics: { event, count in rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), count) }
        )
    }

    private func createPartitionsBlocking(topic: String, total: Int32) throws(KafkaError) {
        var errorText = [CChar](repeating: 0, count: 512)
        guard let request = rd_kafka_NewPartitions_new(topic, Int(total), &errorText, errorText.count) else {
            throw KafkaError(.admin, "partitions of \(topic): \(String(cBuffer: errorText))")
        }
        defer { rd_kafka_NewPartitions_destroy(request) }
        var requests: [OpaquePointer?] = [request]
        try withAdminResult(
            request: { queue, options in rd_kafka_CreatePartitions(client.handle, &requests, 1, options, queue) },
            topics: { event, count in rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(event), count) }
        )
    }

    /// Sends an admin request, waits for its result event and turns per-topic errors into one error.
    private func withAdminResult(
        request: (OpaquePointer?, OpaquePointer?) -> Void,
        topics: (OpaquePointer?, UnsafeMutablePointer<Int>) -> UnsafeMutablePointer<OpaquePointer?>?
    ) throws(KafkaError) {
        let queue = rd_kafka_queue_new(client.handle)
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(client.handle, RD_KAFKA_ADMIN_OP_ANY)
        defer { rd_kafka_AdminOptions_destroy(options) }
        var errorText = [CChar](repeating: 0, count: 512)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, &errorText, errorText.count)
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMs, &errorText, errorText.count)
        request(queue, options)
        guard let event = rd_kafka_queue_poll(queue, timeoutMs + 1_000) else {
            throw KafkaError(.timedOut, "the admin request got no answer within \(timeoutMs) ms")
        }
        defer { rd_kafka_event_destroy(event) }
        let eventError = rd_kafka_event_error(event)
        guard eventError == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(eventError == RD_KAFKA_RESP_ERR__TIMED_OUT ? .timedOut : .admin, String(cString: rd_kafka_event_error_string(event)), eventError)
        }
        var count = 0
        guard let results = topics(event, &count) else { return }
        for index in 0..<count {
            let result = results[index]
            let err = rd_kafka_topic_result_error(result)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS { continue }
            let name = String(cString: rd_kafka_topic_result_name(result))
            let message = rd_kafka_topic_result_error_string(result).map { String(cString: $0) } ?? ""
            throw KafkaError(.admin, "topic \(name): \(message)", err)
        }
    }
}
