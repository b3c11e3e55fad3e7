import Foundation
import HeraldCore
import NIOCore
import NIOHTTP1

/// What the development tools behind the demo page may do (`--dev` only): sign a token with the
/// development secret and push a message to a user. The executable provides them.
public struct DevelopmentTools: Sendable {
    public var issueToken: @Sendable (_ user: String, _ device: String?) async throws -> String
    /// Produces `text` to the user's stream and returns its offset once Kafka acknowledged it.
    public var push: @Sendable (_ user: String, _ text: String) async throws -> Int64

    public init(
        issueToken: @escaping @Sendable (_ user: String, _ device: String?) async throws -> String,
        push: @escaping @Sendable (_ user: String, _ text: String) async throws -> Int64
    ) {
        self.issueToken = issueToken
        self.push = push
    }
}

/// A plain HTTP answer on the public port.
struct PublicResponse: Sendable {
    var status: HTTPResponseStatus
    var contentType: String
    var body: String
    var cacheable = false
    /// `Access-Control-Allow-Origin` for the public client files, so that a page on another origin can
    /// `import` them; nil sends none.
    var allowOrigin: String?
    /// Whether the answer depends on the request's `Origin` (caches must keep one copy per origin).
    var variesByOrigin = false

    static func json(_ status: HTTPResponseStatus, _ body: String) -> PublicResponse {
        PublicResponse(status: status, contentType: "application/json", body: body)
    }

    static func error(_ status: HTTPResponseStatus, _ code: String, _ message: String) -> PublicResponse {
        var buffer = ByteBuffer()
        buffer.writeStaticString(#"{"error":{"code":"#)
        buffer.writeJSONString(code)
        buffer.writeStaticString(#","message":"#)
        buffer.writeJSONString(message)
        buffer.writeStaticString("}}")
        return .json(status, String(buffer: buffer))
    }
}

/// The few plain HTTP resources of the public port: the browser client (`/herald.js`, its types), and
/// in development mode the demo page (`/`) with its helpers (`/dev/token`, `/dev/push`, `/dev/restart`).
enum PublicPages {
    /// The answer to a request that is not a WebSocket upgrade, or nil when the path is none of these.
    static func answer(
        method: HTTPMethod, uri: String, origin: String? = nil, body: ByteBuffer?, site: PublicSite, loop: any EventLoop
    ) -> EventLoopFuture<PublicResponse>? {
        let (path, query) = WebSocketListener.split(uri)
        switch (method, path) {
        case (.GET, "/herald.js"):
            return loop.makeSucceededFuture(Self.clientFile("text/javascript; charset=utf-8", ClientAssets.heraldJS, origin: origin, site: site))
        case (.GET, "/herald.d.ts"):
            return loop.makeSucceededFuture(Self.clientFile("text/plain; charset=utf-8", ClientAssets.heraldTypes, origin: origin, site: site))
        default:
            break
        }
        guard let tools = site.developmentTools else { return nil }
        switch (method, path) {
        case (.GET, "/"), (.GET, "/index.html"):
            return loop.makeSucceededFuture(PublicResponse(status: .ok, contentType: "text/html; charset=utf-8", body: ClientAssets.demoPage))
        case (.GET, "/dev/token"):
            guard let user = query["user"], Self.isName(user) else {
                return loop.makeSucceededFuture(.error(.badRequest, "bad-request", "user: 1 to 256 characters, not *"))
            }
            let device = query["device"].flatMap { $0.isEmpty ? nil : $0 }
            let promise = loop.makePromise(of: PublicResponse.self)
            promise.completeWithTask {
                let token = try await tools.issueToken(user, device)
                var body = ByteBuffer()
                body.writeStaticString(#"{"token":"#)
                body.writeJSONString(token)
                body.writeStaticString("}")
                return .json(.ok, String(buffer: body))
            }
            return promise.futureResult
        case (.POST, "/dev/push"):
            guard let fields = Self.object(body), let user = fields["user"] as? String, Self.isName(user),
                  let text = fields["text"] as? String, text.utf8.count <= 4_096 else {
                return loop.makeSucceededFuture(.error(.badRequest, "bad-request", #"the body is {"user":"…","text":"…"} (text up to 4 KiB)"#))
            }
            let promise = loop.makePromise(of: PublicResponse.self)
            promise.completeWithTask {
                do {
                    let offset = try await tools.push(user, text)
                    return .json(.accepted, #"{"offset":\#(offset)}"#)
                } catch {
                    return .error(.serviceUnavailable, "kafka-unavailable", "Kafka did not acknowledge the push; retry")
                }
            }
            return promise.futureResult
        case (.POST, "/dev/restart"):
            guard let fields = Self.object(body), let user = fields["user"] as? String, Self.isName(user) else {
                return loop.makeSucceededFuture(.error(.badRequest, "bad-request", #"the body is {"user":"…"}"#))
            }
            let closed = site.closeConnections(user, .restartRequested)
            return loop.makeSucceededFuture(.json(.accepted, #"{"closed":\#(closed)}"#))
        default:
            return nil
        }
    }

    /// The browser client is documented as `import { connect } from "https://push.example.com/herald.js"`
    /// from the app's own origin: a module script from another origin loads only with CORS. Any origin
    /// may import it unless the node has an origin allow-list, which then applies here as on `/v1/ws`
    /// (a page that may not connect has no use for the client).
    static func clientFile(_ contentType: String, _ body: String, origin: String?, site: PublicSite) -> PublicResponse {
        var response = PublicResponse(status: .ok, contentType: contentType, body: body, cacheable: true)
        let allowed = site.allowedOrigins
        if allowed.isEmpty {
            response.allowOrigin = "*"
        } else {
            response.variesByOrigin = true
            if let origin, allowed.contains(origin) { response.allowOrigin = origin }
        }
        return response
    }

    private static func isName(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 256 && text != HeraldStream.broadcastKey
    }

    private static func object(_ body: ByteBuffer?) -> [String: Any]? {
        guard let body else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any]
    }
}
