import Foundation
import HeraldCore
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// The public port: accepts TCP, decides each handshake before the upgrade (admission, origin, token,
/// channels) and hands upgraded channels to the frame rules and a `SessionHandler` on their loop.
final class WebSocketListener: Sendable {
    let configuration: GatewayConfiguration
    private let admission: Admission
    private let sources: SourceLimiter
    private let tokens: TokenVerifier
    let connectionLimits: ConnectionStateMachine<ByteBuffer>.Limits
    let accounts: ConnectionAccounts
    /// Connections without a token count against their own cap and accept rate.
    let anonymousAdmission: Admission
    let anonymousAccounts: ConnectionAccounts
    private let metrics: GatewayMetrics
    let sessions: SessionServices
    private let site: PublicSite
    private let group: any EventLoopGroup

    init(
        configuration: GatewayConfiguration, admission: Admission, anonymousAdmission: Admission, tokens: TokenVerifier, outbound: OutboundStats,
        metrics: GatewayMetrics, sessions: SessionServices, site: PublicSite, group: any EventLoopGroup
    ) {
        self.anonymousAdmission = anonymousAdmission
        self.anonymousAccounts = ConnectionAccounts(outbound: outbound, admission: anonymousAdmission)
        self.configuration = configuration
        self.admission = admission
        self.sources = SourceLimiter(.init(
            inFlight: configuration.handshakesInFlightPerSource, perSecond: configuration.handshakesPerSecondPerSource
        ))
        self.tokens = tokens
        self.connectionLimits = configuration.makeConnectionLimits()
        self.accounts = ConnectionAccounts(outbound: outbound, admission: admission)
        self.metrics = metrics
        self.sessions = sessions
        self.site = site
        self.group = group
    }

    func bind(host: String, port: Int) async throws -> any Channel {
        let cap = configuration.outboundCapBytes
        // One context for the listener's life: each handshake takes the reloader's current pair.
        let tls = try configuration.tls?.makeContext()
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4_096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: cap / 2, high: cap))
            // NIO keeps the last receive buffers of a channel for reuse, up to one per message read in a
            // loop iteration: with small first reads and one read per iteration, an idle connection
            // keeps one small buffer rather than several (measured: ~770 B less per connection).
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 64 * 1024))
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.initialize(channel, tls: tls) }
            }
            .bind(host: host, port: port)
            .get()
    }

    private func initialize(_ channel: any Channel, tls: NIOSSLContext?) throws {
        if let tls {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
        }
        let state = HandshakeState()
        let decoderLimit = configuration.echoEndpoint ? max(configuration.maxMessageBytes, configuration.echoMaxMessageBytes) : configuration.maxMessageBytes
        let upgrader = HeraldWebSocketUpgrader(
            handshake: NIOWebSocketServerUpgrader(
                maxFrameSize: decoderLimit,
                automaticErrorHandling: false,
                shouldUpgrade: { [self] channel, head in self.shouldUpgrade(channel, head, state) },
                upgradePipelineHandler: { channel, _ in channel.eventLoop.makeSucceededVoidFuture() }
            ),
            maxFrameSize: decoderLimit,
            pipelineHandler: { [self] channel in try self.upgraded(channel, state) }
        )
        let encoder = HTTPResponseEncoder()
        let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes))
        let fallback = HTTPFallbackHandler(state: state, site: site) { [self] channel, head in self.openEventStream(channel, head, state) }
        let upgradeHandler = HTTPServerUpgradeHandler(
            upgraders: [upgrader], httpEncoder: encoder, extraHTTPHandlers: [decoder, fallback], upgradeCompletionHandler: { _ in }
        )
        try channel.pipeline.syncOperations.addHandlers([encoder, decoder, upgradeHandler, fallback])
        // Slowloris: a connection that has not finished its handshake in time is closed.
        state.timeout = channel.eventLoop.scheduleTask(in: .init(configuration.handshakeTimeout)) {
            channel.close(promise: nil)
        }
    }

    private func shouldUpgrade(_ channel: any Channel, _ head: HTTPRequestHead, _ state: HandshakeState) -> EventLoopFuture<HTTPHeaders?> {
        let loop = channel.eventLoop
        let (path, query) = Self.split(head.uri)
        if path == GatewayPaths.echo && configuration.echoEndpoint {
            state.outcome = .echo
            return loop.makeSucceededFuture(HTTPHeaders())
        }
        guard path == GatewayPaths.websocket else {
            return loop.makeSucceededFuture(nil)
        }
        return decide(channel, head, query: query, cursor: query["cursor"], epoch: query["epoch"], state).map { $0 ? HTTPHeaders() : nil }
    }

    /// Decides a connection's handshake, for a WebSocket upgrade and a Server-Sent Events request alike:
    /// true when accepted (`state` then holds the identity and the admission slot), false when refused
    /// (`state` holds the refusal to answer with).
    func decide(
        _ channel: any Channel, _ head: HTTPRequestHead, query: [String: String], cursor: String?, epoch: String?, _ state: HandshakeState
    ) -> EventLoopFuture<Bool> {
        let loop = channel.eventLoop
        func refuse(_ refusal: HandshakeRefusal) -> EventLoopFuture<Bool> {
            metrics.refused(refusal.code.name)
            state.outcome = .refused(refusal)
            return loop.makeSucceededFuture(false)
        }
        let allowed = configuration.allowedOrigins
        if !allowed.isEmpty, let origin = head.headers.first(name: "Origin"), !allowed.contains(origin) {
            return refuse(HandshakeRefusal(.originNotAllowed, "origin \(origin) is not allowed"))
        }
        let channels = (query["channels"] ?? "").split(separator: ",").map(String.init).filter { !$0.isEmpty }
        let resumeRequest = Self.resumeRequest(cursor: cursor, epoch: epoch, nodeEpoch: sessions.epoch)
        let namespaces = configuration.namespaces
        guard let token = Self.bearerToken(head.headers) ?? query["token"], !token.isEmpty else {
            guard namespaces.allowsAnonymous else {
                return refuse(HandshakeRefusal(.missingToken, "a token is required: Authorization: Bearer <token> or ?token="))
            }
            let outcome = Self.access(.anonymous, channels: channels, resume: resumeRequest, namespaces: namespaces)
            guard case .accepted = outcome else {
                if case .refused(let refusal) = outcome { return refuse(refusal) }
                return loop.makeSucceededFuture(false)
            }
            // Draining and the node's cap hold for everyone; the anonymous cap and rate are their own,
            // and one source's share of them is bounded like its token handshakes.
            if let refusal = admission.precheck() { return refuse(refusal) }
            if sources.isActive, let source = channel.remoteAddress?.ipAddress {
                if let refusal = sources.begin(source) { return refuse(refusal) }
                sources.end(source)
            }
            switch anonymousAdmission.admit() {
            case .success(let slot): state.slot = slot
            case .failure(let refusal): return refuse(refusal)
            }
            state.outcome = outcome
            return loop.makeSucceededFuture(true)
        }
        // Cheap refusals first; the accept budget is spent only on a handshake whose token holds, so
        // tokenless or forged handshakes cannot crowd out real clients.
        if let refusal = admission.precheck() {
            return refuse(refusal)
        }
        let source = sources.isActive ? channel.remoteAddress?.ipAddress : nil
        if let source, let refusal = sources.begin(source) {
            return refuse(refusal)
        }
        let promise = loop.makePromise(of: HandshakeState.Outcome.self)
        promise.completeWithTask { [tokens, sessions] in
            do {
                let identity = try await tokens.verify(token)
                var resume = resumeRequest
                if case .success(.none) = resumeRequest, let stored = sessions.cursors?.resumeRequest(
                    user: identity.userID, device: identity.deviceID, granted: identity.channels, nodeEpoch: sessions.epoch
                ) {
                    resume = .success(stored)
                }
                return Self.access(identity, channels: channels, resume: resume, namespaces: namespaces)
            } catch let refusal as HandshakeRefusal {
                return .refused(refusal)
            }
        }
        return promise.futureResult.map { [sources, admission, metrics] outcome in
            if let source { sources.end(source) }
            var outcome = outcome
            if case .accepted = outcome {
                // The client may have hung up while its token was verified: then nothing is admitted.
                guard channel.isActive else { return false }
                switch admission.admit() {
                case .success(let slot): state.slot = slot
                case .failure(let refusal): outcome = .refused(refusal)
                }
            }
            state.outcome = outcome
            guard case .accepted = outcome else {
                if case .refused(let refusal) = outcome { metrics.refused(refusal.code.name) }
                return false
            }
            return true
        }
    }

    private func upgraded(_ channel: any Channel, _ state: HandshakeState) throws {
        state.timeout?.cancel()
        state.timeout = nil
        let slot = state.slot
        state.slot = nil
        let outcome = state.outcome
        state.outcome = .pending
        // Closed during the upgrade: no handler will see it end; the slot goes back with `slot`.
        guard channel.isActive else {
            slot?.release()
            return
        }
        let pipeline = channel.pipeline.syncOperations
        switch outcome {
        case .echo:
            try pipeline.addHandler(EchoHandler(maxMessageBytes: configuration.echoMaxMessageBytes))
        case .accepted(let identity, let channels, let resume):
            var resuming = false
            if case .cursor = resume { resuming = true }
            let connection = Connection(
                id: UInt64.random(in: 1...UInt64.max), identity: identity, channel: channel, openedAt: sessions.clock.nowMillis(),
                limits: connectionLimits, accounts: identity.isAnonymous ? anonymousAccounts : accounts, slot: slot, resuming: resuming
            )
            let session = SessionHandler(connection: connection, services: sessions)
            try pipeline.addHandler(session)
            session.start(initialChannels: channels, resume: resume)
        case .pending, .refused:
            slot?.release()
            channel.close(promise: nil)
        }
    }

    /// Whether the identity may follow what the handshake asks for: every channel of `channels=` and of
    /// the cursor, by the namespaces' rules; an anonymous connection has no user stream and no
    /// broadcast, so a cursor naming either is refused too. Nothing is subscribed or replayed on a refusal.
    static func access(
        _ identity: Identity, channels: [String], resume resumeRequest: Result<HandshakeState.ResumeRequest, HandshakeRefusal>,
        namespaces: ChannelNamespaces
    ) -> HandshakeState.Outcome {
        let anonymous = identity.isAnonymous
        func mayFollow(_ channel: String) -> Bool { namespaces.mayFollow(channel, grants: identity.channels, anonymous: anonymous) }
        if let denied = channels.first(where: { !mayFollow($0) }) {
            return .refused(HandshakeRefusal(
                .channelNotAllowed, anonymous ? "channel \(denied) is not open to connections without a token" : "the token does not grant channel \(denied)"
            ))
        }
        let resume: HandshakeState.ResumeRequest
        switch resumeRequest {
        case .success(let request): resume = request
        case .failure(let refusal): return .refused(refusal)
        }
        if case .cursor(let cursor, _) = resume {
            if anonymous, cursor.entries.contains(where: { $0.stream == .user || $0.stream == .broadcast }) {
                return .refused(HandshakeRefusal(.cursorNotAllowed, "a connection without a token follows channels only; the cursor names u or *"))
            }
            if let denied = cursor.channels.first(where: { !mayFollow($0) }) {
                return .refused(HandshakeRefusal(.cursorNotAllowed, "the cursor names channel \(denied), which this connection may not follow"))
            }
        }
        return .accepted(identity, channels: channels, resume: resume)
    }

    /// Reads the `cursor` and `epoch` parameters. A cursor that names another user's stream is refused
    /// (403) before anything else; a malformed one, or one from another epoch (or with none), is a
    /// `recovered:false` in the welcome, because the client can still connect and continue live.
    static func resumeRequest(cursor: String?, epoch: String?, nodeEpoch: String) -> Result<HandshakeState.ResumeRequest, HandshakeRefusal> {
        guard let cursor else { return .success(.none) }
        let parsed: ResumeCursor
        do {
            parsed = try ResumeCursor.parse(cursor)
        } catch .foreignStream(let message) {
            return .failure(HandshakeRefusal(.cursorNotAllowed, message))
        } catch {
            return .success(.failed(.malformed))
        }
        guard epoch == nodeEpoch else { return .success(.failed(.epoch)) }
        return .success(.cursor(parsed, stored: false))
    }

    static func bearerToken(_ headers: HTTPHeaders) -> String? {
        guard let value = headers.first(name: "Authorization") else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return String(parts[1]).trimmingCharacters(in: .whitespaces)
    }

    /// Splits a request target into its path and its decoded query parameters.
    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        let pieces = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = String(pieces.first ?? "")
        var query: [String: String] = [:]
        if pieces.count == 2 {
            for pair in pieces[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(kv[0]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(kv[0])
                let value = kv.count == 2 ? (String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(kv[1])) : ""
                query[key] = value
            }
        }
        return (path, query)
    }
}
