import NIOCore
import NIOWebSocket

/// Reads the server's handshake response; on 101 replaces itself with the WebSocket frame handlers
/// and passes on whatever bytes followed the response (the server may send its first frame at once).
/// @unchecked Sendable: used only on its channel's event loop, and `result` is a promise made for that
/// loop (the bootstrap's initializer needs a Sendable value).
final class HandshakeReader: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    private var buffer = ByteBuffer()
    private let sink: EventSink
    private let maxFrameSize: Int
    private let resultBox = ResultBox()

    init(sink: EventSink, maxFrameSize: Int) {
        self.sink = sink
        self.maxFrameSize = maxFrameSize
    }

    var result: EventLoopFuture<Void> { resultBox.promise!.futureResult }

    func handlerAdded(context: ChannelHandlerContext) {
        resultBox.promise = context.eventLoop.makePromise()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        guard let view = buffer.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
        let headEnd = view.upperBound - buffer.readerIndex
        let head = buffer.getString(at: buffer.readerIndex, length: headEnd) ?? ""
        let lines = head.split(separator: "\r\n").map(String.init)
        let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        let headers = lines.dropFirst().compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        if status != 101 {
            let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
            guard buffer.readableBytes >= headEnd + length else { return }
            buffer.moveReaderIndex(forwardBy: headEnd)
            let body = buffer.readString(length: length) ?? ""
            resultBox.promise?.fail(HandshakeRejected(status: status, headers: headers, body: body))
            sink.finish()
            context.close(promise: nil)
            return
        }
        buffer.moveReaderIndex(forwardBy: headEnd)
        let leftover = buffer
        do {
            let pipeline = context.pipeline.syncOperations
            try pipeline.addHandler(WebSocketFrameEncoder(), position: .after(self))
            try pipeline.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)), position: .last)
            try pipeline.addHandler(ClientFrameHandler(sink: sink), position: .last)
            resultBox.promise?.succeed()
            // The server may have sent its first frames in the same read as the response.
            buffer = ByteBuffer()
            if leftover.readableBytes > 0 { context.fireChannelRead(NIOAny(leftover)) }
            pipeline.removeHandler(self, promise: nil)
        } catch {
            resultBox.promise?.fail(error)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        resultBox.promise?.fail(ChannelError.eof)
        sink.yield(.closed(code: nil, reason: "connection closed during the handshake"))
        sink.finish()
        context.fireChannelInactive()
    }

    /// A connect that failed (refused, no route) never made the channel active, so neither a response
    /// nor `channelInactive` completes the promise; unfulfilled, it would trap when freed. After the
    /// handshake this is a no-op (a promise completes once).
    func handlerRemoved(context: ChannelHandlerContext) {
        resultBox.promise?.fail(ChannelError.ioOnClosedChannel)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        resultBox.promise?.fail(error)
        context.close(promise: nil)
    }

    private final class ResultBox {
        var promise: EventLoopPromise<Void>?
    }
}

/// Turns server frames into events, assembles fragmented messages, answers pings and the close handshake.
final class ClientFrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let sink: EventSink
    private var fragments: ByteBuffer?
    private var fragmentsAreText = false
    private var closeCode: UInt16?
    private var closeReason = ""
    private var sentClose = false

    init(sink: EventSink) {
        self.sink = sink
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .pong:
            sink.yield(.pong(frame.unmaskedData))
        case .connectionClose:
            var payload = frame.unmaskedData
            closeCode = payload.readInteger(as: UInt16.self)
            closeReason = payload.readString(length: payload.readableBytes) ?? ""
            if !sentClose {
                sentClose = true
                var echo = ByteBuffer()
                if let closeCode { echo.writeInteger(closeCode) }
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: echo)), promise: nil)
            }
        case .text, .binary, .continuation:
            if frame.opcode != .continuation {
                fragments = ByteBuffer()
                fragmentsAreText = frame.opcode == .text
            }
            var data = frame.unmaskedData
            fragments?.writeBuffer(&data)
            guard frame.fin, let message = fragments else { return }
            fragments = nil
            if fragmentsAreText {
                sink.yield(.text(String(buffer: message)))
            } else {
                sink.yield(.binary(message))
            }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        sink.yield(.closed(code: closeCode, reason: closeReason))
        sink.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
