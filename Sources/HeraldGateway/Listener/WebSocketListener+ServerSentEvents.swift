import HeraldCore
import NIOCore
import NIOHTTP1

/// `GET /v1/sse`: the same handshake as `/v1/ws` (token, channels, cursor, admission; refusals as the
/// same HTTP statuses), then a `text/event-stream` response whose events are the connection's server
/// frames (`ServerSentEventsWriter`). The connection is a `Connection` with its `SessionHandler` like
/// any other: the same shard, lifecycle, byte budget and resume.
extension WebSocketListener {
    func openEventStream(_ channel: any Channel, _ head: HTTPRequestHead, _ state: HandshakeState) -> EventLoopFuture<Bool> {
        let (_, query) = Self.split(head.uri)
        var cursor = query["cursor"]
        var epoch = query["epoch"]
        // The browser's reconnect carries the last event's id, newer than the URL it reconnects to.
        if let lastEventID = head.headers.first(name: "Last-Event-ID"), !lastEventID.isEmpty {
            if let parts = ResumeCursor.parts(ofEventID: lastEventID) {
                (epoch, cursor) = (parts.epoch, parts.cursor)
            } else {
                // Not an id this node wrote: read as a cursor without an epoch (`recovered:false`).
                (epoch, cursor) = (nil, lastEventID)
            }
        }
        let allowedOrigin = head.headers.first(name: "Origin")
        return decide(channel, head, query: query, cursor: cursor, epoch: epoch, state).flatMapThrowing { [self] accepted in
            guard accepted else { return false }
            try startEventStream(channel, state, origin: allowedOrigin)
            return true
        }
    }

    private func startEventStream(_ channel: any Channel, _ state: HandshakeState, origin: String?) throws {
        state.timeout?.cancel()
        state.timeout = nil
        let slot = state.slot
        state.slot = nil
        let outcome = state.outcome
        state.outcome = .pending
        guard case .accepted(let identity, let channels, let resume) = outcome, channel.isActive else {
            slot?.release()
            channel.close(promise: nil)
            return
        }
        var resuming = false
        if case .cursor = resume { resuming = true }
        let connection = Connection(
            id: UInt64.random(in: 1...UInt64.max), identity: identity, channel: channel, openedAt: sessions.clock.nowMillis(),
            limits: connectionLimits, accounts: identity.isAnonymous ? anonymousAccounts : accounts, slot: slot, resuming: resuming, transport: .serverSentEvents
        )
        let pipeline = channel.pipeline.syncOperations
        // Bytes after the request (the decoder forwards what it holds when it leaves) go nowhere.
        try pipeline.addHandler(ServerSentEventsInbound(), position: .last)
        if let encoder = try? pipeline.context(handlerType: HTTPResponseEncoder.self) {
            pipeline.removeHandler(context: encoder, promise: nil)
        }
        if let decoder = try? pipeline.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self) {
            pipeline.removeHandler(context: decoder, promise: nil)
        }
        if let fallback = try? pipeline.context(handlerType: HTTPFallbackHandler.self) {
            pipeline.removeHandler(context: fallback, promise: nil)
        }
        // The response has no length: the stream is the body, until either side closes.
        var response = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-store\r\n"
        response += "X-Accel-Buffering: no\r\nConnection: close\r\n"
        if let origin, !origin.contains(where: { $0 == "\r" || $0 == "\n" }) {
            // The origin was checked against the allow-list by the handshake (any, when there is none).
            response += "Access-Control-Allow-Origin: \(origin)\r\nVary: Origin\r\n"
        }
        response += "\r\n"
        channel.write(ByteBuffer(string: response), promise: nil)
        let writer = ServerSentEventsWriter(epoch: sessions.epoch, demand: sessions.serverSentEvents)
        writer.connection = connection
        try pipeline.addHandler(writer, position: .last)
        let session = SessionHandler(connection: connection, services: sessions)
        try pipeline.addHandler(session, position: .last)
        session.start(initialChannels: channels, resume: resume)
    }
}
