import HeraldCore
import NIOCore

/// `/v1/echo` (`--dev` only, for the Autobahn suite): every message goes back as it came, pings are
/// answered, and the close handshake runs; the frame rules are `WebSocketProtocolHandler`'s.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketEvent
    typealias OutboundOut = ByteBuffer

    private var closing = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else {
            // Our close was answered (or the client broke a rule after it): the handshake is complete.
            switch unwrapInboundIn(data) {
            case .peerClose, .violation: context.close(promise: nil)
            case .message, .ping, .alive: break
            }
            return
        }
        switch unwrapInboundIn(data) {
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
        context.close(promise: nil)
    }
}
