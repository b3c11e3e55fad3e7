import Foundation
import HeraldCore
import NIOCore

/// The Server-Sent Events transport of one connection: the connection, its shard and its session
/// write server frames as they do for a WebSocket, and this handler turns them into events on their
/// way to the socket. A record's data lines come ready from the dispatcher (one encoding for every
/// SSE connection); the welcome, `error` frames and replayed frames are converted here.
///
/// Every event that moves the connection's position ends with `id: EPOCH CURSOR`: the connection's
/// resume cursor after it (`ResumeCursor`, the one owner of cursor text), which the browser sends back
/// as `Last-Event-ID` when it reconnects. A ping becomes a heartbeat comment, a close frame the final
/// `event: close` with the same code and reason, after which the stream ends.
final class ServerSentEventsWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let epoch: String
    private let demand: ServerSentEventsDemand
    /// An SSE client cannot answer pings: a heartbeat written counts as its answer, and a peer that is
    /// gone is found by TCP (the write fails) or by the byte budget, as for any reader that stops.
    /// Weak: the connection holds the channel, whose pipeline holds this handler.
    weak var connection: Connection?
    /// The connection's position per stream (wire names), from the welcome on.
    private var positions: [String: Int64] = [:]
    private var ended = false

    init(epoch: String, demand: ServerSentEventsDemand) {
        self.epoch = epoch
        self.demand = demand
    }

    func handlerAdded(context: ChannelHandlerContext) { demand.opened() }
    func handlerRemoved(context: ChannelHandlerContext) { demand.closed() }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        guard !ended else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        if ServerSentEvent.isDataLines(buffer) {
            return writeEvent(context, lines: buffer, json: buffer.getSlice(at: buffer.readerIndex + 6, length: buffer.readableBytes - 6) ?? buffer, promise)
        }
        guard let (opcode, payload) = ServerFrame.parts(of: buffer) else {
            assertionFailure("an SSE connection was given bytes that are neither a server frame nor event data")
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        switch opcode {
        case .text:
            writeEvent(context, lines: ServerSentEvent.dataLines(payload, allocator: context.channel.allocator), json: payload, promise)
        case .ping:
            connection?.lifecycle.frameReceived()
            context.write(wrapOutboundOut(ServerSentEvent.heartbeat), promise: promise)
        case .close:
            ended = true
            let code = payload.getInteger(at: payload.readerIndex, as: UInt16.self) ?? 1005
            let reason = payload.readableBytes > 2 ? payload.getString(at: payload.readerIndex + 2, length: payload.readableBytes - 2) ?? "" : ""
            let channel = context.channel
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
            written.futureResult.cascade(to: promise)
            context.write(wrapOutboundOut(ServerSentEvent.close(code: code, reason: reason)), promise: written)
            context.flush()
        case .pong, .binary:
            promise?.succeed()
        }
    }

    private func writeEvent(_ context: ChannelHandlerContext, lines: ByteBuffer, json: ByteBuffer, _ promise: EventLoopPromise<Void>?) {
        context.write(wrapOutboundOut(lines), promise: nil)
        let end = advance(json).map { ServerSentEvent.idLine(ResumeCursor(positions: positions).eventID(epoch: epoch)) }
        context.write(wrapOutboundOut(end ?? ServerSentEvent.endOfEvent), promise: promise)
    }

    /// Moves the positions past a `message` (or to a `welcome`'s); nil for a frame that moves nothing.
    private func advance(_ json: ByteBuffer) -> Void? {
        if let (stream, offset) = Self.streamAndOffset(ofMessage: json) {
            positions[stream] = max(positions[stream] ?? -1, offset)
            return ()
        }
        if json.readableBytesView.starts(with: Self.welcomePrefix),
           let object = try? JSONSerialization.jsonObject(with: Data(json.readableBytesView)) as? [String: Any],
           let welcome = object["positions"] as? [String: NSNumber] {
            positions = welcome.mapValues(\.int64Value)
            return ()
        }
        return nil
    }

    private static let messagePrefix = Array(#"{"type":"message","stream":""#.utf8)
    private static let offsetKey = Array(#","offset":"#.utf8)
    private static let welcomePrefix = Array(#"{"type":"welcome""#.utf8)

    /// The stream and offset of a `message` frame's JSON, read where `ServerMessage.message` writes them
    /// (first, in this order); nil for another frame.
    static func streamAndOffset(ofMessage json: ByteBuffer) -> (stream: String, offset: Int64)? {
        let bytes = json.readableBytesView
        guard bytes.starts(with: messagePrefix) else { return nil }
        var index = bytes.startIndex + messagePrefix.count
        let nameStart = index
        var escaped = false
        while index < bytes.endIndex, bytes[index] != UInt8(ascii: "\"") {
            if bytes[index] == UInt8(ascii: "\\") {
                escaped = true
                index += 1
            }
            index += 1
        }
        guard index < bytes.endIndex else { return nil }
        let stream: String
        if escaped {
            // Rare (a channel name with a quote or a backslash): JSON decodes the escapes.
            let quoted = Data(bytes[(nameStart - 1)...index])
            guard let decoded = try? JSONDecoder().decode(String.self, from: quoted) else { return nil }
            stream = decoded
        } else {
            stream = String(decoding: bytes[nameStart..<index], as: UTF8.self)
        }
        index += 1
        guard bytes[index...].starts(with: offsetKey) else { return nil }
        index += offsetKey.count
        var offset: Int64 = 0
        var digits = 0
        while index < bytes.endIndex, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]), digits < 18 {
            offset = offset * 10 + Int64(bytes[index] - UInt8(ascii: "0"))
            index += 1
            digits += 1
        }
        return digits > 0 ? (stream, offset) : nil
    }
}
