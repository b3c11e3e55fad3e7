import NIOCore
import NIOPosix

/// One keep-alive HTTP/1.1 connection that sends a request and waits for its response: the load
/// tool's client for the push API, kept minimal so that it costs the shared CPU little.
final class HTTPLoadConnection: Sendable {
    private let channel: any Channel
    private let reader: ResponseReader

    private init(channel: any Channel, reader: ResponseReader) {
        self.channel = channel
        self.reader = reader
    }

    static func connect(host: String, port: Int, group: any EventLoopGroup) async throws -> HTTPLoadConnection {
        let reader = ResponseReader()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(reader) } }
            .connect(host: host, port: port).get()
        return HTTPLoadConnection(channel: channel, reader: reader)
    }

    /// Sends `request` (complete HTTP/1.1 bytes) and returns the status and body.
    func send(_ request: ByteBuffer) async throws -> (status: Int, body: String) {
        let promise = channel.eventLoop.makePromise(of: (Int, String).self)
        let reader = self.reader
        channel.eventLoop.execute { reader.expect(promise) }
        channel.writeAndFlush(request, promise: nil)
        let (status, body) = try await promise.futureResult.get()
        return (status, body)
    }

    func close() { channel.close(promise: nil) }
}

/// Parses responses with Content-Length bodies (what the control plane sends).
/// @unchecked Sendable: used only on its channel's event loop (`expect` is called through `eventLoop.execute`).
private final class ResponseReader: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private var buffer = ByteBuffer()
    private var waiting: [EventLoopPromise<(Int, String)>] = []

    func expect(_ promise: EventLoopPromise<(Int, String)>) { waiting.append(promise) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while let response = parse() {
            guard !waiting.isEmpty else { break }
            waiting.removeFirst().succeed(response)
        }
    }

    private func parse() -> (Int, String)? {
        let view = buffer.readableBytesView
        guard let end = view.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
        let headLength = end.upperBound - view.startIndex
        let head = buffer.getString(at: buffer.readerIndex, length: headLength) ?? ""
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        var length = 0
        for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
            length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
        }
        guard buffer.readableBytes >= headLength + length else { return nil }
        buffer.moveReaderIndex(forwardBy: headLength)
        let body = buffer.readString(length: length) ?? ""
        buffer.discardReadBytes()
        return (status, body)
    }

    func channelInactive(context: ChannelHandlerContext) {
        for promise in waiting { promise.fail(ChannelError.eof) }
        waiting = []
    }
}
