import Foundation
public import HeraldCore
public import Hummingbird
import HummingbirdCore
import HummingbirdTLS
public import Logging
import NIOCore
public import NIOSSL

/// What the node tells the control plane about itself.
public struct NodeHooks: Sendable {
    public var nodeID: String
    /// This node's connections of a user: session, device, opened-at (Unix ms).
    public var sessions: @Sendable (String) -> [(session: String, device: String?, openedAt: Int64)]
    /// nil when ready; otherwise why not. It may ask Kafka, so `/readyz` reads it at most once per
    /// `ControlPlaneConfiguration.readinessRefresh`, in the background, and answers from the last result.
    public var notReadyReason: @Sendable () async -> String?
    /// The part of readiness that is the node's own state and costs nothing (draining): read on every probe.
    public var localNotReadyReason: @Sendable () -> String?
    /// Records at once, on this node, that `user`'s tokens issued before the instant (Unix ms) are
    /// refused; the control record carries it to the other nodes.
    public var revoke: @Sendable (_ user: String, _ before: Int64) -> Void
    /// The node's state as a JSON object (connections, resumes, hot window) for `GET /v1/node`.
    public var status: @Sendable () -> NodeStatus
    /// The Prometheus text exposition for `GET /metrics`; nil when metrics are off.
    public var metrics: (@Sendable () -> [UInt8])?
    /// A page of a stream's history (`GET /v1/streams/{stream}/history`), named as the request named
    /// it; nil when the node reads no history.
    public var history: (@Sendable (_ stream: HeraldStream, _ name: String, _ query: HistoryQuery) async throws -> HistoryPage)?
    /// The cluster's view of sessions; nil when the node has none (presence answers for this node).
    public var cluster: Cluster?

    /// Presence across the cluster, from the view every node reads from the sessions topic.
    public struct Cluster: Sendable {
        /// The user's connections on every node, oldest first.
        public var connections: @Sendable (String) -> [(node: String, session: String, device: String?, openedAt: Int64)]
        public var isOnline: @Sendable (String) -> Bool

        public init(
            connections: @escaping @Sendable (String) -> [(node: String, session: String, device: String?, openedAt: Int64)],
            isOnline: @escaping @Sendable (String) -> Bool
        ) {
            self.connections = connections
            self.isOnline = isOnline
        }
    }

    public init(
        nodeID: String, sessions: @escaping @Sendable (String) -> [(session: String, device: String?, openedAt: Int64)],
        notReadyReason: @escaping @Sendable () async -> String?, status: @escaping @Sendable () -> NodeStatus,
        metrics: (@Sendable () -> [UInt8])? = nil, localNotReadyReason: @escaping @Sendable () -> String? = { nil },
        revoke: @escaping @Sendable (String, Int64) -> Void = { _, _ in },
        history: (@Sendable (HeraldStream, String, HistoryQuery) async throws -> HistoryPage)? = nil, cluster: Cluster? = nil
    ) {
        self.history = history
        self.cluster = cluster
        self.localNotReadyReason = localNotReadyReason
        self.revoke = revoke
        self.metrics = metrics
        self.nodeID = nodeID
        self.sessions = sessions
        self.notReadyReason = notReadyReason
        self.status = status
    }
}

public struct ControlPlaneConfiguration: Sendable {
    public var host = "0.0.0.0"
    public var port = 8081
    public var apiKeys: [String]
    public var limits = PushLimits()
    /// Largest request body of `/v1/push/batch`.
    public var maxBatchBodyBytes = 16 * 1024 * 1024
    /// A connection that sends nothing for this long (no request, or idle between requests) is closed.
    public var idleTimeout: Duration = .seconds(30)
    /// How often `/readyz` refreshes its view of Kafka (one metadata query), whatever the probe rate.
    public var readinessRefresh: Duration = .seconds(1)
    /// TLS on the internal port (with client certificates when its trust roots are set); nil serves
    /// plain HTTP. Its context callback may hand each handshake a reloaded certificate.
    public var tls: TLSConfiguration? = nil

    public init(apiKeys: [String]) {
        self.apiKeys = apiKeys
    }
}

/// The internal HTTP API (docs/protocol.md §3) on Hummingbird: push, batch push, presence and kick, health.
public enum ControlPlane {
    public static func router(configuration: ControlPlaneConfiguration, push: PushService, node: NodeHooks) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: RequestMetricsMiddleware())
        router.add(middleware: ErrorShapeMiddleware())
        router.get("/healthz") { _, _ in Responses.json(.ok, Responses.Status(status: "ok")) }
        // Unauthenticated like the health checks: Prometheus scrapes the internal port, which only
        // the cluster reaches (the NetworkPolicy in k8s/).
        router.get("/metrics") { _, _ -> Response in
            guard let metrics = node.metrics else { throw APIError(.notFound, "metrics are off on this node (--no-metrics)") }
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: metrics()))
            )
        }
        let readiness = ReadinessCache(check: node.notReadyReason, refresh: configuration.readinessRefresh)
        router.get("/readyz") { _, _ -> Response in
            var reason = node.localNotReadyReason()
            if reason == nil { reason = await readiness.reason() }
            if let reason {
                throw APIError(.notReady, reason, retryAfter: 5)
            }
            return Responses.json(.ok, Responses.Status(status: "ready"))
        }

        let v1 = router.group("v1").add(middleware: APIKeyAuthenticator(keys: configuration.apiKeys))
        let limits = configuration.limits
        let budget = PushBudget(limits: limits)
        let keys = configuration.apiKeys
        let singleBodyLimit = limits.maxPayloadBytes * 4 + 64 * 1024
        v1.post("push") { request, _ -> Response in
            let body = try await collect(request, upTo: singleBodyLimit)
            let parsed = try PushRequest.parse(body, limits: limits)
            let client = APIKeyAuthenticator<BasicRequestContext>.keyIndex(of: request, in: keys)
            try budget.admit([parsed], client: client)
            let outcome = try await push.push(parsed, client: client)
            return Responses.json(.accepted, outcome)
        }
        v1.post("push/batch") { request, _ -> Response in
            let body = try await collect(request, upTo: configuration.maxBatchBodyBytes)
            guard let members = JSONSpans.objectMembers(body) else {
                throw APIError(.invalidBody, "the body must be one JSON object: {\"messages\":[…]}")
            }
            if let unknown = members.keys.sorted().first(where: { $0 != "messages" }) {
                throw APIError.field(unknown, "is not a field of a batch (messages)")
            }
            guard let span = members["messages"], let elements = JSONSpans.arrayElements(body, in: span) else {
                throw APIError.field("messages", "is required: an array of push bodies")
            }
            guard (1...limits.maxBatch).contains(elements.count) else {
                throw APIError.field("messages", "must hold 1 to \(limits.maxBatch) pushes; it holds \(elements.count)")
            }
            var requests: [PushRequest] = []
            requests.reserveCapacity(elements.count)
            var firstUse: [String: Int] = [:]
            for (index, element) in elements.enumerated() {
                let parsed = try PushRequest.parse(body, in: element, path: "messages[\(index)]", limits: limits)
                if let id = parsed.id {
                    if let earlier = firstUse[id] {
                        throw APIError.field("messages[\(index)].id", "repeats the id of messages[\(earlier)]; the ids of one batch must differ")
                    }
                    firstUse[id] = index
                }
                requests.append(parsed)
            }
            let client = APIKeyAuthenticator<BasicRequestContext>.keyIndex(of: request, in: keys)
            try budget.admit(requests, client: client)
            let outcomes = try await push.push(requests, client: client)
            return Responses.json(.accepted, Responses.Batch(results: outcomes))
        }
        v1.get("node") { _, _ -> Response in
            Responses.json(.ok, node.status())
        }
        v1.get("streams/:stream/history") { request, context -> Response in
            let (stream, name) = try streamName(context)
            guard let history = node.history else { throw APIError(.notFound, "this node reads no history") }
            if let unknown = request.uri.queryParameters.map({ String($0.key) }).sorted().first(where: { $0 != "limit" && $0 != "before" }) {
                throw APIError.field(String(unknown.prefix(64)), "is not a parameter of history (limit, before)")
            }
            let query: HistoryQuery
            do {
                query = try HistoryQuery.parse(
                    limit: request.uri.queryParameters.get("limit"), before: request.uri.queryParameters.get("before")
                )
            } catch let error as ClientMessageError {
                throw APIError(.invalidField, error.message)
            }
            let page = try await history(stream, name, query)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: page.json()))
        }
        v1.get("users/:user/connections") { _, context -> Response in
            let user = try userID(context)
            return Responses.json(.ok, Responses.UserConnections(node: node.nodeID, user: user, connections: Presence.connections(of: user, node: node)))
        }
        v1.get("presence") { request, _ -> Response in
            let users = try Presence.users(inQuery: request.uri.query)
            return Responses.json(.ok, Presence.answer(users, node: node))
        }
        v1.delete("users/:user/connections") { request, context -> Response in
            let user = try userID(context)
            let revoke: Bool
            switch request.uri.queryParameters.get("revoke") {
            case nil, "false": revoke = false
            case "true": revoke = true
            case let other?:
                throw APIError.field("revoke", "must be true or false, not \(other)")
            }
            // What this node can say: how many of the user's connections it holds. Other nodes act on
            // the same control record; no node knows where else the user is connected.
            let here = node.sessions(user).count
            var revokedBefore: Int64? = nil
            if revoke {
                let now = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
                revokedBefore = now
                node.revoke(user, now)
            }
            let result = try await push.disconnect(user: user, revokeBefore: revokedBefore)
            return Responses.json(
                .accepted,
                Responses.Kick(user: user, connectionsHere: here, revokedBefore: revokedBefore, partition: result.partition, offset: result.offset)
            )
        }
        return router
    }

    /// The `{id}` path segment, percent-decoded: `bob%40example.com` is the user `bob@example.com`.
    static func userID(_ context: some RequestContext) throws -> String {
        let raw = try context.parameters.require("user")
        guard let user = raw.removingPercentEncoding, !user.isEmpty, user.utf8.count <= 256 else {
            throw APIError.field("id", "the user id in the path must be 1 to 256 bytes, percent-encoded as a URL path segment")
        }
        return user
    }

    /// The `{stream}` path segment, percent-decoded: `c:NAME` (a channel), `u:ID` (a user's stream) or `*`.
    static func streamName(_ context: some RequestContext) throws -> (HeraldStream, String) {
        let raw = try context.parameters.require("stream")
        // Counted in code points, as the document's maxLength counts them.
        guard raw.utf8.count <= 12 * 258, let name = raw.removingPercentEncoding, name.unicodeScalars.count <= 258 else {
            throw APIError.field("stream", "must be c:NAME, u:ID or *, at most 258 characters in all, percent-encoded as a URL path segment")
        }
        if name == "*" { return (.broadcast, name) }
        if name.hasPrefix("c:"), name.utf8.count > 2 { return (.channel(String(name.dropFirst(2))), name) }
        if name.hasPrefix("u:"), name.utf8.count > 2 { return (.user(String(name.dropFirst(2))), name) }
        throw APIError.field("stream", "must be c:NAME (a channel), u:ID (a user's stream) or * (broadcast), not \(name.prefix(64))")
    }

    /// The application; with `group`, it shares the node's event loops instead of starting its own.
    /// Throws when the TLS configuration cannot make a context.
    public static func application(
        configuration: ControlPlaneConfiguration, push: PushService, node: NodeHooks, logger: Logger,
        group: (any EventLoopGroup)? = nil, onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        let http = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .init(configuration.idleTimeout)))
        return Application(
            router: router(configuration: configuration, push: push, node: node),
            server: try configuration.tls.map { try HTTPServerBuilder.tls(http, tlsConfiguration: $0) } ?? http,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "herald"),
            onServerRunning: onServerRunning,
            eventLoopGroupProvider: group.map { .shared($0) } ?? .singleton,
            logger: logger
        )
    }

    static func collect(_ request: Request, upTo limit: Int) async throws -> [UInt8] {
        do {
            return Array(try await request.body.collect(upTo: limit).readableBytesView)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError(.payloadTooLarge, "the request body is over \(limit) bytes")
        }
    }
}

/// Gives every error the API's body shape, including the router's own (404 for an unknown route,
/// 405 for a known one with another method).
struct ErrorShapeMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError {
            if error.status == .notFound, let allowed = Self.allowedMethods(request.uri.path) {
                throw APIError(
                    .methodNotAllowed, "\(request.method) is not served on \(request.uri.path); use \(allowed.joined(separator: " or "))",
                    allow: allowed
                )
            }
            throw APIError(APIError.Code(name: error.status.code == 404 ? "not-found" : "http-\(error.status.code)", status: error.status),
                           error.body ?? error.status.reasonPhrase)
        }
    }

    /// The methods each route serves, so a known path with another method is 405, not 404.
    static func allowedMethods(_ path: String) -> [String]? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        switch parts.count {
        case 1 where parts[0] == "healthz" || parts[0] == "readyz" || parts[0] == "metrics": return ["GET"]
        case 2 where parts[0] == "v1" && parts[1] == "push": return ["POST"]
        case 2 where parts[0] == "v1" && (parts[1] == "node" || parts[1] == "presence"): return ["GET"]
        case 3 where parts[0] == "v1" && parts[1] == "push" && parts[2] == "batch": return ["POST"]
        case 4 where parts[0] == "v1" && parts[1] == "users" && parts[3] == "connections": return ["GET", "DELETE"]
        case 4 where parts[0] == "v1" && parts[1] == "streams" && parts[3] == "history": return ["GET"]
        default: return nil
        }
    }
}
