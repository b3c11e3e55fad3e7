import HeraldCore
import NIOCore
import NIOWebSocket

/// What a client's frames amount to, for the handler after the protocol rules.
enum WebSocketEvent {
    /// A whole message, fragments joined, text checked as UTF-8.
    case message(ByteBuffer, isText: Bool)
    /// A ping to answer with a pong carrying this payload.
    case ping(ByteBuffer)
    /// The client's close frame, with its code (1000 when it carried none).
    case peerClose(UInt16)
    /// The client broke a rule: close with this and stop reading.
    case violation(Disconnect)
    /// A frame that is none of the above (a pong, a fragment): the client is alive.
    case alive
}

/// The frame rules NIO leaves to the application (RFC 6455), shared by the gateway and the echo
/// endpoint: client frames must be masked (1002), reserved bits and opcodes are refused (1002), text
/// is UTF-8 across fragments and fails fast (1007), a whole message, fragments included, is bounded
/// (1009), and a close frame's code and reason are checked. It decides nothing about the connection:
/// it passes `WebSocketEvent`s on, and after a violation or a close it passes nothing more.
final class WebSocketProtocolHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketEvent

    private let maxMessageBytes: Int
    private var message: ByteBuffer?
    private var messageIsText = false
    private var utf8 = UTF8Validation()
    private var done = false

    init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        let frame = unwrapInboundIn(data)
        guard frame.maskKey != nil else {
            return violation(context, .protocolError("client frames must be masked"))
        }
        guard !frame.rsv1, !frame.rsv2, !frame.rsv3 else {
            return violation(context, .protocolError("reserved bits set without a negotiated extension"))
        }
        switch frame.opcode {
        case .ping:
            emit(context, .ping(frame.unmaskedData))
        case .pong:
            emit(context, .alive)
        case .connectionClose:
            peerClose(context, frame.unmaskedData)
        case .text, .binary:
            guard message == nil else {
                return violation(context, .protocolError("a new message began before the previous one ended"))
            }
            messageIsText = frame.opcode == .text
            utf8 = UTF8Validation()
            message = context.channel.allocator.buffer(capacity: frame.length)
            append(context, frame)
        case .continuation:
            guard message != nil else {
                return violation(context, .protocolError("a continuation frame with no message to continue"))
            }
            append(context, frame)
        default:
            violation(context, .protocolError("reserved opcode"))
        }
    }

    private func append(_ context: ChannelHandlerContext, _ frame: WebSocketFrame) {
        guard var buffer = message else { return }
        guard buffer.readableBytes + frame.length <= maxMessageBytes else {
            return violation(context, .messageTooBig(limit: maxMessageBytes))
        }
        var payload = frame.unmaskedData
        if messageIsText {
            let valid = payload.withUnsafeReadableBytes { utf8.consume($0) }
            guard valid, !frame.fin || utf8.isComplete else {
                return violation(context, .invalidPayload("text frames must be valid UTF-8"))
            }
        }
        message = nil  // keep the buffer uniquely referenced while appending
        buffer.writeBuffer(&payload)
        guard frame.fin else {
            message = buffer
            return emit(context, .alive)
        }
        emit(context, .message(buffer, isText: messageIsText))
    }

    private func peerClose(_ context: ChannelHandlerContext, _ payload: ByteBuffer) {
        var payload = payload
        var code = CloseCode.normal.rawValue
        if payload.readableBytes == 1 {
            return violation(context, .protocolError("a close frame's payload is a 2-byte code and a reason"))
        }
        if let received = payload.readInteger(as: UInt16.self) {
            guard CloseCode.isValidOnTheWire(received) else {
                return violation(context, .protocolError("close code \(received) may not be sent"))
            }
            guard payload.withUnsafeReadableBytes({ UTF8Validation.isValid($0) }) else {
                return violation(context, .invalidPayload("the close reason is not UTF-8"))
            }
            code = received
        }
        done = true
        message = nil
        emit(context, .peerClose(code))
    }

    private func violation(_ context: ChannelHandlerContext, _ disconnect: Disconnect) {
        done = true
        message = nil
        emit(context, .violation(disconnect))
    }

    private func emit(_ context: ChannelHandlerContext, _ event: WebSocketEvent) {
        context.fireChannelRead(wrapInboundOut(event))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case NIOWebSocketError.invalidFrameLength:
            guard !done else { return }
            violation(context, .messageTooBig(limit: maxMessageBytes))
        case is NIOWebSocketError:
            guard !done else { return }
            violation(context, .protocolError("malformed frame"))
        default:
            context.fireErrorCaught(error)
        }
    }
}
