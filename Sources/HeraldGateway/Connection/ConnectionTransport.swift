import HeraldCore
import NIOCore

/// How a connection's server frames reach its client: WebSocket frames, or Server-Sent Events (the
/// fallback for clients that cannot hold a WebSocket). Everything else (shards, lifecycle, byte budget,
/// resume) is the same for both; only the bytes written differ, and those are encoded once per record
/// per transport.
enum ConnectionTransport: UInt8, Sendable {
    case webSocket
    case serverSentEvents

    /// What this transport writes for `delivery`, whose WebSocket frame is `frame`: the frame, or the
    /// event's data lines the dispatcher encoded for every SSE connection. When it had none (the
    /// first SSE connection opened during the batch) the frame goes, and the connection's
    /// `ServerSentEventsWriter` converts it.
    func bytes(of frame: ByteBuffer, _ delivery: Delivery) -> ByteBuffer {
        switch self {
        case .webSocket: frame
        case .serverSentEvents: delivery.serverSentEvent ?? frame
        }
    }
}
