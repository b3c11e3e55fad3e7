import HeraldCore
import NIOCore

/// One record ready for sockets: its stream, its position, and its `message` frame, encoded once and
/// shared by every recipient.
struct Delivery: Sendable {
    enum Action: Sendable {
        /// Write this frame to the stream's recipients.
        case frame(ByteBuffer)
        /// Close the user's connections with 4003 (a control record from the push API).
        case disconnect
    }

    var stream: HeraldStream
    var partition: Int32
    var offset: Int64
    var action: Action
    /// The connection (by id) that must not receive it.
    var exclude: UInt64?
    /// Unix milliseconds; `nil` never expires.
    var expiresAt: Int64?
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
