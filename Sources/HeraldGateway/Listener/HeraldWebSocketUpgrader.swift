import NIOCore
import NIOHTTP1
import NIOWebSocket

/// NIO's WebSocket upgrader for the handshake (key, version, `Sec-WebSocket-Accept`, our
/// `shouldUpgrade` decision), with Herald's own pipeline after it: the frame decoder and the
/// connection handler only. NIO's upgrader would also add its frame encoder, which cannot be removed
/// and would wrap Herald's pre-encoded frames (one buffer shared by every recipient) a second time.
struct HeraldWebSocketUpgrader: HTTPServerProtocolUpgrader {
    let handshake: NIOWebSocketServerUpgrader
    let maxFrameSize: Int
    let pipelineHandler: (any Channel) throws -> Void

    var supportedProtocol: String { handshake.supportedProtocol }
    var requiredUpgradeHeaders: [String] { handshake.requiredUpgradeHeaders }

    func buildUpgradeResponse(channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders) -> EventLoopFuture<HTTPHeaders> {
        handshake.buildUpgradeResponse(channel: channel, upgradeRequest: upgradeRequest, initialResponseHeaders: initialResponseHeaders)
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        let channel = context.channel
        return context.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)))
            try pipelineHandler(channel)
        }
    }
}
