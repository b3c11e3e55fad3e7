import HeraldCore
import NIOCore
import NIOHTTP1

/// Answers every HTTP request that did not become a WebSocket: the refusal the upgrader decided on
/// (401, 403, 503 with `Retry-After`), 400 for `/v1/ws` without an upgrade, 404 for anything
/// else. Each answer closes the connection: the public port serves WebSockets, not HTTP.
final class HTTPFallbackHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: HandshakeState
    private let admission: Admission
    private var answered = false

    init(state: HandshakeState, admission: Admission) {
        self.state = state
        self.admission = admission
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data), !answered else { return }
        answered = true
        let refusal: HandshakeRefusal
        switch state.outcome {
        case .refused(let decided):
            refusal = decided
        default:
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            if path == GatewayPaths.websocket {
                refusal = HandshakeRefusal(.badRequest, "GET \(GatewayPaths.websocket) must be a WebSocket upgrade (RFC 6455)")
            } else {
                refusal = HandshakeRefusal(.notFound, "no such endpoint: \(path)")
            }
        }
        respond(context, refusal)
    }

    func channelInactive(context: ChannelHandlerContext) {
        releaseSlotIfHeld()
        context.fireChannelInactive()
    }

    /// While a handshake is accepted but not yet upgraded, the slot is released if the connection
    /// ends first (this handler is removed at the start of an upgrade; the listener then hands the
    /// slot to the connection handler, or gives it back if the channel closed in between).
    private func releaseSlotIfHeld() {
        guard state.holdsSlot else { return }
        state.holdsSlot = false
        admission.release()
    }

    private func respond(_ context: ChannelHandlerContext, _ refusal: HandshakeRefusal) {
        var body = context.channel.allocator.buffer(capacity: 128)
        body.writeStaticString(#"{"error":{"code":"#)
        body.writeJSONString(refusal.code.description)
        body.writeStaticString(#","message":"#)
        body.writeJSONString(refusal.message)
        body.writeStaticString("}}")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Connection", value: "close")
        if let retryAfter = refusal.retryAfter {
            headers.add(name: "Retry-After", value: String(retryAfter))
        }
        let head = HTTPResponseHead(version: .http1_1, status: refusal.status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

enum GatewayPaths {
    static let websocket = "/v1/ws"
    static let echo = "/v1/echo"
}
