public import Foundation
import HeraldCore
public import NIOCore
public import NIOSSL

/// Connects to a Herald node as an app would: a token, optional channels (and a cursor to resume
/// from), and a stream of parsed events. One connection, no reconnect: `ResumingConnection` builds
/// reconnect, backoff and resume on it for apps; the tests and the load tool use it directly.
public struct HeraldClient: Sendable {
    public var host: String
    public var port: Int
    public var group: any EventLoopGroup
    /// TLS (`wss://`): the trust roots that vouch for the node (the system's by default, or a CA file)
    /// and the rest of NIOSSL's client settings; nil is plain `ws://`. The node's certificate is checked
    /// against `host` (a name, or an address in its subject alternative names).
    public var tls: TLSConfiguration?

    public init(host: String, port: Int, group: any EventLoopGroup, tls: TLSConfiguration? = nil) {
        self.host = host
        self.port = port
        self.group = group
        self.tls = tls
    }

    /// From a node's address, `ws://host:port` or `wss://host:port` (a path is ignored: the client
    /// opens `/v1/ws`). `wss` uses `tls`, or the system's trust roots without it.
    public init(url: URL, group: any EventLoopGroup, tls: TLSConfiguration? = nil) throws {
        guard let scheme = url.scheme?.lowercased(), scheme == "ws" || scheme == "wss", let host = url.host, !host.isEmpty else {
            throw HeraldClientURLError(url: url.absoluteString, problem: "a node's address is ws://host[:port] or wss://host[:port]")
        }
        if scheme == "ws", tls != nil {
            throw HeraldClientURLError(url: url.absoluteString, problem: "TLS settings were given for a ws:// address; use wss://")
        }
        let secure = scheme == "wss"
        let port = url.port ?? (secure ? 443 : 80)
        guard (1...65_535).contains(port) else { throw HeraldClientURLError(url: url.absoluteString, problem: "the port must be 1 to 65535") }
        self.init(host: host, port: port, group: group, tls: secure ? (tls ?? .makeClientConfiguration()) : nil)
    }

    /// Client TLS that trusts only the CA certificates in a PEM file (a private or test CA).
    public static func tls(trustingCAFile path: String) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(path)
        return configuration
    }

    /// Opens `/v1/ws` with the token in the Authorization header (or the query, as browsers must).
    public func connect(
        token: String, channels: [String] = [], tokenInQuery: Bool = false, origin: String? = nil,
        sourceAddress: String? = nil, cursor: String? = nil, epoch: String? = nil, receiveBufferBytes: Int? = nil
    ) async throws -> HeraldSession {
        try await open(
            token: token, channels: channels, tokenInQuery: tokenInQuery, origin: origin, sourceAddress: sourceAddress, cursor: cursor,
            epoch: epoch, receiveBufferBytes: receiveBufferBytes
        )
    }

    /// Opens `/v1/ws` without a token: a node accepts it only where a channel namespace is open to
    /// anonymous connections, and it follows only such channels (docs/protocol.md §5).
    public func connectAnonymously(
        channels: [String] = [], origin: String? = nil, cursor: String? = nil, epoch: String? = nil
    ) async throws -> HeraldSession {
        try await open(token: nil, channels: channels, tokenInQuery: false, origin: origin, sourceAddress: nil, cursor: cursor, epoch: epoch, receiveBufferBytes: nil)
    }

    private func open(
        token: String?, channels: [String], tokenInQuery: Bool, origin: String?,
        sourceAddress: String?, cursor: String?, epoch: String?, receiveBufferBytes: Int?
    ) async throws -> HeraldSession {
        var query: [String] = []
        if !channels.isEmpty { query.append("channels=" + channels.joined(separator: ",")) }
        if let cursor { query.append("cursor=" + Self.encode(cursor)) }
        if let epoch { query.append("epoch=" + Self.encode(epoch)) }
        var headers: [(String, String)] = []
        if let token, tokenInQuery {
            query.append("token=" + (token.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? token))
        } else if let token {
            headers.append(("Authorization", "Bearer \(token)"))
        }
        if let origin { headers.append(("Origin", origin)) }
        let path = "/v1/ws" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        let connection = try await WebSocketClientConnection.connect(
            host: host, port: port, path: path, headers: headers, group: group, sourceAddress: sourceAddress,
            receiveBufferBytes: receiveBufferBytes, tls: tls
        )
        return HeraldSession(connection: connection)
    }

    static func encode(_ value: String) -> String {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+,;")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }
}

/// An address `HeraldClient(url:)` cannot connect to.
public struct HeraldClientURLError: Error, Sendable, CustomStringConvertible {
    public let url: String
    public let problem: String
    public var description: String { "\(url): \(problem)" }
}

/// One open connection to Herald.
public struct HeraldSession: Sendable {
    public let connection: WebSocketClientConnection

    /// Parsed server events; frames that are not Herald frames are skipped.
    public var events: AsyncCompactMapSequence<AsyncStream<WebSocketClientConnection.Event>, ServerEvent> {
        connection.events.compactMap { event in
            switch event {
            case .text(let text): ServerEvent.parse(text)
            case .closed(let code, let reason): .closed(code: code, reason: reason)
            case .binary, .pong: nil
            }
        }
    }

    public func subscribe(_ channel: String, offset: Int64? = nil) {
        connection.send(text: ClientMessage.subscribe(channel: channel, offset: offset).text)
    }

    public func unsubscribe(_ channel: String) {
        connection.send(text: ClientMessage.unsubscribe(channel: channel).text)
    }

    public func ack(stream: String, offset: Int64) {
        connection.send(text: ClientMessage.ack(stream: stream, offset: offset).text)
    }

    /// Publishes `json` (a JSON value) upstream; with `sync`, also to the user's other devices. With
    /// `id`, the node answers `.published` once Kafka took it (or `.publishFailed`); a retry with the
    /// same id reaches the other devices once.
    public func publish(json: String, sync: Bool = false, id: String? = nil) {
        connection.send(text: ClientMessage.publish(data: Array(json.utf8), sync: sync, id: id).text)
    }

    /// Publishes `json` into a channel, where its namespace allows clients to publish: every viewer
    /// of the channel receives it, and the upstream topic too. With `id`, answered `.published`.
    public func publish(json: String, toChannel channel: String, id: String? = nil) {
        connection.send(text: ClientMessage.channelPublish(channel: channel, data: Array(json.utf8), id: id).text)
    }

    /// Hands the node a new token of the same user: answered `.refreshed` with its expiry, or an
    /// `.error` naming why not (the connection then goes on under the old token).
    public func refresh(token: String) {
        connection.send(text: ClientMessage.refresh(token: token).text)
    }

    /// Asks for the newest `limit` messages of `stream` (`u`, `*`, `c:NAME`) before offset `before`;
    /// the answer is `.history` with the same `id`.
    public func history(id: String, stream: String, limit: Int = 50, before: Int64? = nil) {
        connection.send(text: ClientMessage.history(id: id, stream: stream, query: HistoryQuery(limit: limit, before: before)).text)
    }

    public func close() {
        connection.close()
    }
}
