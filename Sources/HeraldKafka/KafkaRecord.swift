public import NIOCore

/// One header of a consumed or produced record. Kafka allows a header without a value.
public struct KafkaHeader: Hashable, Sendable {
    public var name: String
    public var value: [UInt8]?

    public init(name: String, value: [UInt8]?) {
        self.name = name
        self.value = value
    }
}

/// A record as the consumer read it, copied out of librdkafka's buffers.
public struct KafkaRecord: Hashable, Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: ByteBuffer
    public var headers: [KafkaHeader]
    /// Milliseconds since the epoch (create time as set by the producer, or log-append time).
    public var timestamp: Int64

    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: ByteBuffer,
        headers: [KafkaHeader], timestamp: Int64
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }
}

/// Where a produced record landed, from its delivery report.
public struct KafkaDelivery: Hashable, Sendable {
    public var partition: Int32
    public var offset: Int64

    public init(partition: Int32, offset: Int64) {
        self.partition = partition
        self.offset = offset
    }
}
