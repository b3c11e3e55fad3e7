public import HeraldKafka
public import Logging

/// The events topic as a node found it before it started: its epoch, its partitions and where the
/// live consumer begins each one. Fixed for the node's life; a change under it ends the node.
public struct TopicTopology: Sendable {
    public var topic: String
    public var epoch: String
    public var partitionCount: Int32
    public var startOffsets: [Int32: Int64]

    public init(topic: String, epoch: String, partitionCount: Int32, startOffsets: [Int32: Int64]) {
        self.topic = topic
        self.epoch = epoch
        self.partitionCount = partitionCount
        self.startOffsets = startOffsets
    }

    /// Waits for the topic to exist, then reads its epoch and fixes the start offsets; `start` is
    /// where the live consumer should begin.
    public static func discover(
        topic: String, admin: KafkaAdmin, start: KafkaStartPosition, logger: Logger
    ) async throws -> TopicTopology {
        while true {
            try Task.checkCancellation()
            do {
                if let count = try await admin.partitionCount(topic: topic), count > 0 {
                    let epoch = try await admin.topicEpoch(topic: topic)
                    // Partitions added between the two reads: read again.
                    if epoch.partitionCount == count {
                        let offsets = try await admin.startOffsets(topic: topic, partitionCount: count, start: start)
                        return TopicTopology(topic: topic, epoch: epoch.description, partitionCount: count, startOffsets: offsets)
                    }
                } else {
                    logger.warning("waiting for the topic to exist", metadata: ["kafka.topic": "\(topic)"])
                }
            } catch {
                logger.warning("cannot read the topic's metadata yet", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }
}
