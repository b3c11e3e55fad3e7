import HeraldCore
import HeraldKafka
import NIOCore

/// One record ready for sockets: its stream, its position, and its `message` frame, encoded once and
/// shared by every recipient.
struct Delivery: Sendable {
    enum Action: Sendable {
        /// Write this frame to the stream's recipients.
        case frame(ByteBuffer)
        /// Close the user's connections with 4003 (a control record from the push API); with a time,
        /// also refuse the user's tokens issued before it (Unix milliseconds).
        case disconnect(revokeBefore: Int64?)
    }

    var stream: HeraldStream
    var partition: Int32
    var offset: Int64
    var action: Action
    /// The connection (by id) that must not receive it.
    var exclude: UInt64?
    /// The record's `herald-id`, by which a retried copy of it in the same stream is recognised
    /// (`RepeatedMessages`).
    var messageID: String? = nil
    /// Unix milliseconds; `nil` never expires.
    var expiresAt: Int64?
    /// The record's Kafka timestamp (Unix milliseconds), for the delivery latency.
    var timestamp: Int64 = 0
    /// The frame's JSON as Server-Sent Event data lines, shared by every SSE connection; encoded only
    /// while the node has one (`ServerSentEventsDemand`).
    var serverSentEvent: ByteBuffer? = nil

    /// Reads a record of the events topic: its stream from key and headers, its frame encoded once.
    /// `nil` when it expired by `now`; throws when it is not a Herald record.
    init?(_ record: KafkaRecord, now: Int64, allocator: ByteBufferAllocator) throws(HeraldRecordError) {
        let envelope = try record.heraldEnvelope()
        if envelope.isExpired(atUnixMillis: now) { return nil }
        if envelope.control == .disconnect {
            action = .disconnect(revokeBefore: envelope.revokeBefore)
        } else {
            action = .frame(ServerMessage.message(
                stream: envelope.stream.wireName, offset: record.offset, id: envelope.id, payload: record.value,
                contentType: envelope.contentType, user: envelope.user, allocator: allocator
            ))
        }
        stream = envelope.stream
        partition = record.partition
        offset = record.offset
        exclude = envelope.exclude.flatMap(Connection.parseSessionID)
        messageID = envelope.deduplicationKey
        expiresAt = envelope.expiresAt
        timestamp = record.timestamp
    }

    init(stream: HeraldStream, partition: Int32, offset: Int64, action: Action, exclude: UInt64?, expiresAt: Int64?, timestamp: Int64 = 0) {
        self.timestamp = timestamp
        self.stream = stream
        self.partition = partition
        self.offset = offset
        self.action = action
        self.exclude = exclude
        self.expiresAt = expiresAt
    }
}

/// What the dispatcher hands each shard per consumer batch: the deliveries in order, and for every
/// partition the batch touched, the next offset after it (so positions advance even for records that
/// reach nobody here).
struct DeliveryBatch: Sendable {
    var deliveries: [Delivery]
    var nextOffsets: [Int32: Int64]
    /// Unix milliseconds when the batch was formed: expiry is judged once per batch.
    var now: Int64
}
