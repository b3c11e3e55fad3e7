internal import CKafka
import Foundation
import Logging

/// What a resume cursor's positions are valid against: one incarnation of the events topic with one
/// partition count. A cursor from another epoch is refused (`recovered:false, reason:"epoch"`) instead
/// of replaying unrelated records.
///
/// librdkafka 2.0.2 does not report Kafka's topic ids, so the topic itself is identified by a marker
/// that dies with it: an offset committed on the topic's partition 0 by the consumer group
/// `herald-epoch.<topic>`, whose commit metadata holds a random id. Kafka deletes a partition's
/// committed offsets when the topic is deleted, so a topic deleted and recreated under the same name
/// finds no marker and gets a new one. The first node to find none writes it; every node re-commits
/// the same marker when it reads it, so that offset retention (`offsets.retention.minutes`, 7 days by
/// default) does not remove it while Herald runs.
public struct KafkaTopicEpoch: Sendable, Hashable, CustomStringConvertible {
    public var clusterID: String
    public var partitionCount: Int32
    /// The random id of this incarnation of the topic.
    public var topicMarker: String

    public init(clusterID: String, partitionCount: Int32, topicMarker: String) {
        self.clusterID = clusterID
        self.partitionCount = partitionCount
        self.topicMarker = topicMarker
    }

    /// The epoch as clients see it in `welcome.epoch` and send back with their cursor.
    public var description: String { "\(clusterID).\(partitionCount).\(topicMarker)" }

    static let metadataPrefix = "herald-epoch:"

    static func markerGroup(topic: String) -> String { "herald-epoch.\(topic)" }

    /// Reads the topic's marker, writing a new one if there is none; re-commits an existing one so
    /// that it stays. Blocks up to a few times `timeoutMs`.
    static func marker(kafka: KafkaConfiguration, topic: String, timeoutMs: Int32, logger: Logger) throws(KafkaError) -> String {
        let client = try RDKafkaClient(
            kind: .consumer,
            properties: kafka.properties([:], enforced: [
                "group.id": markerGroup(topic: topic), "enable.auto.commit": "false", "enable.auto.offset.store": "false",
            ]),
            logger: logger
        )
        defer { client.destroy() }
        let found = try committedMarker(client, topic: topic, timeoutMs: timeoutMs)
        try commit(client, topic: topic, marker: found ?? newMarker())
        // Another node may have written its own at the same moment: the one Kafka kept wins.
        guard let kept = try committedMarker(client, topic: topic, timeoutMs: timeoutMs) else {
            throw KafkaError(.admin, "the topic marker of \(topic) was committed but cannot be read back")
        }
        return kept
    }

    private static func newMarker() -> String {
        String(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16))
    }

    private static func committedMarker(_ client: RDKafkaClient, topic: String, timeoutMs: Int32) throws(KafkaError) -> String? {
        let result = withPartitionList(topic: topic, [(partition: 0, offset: Int64(RD_KAFKA_OFFSET_INVALID))]) { list -> Result<String?, KafkaError> in
            let err = rd_kafka_committed(client.handle, list, timeoutMs)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                return .failure(KafkaError(err == RD_KAFKA_RESP_ERR__TIMED_OUT ? .timedOut : .admin, "reading the topic marker of \(topic)", err))
            }
            let element = list.pointee.elems[0]
            guard element.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                return .failure(KafkaError(.admin, "reading the topic marker of \(topic)", element.err))
            }
            guard element.offset >= 0, let metadata = element.metadata, element.metadata_size > 0 else { return .success(nil) }
            let bytes = UnsafeRawBufferPointer(start: metadata, count: element.metadata_size)
            guard let text = String(validating: bytes, as: UTF8.self), text.hasPrefix(metadataPrefix) else { return .success(nil) }
            let marker = String(text.dropFirst(metadataPrefix.count))
            return .success(marker.isEmpty ? nil : marker)
        }
        return try result.get()
    }

    private static func commit(_ client: RDKafkaClient, topic: String, marker: String) throws(KafkaError) {
        let err = withPartitionList(topic: topic, [(partition: 0, offset: 0)]) { list in
            let text = Array((metadataPrefix + marker).utf8)
            // librdkafka frees the metadata with the list, with free(): it must come from malloc.
            let copy = malloc(text.count)!
            copy.copyMemory(from: text, byteCount: text.count)
            list.pointee.elems[0].metadata = copy
            list.pointee.elems[0].metadata_size = text.count
            return rd_kafka_commit(client.handle, list, 0)
        }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(err == RD_KAFKA_RESP_ERR__TIMED_OUT ? .timedOut : .admin, "writing the topic marker of \(topic)", err)
        }
    }
}
