import HeraldCore
import NIOCore
import NIOWebSocket

/// The frame rules NIO leaves to the application (RFC 6455), then the protocol's client frames.
///
/// NIO's decoder parses frames and bounds a single frame's size; this handler refuses unmasked client
/// frames, reserved bits and reserved opcodes (1002), checks that text is UTF-8 across fragments and
/// fails fast (1007), bounds a whole message, fragments included (1009), answers pings, and runs the
/// close handshake. In gateway mode it registers the connection with its shard and the session
/// registry; in echo mode (`--dev` only, for the Autobahn suite) it sends every message back.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    enum Mode {
        case gateway(Connection, GatewayContext, initialChannels: [String])
        case echo
    }

    private let mode: Mode
    private let maxMessageBytes: Int
    private var message: ByteBuffer?
    private var messageIsText = false
    private var utf8 = UTF8Validation()
    private var badFrames: UInt8 = 0
    private var closing = false

    init(mode: Mode, maxMessageBytes: Int) {
        self.mode = mode
        self.maxMessageBytes = maxMessageBytes
    }

    private var connection: Connection? {
        if case .gateway(let connection, _, _) = mode { return connection }
        return nil
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard case .gateway(let connection, let gateway, let channels) = mode else { return }
        let shard = gateway.shard(for: context.eventLoop)
        for replaced in gateway.registry.add(connection) {
            replaced.channel.eventLoop.execute {
                replaced.close(.replaced, "replaced by a newer connection of the same user")
            }
        }
        let positions = shard.assumeIsolated { $0.register(connection, channels: channels) }
        let welcome = ServerMessage.welcome(node: gateway.nodeID, session: connection.sessionID, epoch: gateway.epoch, positions: positions)
        context.writeAndFlush(wrapOutboundOut(welcome), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .gateway(let connection, let gateway, _) = mode {
            connection.isClosing = true
            gateway.shard(for: context.eventLoop).assumeIsolated { $0.unregister(connection) }
            gateway.registry.remove(connection)
            gateway.admission.release()
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        connection?.missedPongs = 0
        guard frame.maskKey != nil else {
            return fail(context, .protocolError, "client frames must be masked")
        }
        guard !frame.rsv1, !frame.rsv2, !frame.rsv3 else {
            return fail(context, .protocolError, "reserved bits set without a negotiated extension")
        }
        switch frame.opcode {
        case .ping:
            guard !closing else { return }
            context.writeAndFlush(wrapOutboundOut(ServerFrame.control(.pong, payload: frame.unmaskedData)), promise: nil)
        case .pong:
            break
        case .connectionClose:
            receivedClose(context, frame.unmaskedData)
        case .text, .binary:
            guard message == nil else {
                return fail(context, .protocolError, "a new message began before the previous one ended")
            }
            messageIsText = frame.opcode == .text
            utf8 = UTF8Validation()
            message = context.channel.allocator.buffer(capacity: frame.length)
            append(context, frame)
        case .continuation:
            guard message != nil else {
                return fail(context, .protocolError, "a continuation frame with no message to continue")
            }
            append(context, frame)
        default:
            fail(context, .protocolError, "reserved opcode")
        }
    }

    private func append(_ context: ChannelHandlerContext, _ frame: WebSocketFrame) {
        guard var buffer = message else { return }
        guard buffer.readableBytes + frame.length <= maxMessageBytes else {
            message = nil
            return fail(context, .messageTooBig, "messages are limited to \(maxMessageBytes) bytes")
        }
        var payload = frame.unmaskedData
        if messageIsText {
            let valid = payload.withUnsafeReadableBytes { utf8.consume($0) }
            guard valid, !frame.fin || utf8.isComplete else {
                message = nil
                return fail(context, .invalidPayload, "text frames must be valid UTF-8")
            }
        }
        message = nil  // keep the buffer uniquely referenced while appending
        buffer.writeBuffer(&payload)
        guard frame.fin else {
            message = buffer
            return
        }
        received(context, buffer, isText: messageIsText)
    }

    private func received(_ context: ChannelHandlerContext, _ payload: ByteBuffer, isText: Bool) {
        guard !closing else { return }
        switch mode {
        case .echo:
            let echoed = ServerFrame.build(isText ? .text : .binary, capacity: payload.readableBytes) { buffer in
                var payload = payload
                buffer.writeBuffer(&payload)
            }
            context.writeAndFlush(wrapOutboundOut(echoed), promise: nil)
        case .gateway(let connection, let gateway, _):
            guard isText else {
                return refuse(context, code: "bad-request", "binary frames are not part of the protocol; send JSON text")
            }
            do {
                let parsed = try ClientMessage.parse(Array(payload.readableBytesView))
                handle(parsed, connection: connection, gateway: gateway, context: context)
            } catch {
                refuse(context, code: "bad-request", error.message)
            }
        }
    }

    private func handle(_ message: ClientMessage, connection: Connection, gateway: GatewayContext, context: ChannelHandlerContext) {
        let shard = gateway.shard(for: context.eventLoop)
        switch message {
        case .ack:
            gateway.countAck()
        case .subscribe(let channel, let offset):
            guard connection.allowedChannels.contains(channel) else {
                return refuse(context, code: "channel-not-allowed", "the token does not grant channel \(channel)")
            }
            guard offset == nil else {
                return refuse(context, code: "unsupported", "subscribe with an offset needs replay, which this node does not serve yet")
            }
            _ = shard.assumeIsolated { $0.subscribe(connection, to: channel) }
        case .unsubscribe(let channel):
            shard.assumeIsolated { $0.unsubscribe(connection, from: channel) }
        case .publish:
            refuse(context, code: "unsupported", "publish is not served by this node yet")
        }
    }

    /// Answers a bad client frame with an `error` frame; repeated abuse closes with 1008.
    private func refuse(_ context: ChannelHandlerContext, code: String, _ text: String) {
        badFrames += 1
        if badFrames > 10 {
            return fail(context, .policyViolation, "too many invalid frames")
        }
        context.writeAndFlush(wrapOutboundOut(ServerMessage.error(code: code, message: text)), promise: nil)
    }

    private func receivedClose(_ context: ChannelHandlerContext, _ payload: ByteBuffer) {
        if closing || connection?.isClosing == true {
            // Our close was answered: the handshake is complete.
            context.close(promise: nil)
            return
        }
        var payload = payload
        var code = CloseCode.normal.rawValue
        if payload.readableBytes == 1 {
            return fail(context, .protocolError, "a close frame's payload is a 2-byte code and a reason")
        }
        if let received = payload.readInteger(as: UInt16.self) {
            guard CloseCode.isValidOnTheWire(received) else {
                return fail(context, .protocolError, "close code \(received) may not be sent")
            }
            guard payload.withUnsafeReadableBytes({ UTF8Validation.isValid($0) }) else {
                return fail(context, .invalidPayload, "the close reason is not UTF-8")
            }
            code = received
        }
        closing = true
        connection?.isClosing = true
        let reply = ServerFrame.close(code: code, reason: "")
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in channel.close(promise: nil) }
    }

    private func fail(_ context: ChannelHandlerContext, _ code: CloseCode, _ reason: String) {
        guard !closing else { return }
        closing = true
        message = nil
        if let connection {
            connection.close(code, reason, failing: true)
        } else {
            Connection.sendClose(on: context.channel, code, reason, failing: true)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Over the outbound cap: a slow consumer. It resumes from its cursor after reconnecting.
        if !context.channel.isWritable, let connection {
            closing = true
            connection.close(.slowConsumer, "outbound queue over its cap; reconnect and resume")
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case NIOWebSocketError.invalidFrameLength:
            fail(context, .messageTooBig, "frame larger than \(maxMessageBytes) bytes")
        case is NIOWebSocketError:
            fail(context, .protocolError, "malformed frame")
        default:
            context.close(promise: nil)
        }
    }
}
