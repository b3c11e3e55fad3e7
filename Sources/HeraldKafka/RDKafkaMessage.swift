internal import CKafka
import NIOCore

extension KafkaRecord {
    /// Copies a consumed message out of librdkafka's buffers (which are freed with the message).
    init(copying message: UnsafePointer<rd_kafka_message_t>, topic: String, allocator: ByteBufferAllocator) {
        let m = message.pointee
        var key: [UInt8]? = nil
        if let keyPointer = m.key {
            key = Array(UnsafeRawBufferPointer(start: keyPointer, count: m.key_len))
        }
        var value = allocator.buffer(capacity: m.len)
        if let payload = m.payload {
            value.writeBytes(UnsafeRawBufferPointer(start: payload, count: m.len))
        }
        var headers: [KafkaHeader] = []
        var list: OpaquePointer? = nil
        if rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list {
            let count = rd_kafka_header_cnt(list)
            headers.reserveCapacity(count)
            var name: UnsafePointer<CChar>? = nil
            var valuePointer: UnsafeRawPointer? = nil
            var size = 0
            for index in 0..<count
            where rd_kafka_header_get_all(list, index, &name, &valuePointer, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let headerValue = valuePointer.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
                headers.append(KafkaHeader(name: name.map { String(cString: $0) } ?? "", value: headerValue))
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(message, &timestampType)
        self.init(
            topic: topic, partition: m.partition, offset: m.offset, key: key, value: value,
            headers: headers, timestamp: timestamp
        )
    }
}

/// A `rd_kafka_topic_partition_list_t` built from (partition, offset) pairs for one topic.
func withPartitionList<R>(topic: String, _ entries: [(partition: Int32, offset: Int64)], _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> R) -> R {
    let list = rd_kafka_topic_partition_list_new(Int32(entries.count))!
    defer { rd_kafka_topic_partition_list_destroy(list) }
    for entry in entries {
        let element = rd_kafka_topic_partition_list_add(list, topic, entry.partition)!
        element.pointee.offset = entry.offset
    }
    return body(list)
}

/// Takes what is ready now; when nothing is, waits up to 100 ms for the first record and then
/// takes what came with it. (`consume_batch_queue` with a timeout waits until the batch is full
/// or the timeout passes, which would hold every record of a quiet topic back for 100 ms.)
func consumeAvailable(
    _ queue: OpaquePointer, _ messages: UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>, _ capacity: Int
) -> Int {
    let ready = rd_kafka_consume_batch_queue(queue, 0, messages, capacity)
    guard ready == 0 else { return ready }
    // A batch of one returns as soon as one record is there.
    guard rd_kafka_consume_batch_queue(queue, 100, messages, 1) == 1 else { return 0 }
    guard capacity > 1 else { return 1 }
    let more = rd_kafka_consume_batch_queue(queue, 0, messages + 1, capacity - 1)
    return 1 + max(more, 0)
}
