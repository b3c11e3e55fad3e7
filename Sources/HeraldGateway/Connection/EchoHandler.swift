import HeraldCore
import NIOCore
import NIOWebSocket

/// `/v1/echo` (`--dev` only, for the Autobahn suite): every message goes back as it came, pings are
/// answered, and the close handshake runs; the frame rules are `WebSocketFrameRules`.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    private var rules: WebSocketFrameRules
    private var closing = false

    init(maxMessageBytes: Int) {
        rules = WebSocketFrameRules(maxMessageBytes: maxMessageBytes)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let event = rules.read(unwrapInboundIn(data), allocator: context.channel.allocator) else { return }
        handle(event, context: context)
    }

    private func handle(_ event: WebSocketEvent, context: ChannelHandlerContext) {
        guard !closing else {
            // Our close was answered (or the client broke a rule after it): the handshake is complete.
            switch event {
            case .peerClose, .violation: context.close(promise: nil)
            case .message, .ping, .alive: break
            }
            return
        }
        switch event {
        case .message(let payload, let isText):
            let echoed = ServerFrame.build(isText ? .text : .binary, capacity: payload.readableBytes) { buffer in
                var payload = payload
                buffer.writeBuffer(&payload)
            }
            context.writeAndFlush(wrapOutboundOut(echoed), promise: nil)
        case .ping(let payload):
            context.writeAndFlush(wrapOutboundOut(ServerFrame.control(.pong, payload: payload)), promise: nil)
        case .peerClose(let code):
            closing = true
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(ServerFrame.close(code: code, reason: ""))).whenComplete { _ in channel.close(promise: nil) }
        case .violation(let disconnect):
            closing = true
            Connection.sendClose(on: context.channel, disconnect)
        case .alive:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let event = rules.decoderFailed(error) else { return context.close(promise: nil) }
        handle(event, context: context)
    }
}
