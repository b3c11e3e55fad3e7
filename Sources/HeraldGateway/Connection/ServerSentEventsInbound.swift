import NIOCore

/// What a Server-Sent Events client sends after its request: nothing, by the protocol (the stream is
/// one way). Bytes are dropped rather than handed to the session, which reads WebSocket frames; a
/// client that keeps sending is closed, so that it cannot keep a node busy for free. The socket's
/// other events (writability, the end) go on to the session.
final class ServerSentEventsInbound: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    /// More than a stray pipelined request's worth of bytes ends the connection.
    static let maxIgnoredBytes = 8 * 1024
    private var ignored = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        ignored += unwrapInboundIn(data).readableBytes
        if ignored > Self.maxIgnoredBytes { context.close(promise: nil) }
    }
}
