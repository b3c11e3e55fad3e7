public import NIOCore
import NIOPosix
public import NIOSSL
public import NIOWebSocket
import Foundation

/// A WebSocket client connection over NIO, written for Herald: it performs the RFC 6455 handshake
/// itself (so a refused handshake surfaces as its HTTP status and body), masks what it sends, answers
/// pings, and reports every frame and the close code. Tests also use its raw-write escape hatch to
/// send frames a well-behaved client never would.
public final class WebSocketClientConnection: Sendable {
    public enum Event: Sendable {
        case text(String)
        case binary(ByteBuffer)
        case pong(ByteBuffer)
        /// The connection ended: the close code and reason the server sent, if it sent any.
        case closed(code: UInt16?, reason: String)
    }

    public let events: AsyncStream<Event>
    public let channel: any Channel

    private init(channel: any Channel, events: AsyncStream<Event>) {
        self.channel = channel
        self.events = events
    }

    /// Opens a connection and completes the handshake, or throws `HandshakeRejected` with the server's
    /// status and body.
    ///
    /// With `observer`, events are handed to it on the connection's event loop instead of being queued
    /// on `events` (the load tool holds thousands of connections and counts, rather than keeps, frames).
    /// `receiveBufferBytes` fixes the socket's receive buffer (no autotuning): a client that stops
    /// reading then fills it, and the server's own queue, within a few megabytes (tests).
    public static func connect(
        host: String, port: Int, path: String, headers: [(String, String)] = [],
        group: any EventLoopGroup, sourceAddress: String? = nil, maxFrameSize: Int = 1 << 24,
        receiveBufferBytes: Int? = nil, observer: (@Sendable (Event) -> Void)? = nil, tls: TLSConfiguration? = nil
    ) async throws -> WebSocketClientConnection {
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .unbounded)
        let sink = EventSink(continuation: continuation, observer: observer)
        let handshake = HandshakeReader(sink: sink, maxFrameSize: maxFrameSize)
        let context = try tls.map { try NIOSSLContext(configuration: $0) }
        // SNI carries names only; for an address, NIOSSL checks the certificate against the peer's address.
        let serverName: String? = (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
        var bootstrap = ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    }
                    try channel.pipeline.syncOperations.addHandler(handshake)
                }
            }
        if let sourceAddress {
            bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: sourceAddress, port: 0))
        }
        if let receiveBufferBytes {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: max(1, receiveBufferBytes))
        }
        let channel = try await bootstrap.connect(host: host, port: port).get()
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        var request = "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        try await channel.writeAndFlush(ByteBuffer(string: request))
        try await handshake.result.get()
        return WebSocketClientConnection(channel: channel, events: stream)
    }

    /// Sends a masked text frame.
    public func send(text: String) {
        send(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text)))
    }

    /// Sends a frame as given (masked or not, any opcode or reserved bits); NIO's encoder applies the
    /// mask when the frame has a key.
    public func send(_ frame: WebSocketFrame) {
        channel.writeAndFlush(frame, promise: nil)
    }

    /// Writes bytes straight to the socket, under the frame encoder.
    public func sendRaw(_ bytes: ByteBuffer) {
        let channel = self.channel
        channel.eventLoop.execute {
            guard let context = try? channel.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self) else { return }
            context.writeAndFlush(NIOAny(bytes), promise: nil)
        }
    }

    /// Sends a close frame; the server's answer ends the connection.
    public func close(code: UInt16 = 1000, reason: String = "") {
        var payload = ByteBuffer()
        payload.writeInteger(code)
        payload.writeString(reason)
        send(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: payload))
    }

    /// Stops or resumes reading from the socket (a client that "stops reading").
    public func setReading(_ reading: Bool) async throws {
        try await channel.setOption(.autoRead, value: reading).get()
    }
}

/// Where a connection's events go: its stream, or an observer.
struct EventSink: Sendable {
    let continuation: AsyncStream<WebSocketClientConnection.Event>.Continuation
    let observer: (@Sendable (WebSocketClientConnection.Event) -> Void)?

    func yield(_ event: WebSocketClientConnection.Event) {
        if let observer { observer(event) } else { continuation.yield(event) }
    }

    func finish() { continuation.finish() }
}

/// The server refused the WebSocket handshake.
public struct HandshakeRejected: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let headers: [(String, String)]
    public let body: String
    public var description: String { "handshake refused: \(status) \(body)" }
    public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}
