import HeraldCore
import NIOCore
import NIOWebSocket

/// What a client's frames amount to, for the handler that applies the protocol rules.
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

/// The frame rules NIO leaves to the application (RFC 6455), shared by the gateway's `SessionHandler`
/// and the echo endpoint's `EchoHandler`: client frames must be masked (1002), reserved bits and
/// opcodes are refused (1002), text is UTF-8 across fragments and fails fast (1007), a whole message,
/// fragments included, is bounded (1009), and a close frame's code and reason are checked. It decides
/// nothing about the connection: it turns frames into `WebSocketEvent`s, and after a violation or a
/// close it turns nothing into anything. A value the handler owns rather than a handler of its own:
/// one pipeline context less per connection (about 90 bytes of an idle connection's ~3.6 KB).
struct WebSocketFrameRules {
    /// At most 4 GiB; stored small, since every connection holds its rules.
    private let maxMessageLimit: UInt32
    private var maxMessageBytes: Int { Int(maxMessageLimit) }
    private var message: ByteBuffer?
    private var messageIsText = false
    private var utf8 = UTF8Validation()
    private var done = false

    init(maxMessageBytes: Int) {
        self.maxMessageLimit = UInt32(clamping: maxMessageBytes)
    }

    /// What a client frame amounts to, if anything yet.
    mutating func read(_ frame: WebSocketFrame, allocator: ByteBufferAllocator) -> WebSocketEvent? {
        guard !done else { return nil }
        guard frame.maskKey != nil else {
            return violation(.protocolError("client frames must be masked"))
        }
        guard !frame.rsv1, !frame.rsv2, !frame.rsv3 else {
            return violation(.protocolError("reserved bits set without a negotiated extension"))
        }
        switch frame.opcode {
        case .ping:
            return .ping(frame.unmaskedData)
        case .pong:
            return .alive
        case .connectionClose:
            return peerClose(frame.unmaskedData)
        case .text, .binary:
            guard message == nil else {
                return violation(.protocolError("a new message began before the previous one ended"))
            }
            messageIsText = frame.opcode == .text
            utf8 = UTF8Validation()
            message = allocator.buffer(capacity: frame.length)
            return append(frame)
        case .continuation:
            guard message != nil else {
                return violation(.protocolError("a continuation frame with no message to continue"))
            }
            return append(frame)
        default:
            return violation(.protocolError("reserved opcode"))
        }
    }

    /// What an error of NIO's frame decoder amounts to; nil for errors that are not the client's frames.
    mutating func decoderFailed(_ error: any Error) -> WebSocketEvent? {
        guard !done else { return nil }
        switch error {
        case NIOWebSocketError.invalidFrameLength: return violation(.messageTooBig(limit: maxMessageBytes))
        case is NIOWebSocketError: return violation(.protocolError("malformed frame"))
        default: return nil
        }
    }

    private mutating func append(_ frame: WebSocketFrame) -> WebSocketEvent? {
        guard var buffer = message else { return nil }
        guard buffer.readableBytes + frame.length <= maxMessageBytes else {
            return violation(.messageTooBig(limit: maxMessageBytes))
        }
        var payload = frame.unmaskedData
        if messageIsText {
            let valid = payload.withUnsafeReadableBytes { utf8.consume($0) }
            guard valid, !frame.fin || utf8.isComplete else {
                return violation(.invalidPayload("text frames must be valid UTF-8"))
            }
        }
        message = nil  // keep the buffer uniquely referenced while appending
        buffer.writeBuffer(&payload)
        guard frame.fin else {
            message = buffer
            return .alive
        }
        return .message(buffer, isText: messageIsText)
    }

    private mutating func peerClose(_ payload: ByteBuffer) -> WebSocketEvent {
        var payload = payload
        var code = CloseCode.normal.rawValue
        if payload.readableBytes == 1 {
            return violation(.protocolError("a close frame's payload is a 2-byte code and a reason"))
        }
        if let received = payload.readInteger(as: UInt16.self) {
            guard CloseCode.isValidOnTheWire(received) else {
                return violation(.protocolError("close code \(received) may not be sent"))
            }
            guard payload.withUnsafeReadableBytes({ UTF8Validation.isValid($0) }) else {
                return violation(.invalidPayload("the close reason is not UTF-8"))
            }
            code = received
        }
        done = true
        message = nil
        return .peerClose(code)
    }

    private mutating func violation(_ disconnect: Disconnect) -> WebSocketEvent {
        done = true
        message = nil
        return .violation(disconnect)
    }
}
