import HeraldCore
import NIOCore
import NIOHTTP1

/// Answers every HTTP request that did not become a WebSocket: the refusal the upgrader decided on
/// (401, 403, 503 with `Retry-After`), the public pages (`/herald.js`; the demo in `--dev`), 400 for
/// `/v1/ws` without an upgrade, 404 for anything else. Each answer closes the connection: the public
/// port serves WebSockets, and HTTP only for these few resources.
final class HTTPFallbackHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Request bodies are small JSON objects (the demo's helpers).
    static let maxBodyBytes = 16 * 1024

    private let state: HandshakeState
    private let site: PublicSite
    /// Opens `GET /v1/sse` as an event stream: true when it did (the handler is gone then), false when
    /// the handshake was refused (the refusal is in `state`).
    private let eventStream: ((any Channel, HTTPRequestHead) -> EventLoopFuture<Bool>)?
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var answered = false

    init(state: HandshakeState, site: PublicSite, eventStream: ((any Channel, HTTPRequestHead) -> EventLoopFuture<Bool>)? = nil) {
        self.state = state
        self.site = site
        self.eventStream = eventStream
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            if case .refused(let refusal) = state.outcome {
                answered = true
                return respond(context, .error(refusal.status, refusal.code.description, refusal.message), retryAfter: refusal.retryAfter)
            }
            self.head = head
        case .body(var part):
            guard (body?.readableBytes ?? 0) + part.readableBytes <= Self.maxBodyBytes else {
                answered = true
                return respond(context, .error(.payloadTooLarge, "payload-too-large", "request bodies are limited to \(Self.maxBodyBytes) bytes"))
            }
            if body == nil { body = context.channel.allocator.buffer(capacity: part.readableBytes) }
            body!.writeBuffer(&part)
        case .end:
            guard let head else { return }
            answered = true
            answer(context, head)
        }
    }

    private func answer(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        if let page = PublicPages.answer(method: head.method, uri: head.uri, origin: head.headers.first(name: "Origin"), body: body, site: site, loop: context.eventLoop) {
            page.assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success(let response): respond(context, response)
                case .failure: respond(context, .error(.internalServerError, "internal-error", "the node could not answer this request"))
                }
            }
            return
        }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        if path == GatewayPaths.serverSentEvents, head.method == .GET, let eventStream {
            eventStream(context.channel, head).assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success(true): break
                case .success(false):
                    guard case .refused(let refusal) = state.outcome else { return context.close(promise: nil) }
                    respond(context, .error(refusal.status, refusal.code.description, refusal.message), retryAfter: refusal.retryAfter)
                case .failure:
                    // The pipeline may be half changed over to the stream: no HTTP answer can be trusted.
                    context.channel.close(promise: nil)
                }
            }
            return
        }
        if path == GatewayPaths.serverSentEvents {
            respond(context, .error(.badRequest, HandshakeRefusal.Code.badRequest.description, "\(GatewayPaths.serverSentEvents) takes GET only (an EventSource)"))
        } else if path == GatewayPaths.websocket {
            respond(context, .error(.badRequest, HandshakeRefusal.Code.badRequest.description, "GET \(GatewayPaths.websocket) must be a WebSocket upgrade (RFC 6455)"))
        } else {
            respond(context, .error(.notFound, HandshakeRefusal.Code.notFound.description, "no such endpoint: \(path)"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        releaseSlotIfHeld()
        context.fireChannelInactive()
    }

    /// While a handshake is accepted but not yet upgraded, the slot is released if the connection
    /// ends first (this handler is removed at the start of an upgrade; the listener then hands the
    /// slot to the connection handler, or gives it back if the channel closed in between).
    private func releaseSlotIfHeld() {
        state.slot?.release()
        state.slot = nil
    }

    private func respond(_ context: ChannelHandlerContext, _ response: PublicResponse, retryAfter: Int? = nil) {
        var body = context.channel.allocator.buffer(capacity: response.body.utf8.count)
        body.writeString(response.body)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Cache-Control", value: response.cacheable ? "public, max-age=300" : "no-store")
        if let allowOrigin = response.allowOrigin {
            headers.add(name: "Access-Control-Allow-Origin", value: allowOrigin)
        }
        if response.variesByOrigin {
            headers.add(name: "Vary", value: "Origin")
        }
        if let retryAfter {
            headers.add(name: "Retry-After", value: String(retryAfter))
        }
        let head = HTTPResponseHead(version: .http1_1, status: response.status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

enum GatewayPaths {
    static let websocket = "/v1/ws"
    static let echo = "/v1/echo"
    static let serverSentEvents = "/v1/sse"
}
