import HeraldCore
import HeraldKafka
import NIOCore
import NIOWebSocket

/// The client protocol of one gateway connection: frames through `WebSocketFrameRules`, then it
/// registers the connection with its shard and the session registry, runs the resume, decodes client
/// messages, and reports every socket event to the connection's lifecycle, whose decisions the
/// connection carries out.
final class SessionHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    /// Invalid client messages answered with an `error` frame before the connection is closed (1008).
    static let invalidMessageLimit: UInt8 = 10
    /// Publishes refused with `slow-down` in a row before the connection is closed (1008).
    static let slowDownLimit: UInt8 = 50

    // Every idle connection carries these: the small ones are declared together so they pack.
    private let connection: Connection
    private let services: SessionServices
    private var rules: WebSocketFrameRules
    private var publishes: PublishQueue
    /// Client messages in the current second (pings are not messages: their answers are coalesced).
    /// A counter per second rather than a `TokenBucket`; the second is kept modulo 2³², as only a
    /// change of second matters.
    private var messageSecond: UInt32 = 0
    private var messagesThisSecond: UInt32 = 0
    /// The replay's task: cancelled when the connection closes or the deadline passes, so that its
    /// Kafka read stops once nobody else waits for it.
    private var replayTask: Task<Void, Never>?
    /// The last replay started (never 0), and the one whose outcome is awaited (0: none).
    private var replays: UInt16 = 0
    private var pendingReplay: UInt16 = 0
    private var invalidMessages: UInt8 = 0
    private var slowDowns: UInt8 = 0
    /// Where this device is current, committed as its stored cursor; nil for a connection without a
    /// `device` claim (or a node without a cursors topic).
    private var acked: AckedPositions?
    /// A `refresh` is being verified: another waits for its answer.
    private var refreshing = false
    /// A `history` request of this connection is being read: one at a time.
    private var historyPending = false

    init(connection: Connection, services: SessionServices) {
        self.connection = connection
        self.services = services
        self.rules = WebSocketFrameRules(maxMessageBytes: services.settings.maxMessageBytes)
        self.publishes = PublishQueue()
        if services.cursors != nil, let device = connection.deviceID, device.utf8.count <= DeviceCursorRecord.maxIDBytes,
           connection.userID.utf8.count <= DeviceCursorRecord.maxIDBytes {
            acked = AckedPositions()
        }
    }

    private var now: Int64 { services.clock.nowMillis() }
    private var shard: Shard { services.shard(for: connection.channel.eventLoop) }

    /// The connection begins, right after the handler joined the pipeline (the channels and the resume
    /// are arguments, not stored: every idle connection would carry them).
    func start(initialChannels: [String], resume: HandshakeState.ResumeRequest) {
        services.metrics.connectionsOpened.increment()
        // Anonymous connections have no user: no per-user limit, presence or kick applies to them.
        if !connection.isAnonymous {
            for replaced in services.registry.add(connection) {
                replaced.channel.eventLoop.execute { replaced.close(.replaced) }
            }
        }
        services.cluster?.opened(connection)
        var following = initialChannels
        if case .cursor(let cursor, _) = resume {
            following += cursor.channels.filter { !following.contains($0) }
        }
        let connection = self.connection
        let positions = shard.assumeIsolated { $0.register(connection, channels: following) }
        switch resume {
        case .none:
            connection.send(welcome(positions), now: now)
        case .failed(let reason, let stored):
            services.replay.notRecovered(reason)
            connection.send(welcome(positions, recovered: false, reason: reason, stored: stored), now: now)
        case .cursor(let cursor, let stored):
            startResume(from: cursor, positions: positions, stored: stored)
        }
    }

    /// Replays what the cursor says the device missed; the lifecycle holds live records meanwhile (the
    /// connection was made resuming). The welcome goes out when the outcome is known, then the replay,
    /// then what was held.
    private func startResume(from cursor: ResumeCursor, positions: [(stream: HeraldStream, offset: Int64)], stored: Bool) {
        let shard = self.shard
        var requests: [StreamReplay] = []
        var ahead: [HeraldStream: Int64] = [:]
        var resumed = positions
        for entry in cursor.entries {
            let stream = entry.stream.stream(of: connection.userID)
            guard let index = positions.firstIndex(where: { $0.stream == stream }) else { continue }
            let through = positions[index].offset
            requests.append(StreamReplay(stream: stream, partition: shard.partition(of: stream), after: entry.offset, through: through))
            if entry.offset > through { ahead[stream] = entry.offset }
            resumed[index].offset = entry.offset
        }
        replay(requests) { [self] outcome in
            let decision: Disconnect?
            switch outcome {
            case .recovered(let frames):
                decision = connection.lifecycle.replayArrived(
                    first: welcome(resumed, recovered: true, stored: stored), replay: frames.flatMap { $0 }, skip: ahead, now: now
                )
            case .failed(let reason):
                decision = connection.lifecycle.replayArrived(
                    first: welcome(positions, recovered: false, reason: reason, stored: stored), replay: [], skip: [:], now: now
                )
            case .unavailable:
                decision = .replayUnavailable
            case .cancelled:
                return
            }
            finishReplay(decision)
        }
    }

    /// `subscribe` with an offset: the channel's messages after it, then live, like a resume of one stream.
    private func subscribe(_ channel: String, from offset: Int64) {
        if connection.lifecycle.isReplaying {
            return tell(code: "busy", "a replay is still being sent; subscribe to \(channel) again once it is done")
        }
        let connection = self.connection
        guard let position = shard.assumeIsolated({ $0.subscribeReturningPosition(connection, to: channel) }) else {
            return tell(code: "already-subscribed", "already subscribed to \(channel); unsubscribe first to replay it")
        }
        guard connection.lifecycle.startReplay() else { return }
        let stream = HeraldStream.channel(channel)
        let request = StreamReplay(stream: stream, partition: shard.partition(of: stream), after: offset, through: position)
        replay([request]) { [self] outcome in
            let (notice, frames): (ByteBuffer?, [ByteBuffer])
            switch outcome {
            case .recovered(let replayed):
                (notice, frames) = (nil, replayed.flatMap { $0 })
            case .failed(let reason):
                (notice, frames) = (errorFrame("not-recovered", "channel \(channel) continues live from \(position): \(reason.rawValue)"), [])
            case .unavailable(let message):
                (notice, frames) = (errorFrame("unavailable", "channel \(channel) continues live from \(position); its replay failed: \(message)"), [])
            case .cancelled:
                return
            }
            finishReplay(connection.lifecycle.replayArrived(
                first: notice, replay: frames, skip: offset > position ? [stream: offset] : [:], now: now
            ))
        }
    }

    private func finishReplay(_ decision: Disconnect?) {
        if let decision {
            connection.close(decision)
        } else {
            connection.drain(now: now)
        }
    }

    /// Runs a replay off the loop and continues on it, unless the connection ended meanwhile. A replay
    /// that takes longer than the deadline is given up as `too-many`: the client continues live and
    /// resyncs, rather than reconnecting with the same cursor into the same wait.
    private func replay(_ requests: [StreamReplay], then: @escaping (ReplayOutcome) -> Void) {
        let loop = connection.channel.eventLoop
        let promise = loop.makePromise(of: ReplayOutcome.self)
        let replay = services.replay
        let id = connection.id
        let started = now
        replayTask = Task { promise.succeed(await replay.replay(requests, connection: id, now: started)) }
        replays = replays == .max ? 1 : replays + 1
        let generation = replays
        pendingReplay = generation
        let deadline = loop.assumeIsolated().scheduleTask(in: .init(services.settings.replayDeadline)) { [self] in
            replayTask?.cancel()
            settle(generation, .failed(.tooMany), then)
        }
        promise.futureResult.assumeIsolated().whenSuccess { [self] outcome in
            deadline.cancel()
            settle(generation, outcome, then)
        }
    }

    /// The first of a replay's outcome and its deadline decides; the other is ignored.
    private func settle(_ generation: UInt16, _ outcome: ReplayOutcome, _ then: (ReplayOutcome) -> Void) {
        guard pendingReplay == generation else { return }
        pendingReplay = 0
        replayTask = nil
        guard !connection.isClosing, connection.channel.isActive else { return }
        then(outcome)
    }

    /// The welcome, built once per connection when it is sent; its positions are where the device's
    /// acks start from.
    private func welcome(
        _ positions: [(stream: HeraldStream, offset: Int64)], recovered: Bool? = nil, reason: RecoveryFailure? = nil, stored: Bool = false
    ) -> ByteBuffer {
        acked?.welcomed(positions)
        return ServerMessage.welcome(
            node: services.nodeID, session: connection.sessionID, epoch: services.epoch,
            positions: positions.map { ($0.stream.wireName, $0.offset) }, recovered: recovered, reason: reason?.rawValue,
            source: stored ? ServerMessage.storedCursorSource : nil
        )
    }

    /// An ack moves this device's position in a stream the connection follows (an ack of another
    /// stream is counted and changes nothing); the position is committed within the commit interval.
    private func acknowledge(_ name: String, offset: Int64) {
        guard let cursors = services.cursors, acked != nil else { return }
        let stream: HeraldStream
        switch name {
        case "u": stream = .user(connection.userID)
        case "*": stream = .broadcast
        case _ where name.hasPrefix("c:") && connection.subscriptions.contains(String(name.dropFirst(2))):
            stream = .channel(String(name.dropFirst(2)))
        default: return
        }
        guard acked?.ack(stream, offset: offset) == true, acked?.commitScheduled == false else { return }
        acked?.commitScheduled = true
        connection.channel.eventLoop.assumeIsolated().scheduleTask(in: .init(cursors.commitInterval)) { [self] in
            acked?.commitScheduled = false
            commitCursor()
        }
    }

    private func commitCursor() {
        guard let cursors = services.cursors, let device = connection.deviceID, acked?.isDirty == true,
              let cursor = acked?.takeCommit() else { return }
        cursors.commit(user: connection.userID, device: device, epoch: services.epoch, cursor: cursor)
    }

    // MARK: Socket events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.lifecycle.frameReceived()
        guard let event = rules.read(unwrapInboundIn(data), allocator: context.channel.allocator) else { return }
        handle(event, context: context)
    }

    private func handle(_ event: WebSocketEvent, context: ChannelHandlerContext) {
        switch event {
        case .message(let payload, let isText):
            guard !connection.isClosing else { return }
            guard withinMessageRate() else { return connection.close(.tooManyMessages) }
            guard isText else {
                return refuse(code: "bad-request", "binary frames are not part of the protocol; send JSON text")
            }
            do {
                handle(try ClientMessage.parse(Array(payload.readableBytesView)))
            } catch {
                refuse(code: "bad-request", error.message)
            }
        case .ping(let payload):
            connection.sendPong(ServerFrame.control(.pong, payload: payload), now: now)
        case .peerClose(let code):
            switch connection.lifecycle.peerClosed(code: code) {
            case .closeNow:
                context.close(promise: nil)
            case .reply(let code):
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(ServerFrame.close(code: code, reason: ""))).whenComplete { _ in
                    channel.close(promise: nil)
                }
            }
        case .violation(let disconnect):
            // After our close, whatever the client sends (a close with a code such as 1012 that a peer
            // may not send, say) ends the handshake: the connection is done either way.
            guard !connection.isClosing else { return context.close(promise: nil) }
            connection.close(disconnect)
        case .alive:
            break
        }
    }

    /// At most `clientMessagesPerSecond` in any one second; off at 0.
    private func withinMessageRate() -> Bool {
        let rate = services.settings.clientMessagesPerSecond
        guard rate > 0 else { return true }
        let second = UInt32(truncatingIfNeeded: now / 1_000)
        if second != messageSecond {
            messageSecond = second
            messagesThisSecond = 0
        }
        messagesThisSecond &+= 1
        return Double(messagesThisSecond) <= rate
    }

    private func handle(_ message: ClientMessage) {
        let connection = self.connection
        switch message {
        case .ack(let stream, let offset):
            services.countAck()
            acknowledge(stream, offset: offset)
        case .subscribe(let channel, let offset):
            guard services.namespaces.mayFollow(channel, grants: connection.allowedChannels, anonymous: connection.isAnonymous) else {
                let reason = connection.isAnonymous ? "channel \(channel) is not open to connections without a token" : "the token does not grant channel \(channel)"
                return refuse(code: "channel-not-allowed", reason)
            }
            guard let offset else {
                _ = shard.assumeIsolated { $0.subscribe(connection, to: channel) }
                return
            }
            subscribe(channel, from: offset)
        case .unsubscribe(let channel):
            shard.assumeIsolated { $0.unsubscribe(connection, from: channel) }
            acked?.forget(.channel(channel))
        case .publish(let data, let sync, let id):
            // Upstream and `sync` publishes are a user's: an anonymous connection has none.
            guard !connection.isAnonymous else {
                return refuse(code: "publish-not-allowed", "a connection without a token may publish only into a channel that allows it", id: id)
            }
            enqueuePublish(.init(data: data, sync: sync, id: id))
        case .channelPublish(let channel, let data, let id):
            if let refusal = services.namespaces.publishRefusal(channel, grants: connection.allowedChannels, anonymous: connection.isAnonymous) {
                return refuse(code: "publish-not-allowed", refusal, id: id)
            }
            enqueuePublish(.init(data: data, sync: false, id: id, channel: channel))
        case .refresh(let token):
            guard !connection.isAnonymous else {
                return refuse(code: "bad-request", "a connection without a token has none to refresh; connect with a token instead")
            }
            guard !refreshing else {
                return tell(code: "busy", "a refresh is still being verified; wait for its answer")
            }
            refresh(with: token)
        case .history(let id, let stream, let query):
            readHistory(id: id, stream: stream, query: query)
        }
    }

    /// Answers a `history` request with a `history` frame, or an `error` naming its id.
    private func readHistory(id: String, stream name: String, query: HistoryQuery) {
        guard let history = services.history else {
            return tell(code: "unsupported", "this node reads no history (it has no Kafka replay reader)", id: id)
        }
        guard let stream = HistoryAccess.stream(named: name, for: connection, namespaces: services.namespaces) else {
            return tell(code: "channel-not-allowed", "this connection may not read \(name); it may read u, * and the channels it may follow", id: id)
        }
        // A channel's namespace may bound what connections read of its history below the node's bound.
        let maxMessages: Int? = switch stream {
        case .channel(let channel): services.namespaces.namespace(of: channel).historyLength
        case .user, .broadcast: nil
        }
        guard maxMessages != 0 else {
            return tell(code: "history-not-offered", "the namespace of \(name) offers connections no history (history=0)", id: id)
        }
        guard !historyPending else {
            return tell(code: "busy", "this connection's previous history request is still being read; ask again after its answer", id: id)
        }
        historyPending = true
        let connection = self.connection
        let promise = connection.channel.eventLoop.makePromise(of: Result<HistoryPage, StreamHistory.Failure>.self)
        promise.completeWithTask { await history.page(of: stream, named: name, query: query, maxMessages: maxMessages) }
        promise.futureResult.assumeIsolated().whenSuccess { [self] result in
            historyPending = false
            guard connection.channel.isActive, !connection.isClosing else { return }
            switch result {
            case .success(let page):
                connection.send(ServerMessage.history(id: id, page: page), now: now)
            case .failure(.busy(let reads)):
                tell(code: "busy", "this node is answering \(reads) history requests already; ask again shortly", id: id)
            case .failure(.unavailable):
                // Kafka's own words name brokers and topics: not for clients.
                tell(code: "unavailable", "the history could not be read from Kafka; ask again", id: id)
            }
        }
    }

    /// A publish within the user's limits (an anonymous connection's own) and the connection's queue.
    private func enqueuePublish(_ publish: PublishQueue.Publish) {
        let id = publish.id
        let data = publish.data
        guard let publishing = services.publishing else {
            return tell(code: "unsupported", "this node has no upstream topic to publish to", id: id)
        }
        let limitKey = connection.isAnonymous ? "anonymous:" + connection.sessionID : connection.userID
        guard publishing.limits.admit(limitKey, bytes: data.count) else {
            slowDowns &+= 1
            if slowDowns > Self.slowDownLimit { return connection.close(.publishAbuse) }
            return tell(code: "slow-down", "this user publishes more than its limit; this publish was dropped", id: id)
        }
        slowDowns = 0
        let maxWaiting = services.settings.maxQueuedPublishes
        guard publishes.enqueue(publish, maxWaiting: maxWaiting) else {
            return tell(code: "slow-down", "more than \(maxWaiting) publishes wait for Kafka; this one was dropped", id: id)
        }
        publishNext()
    }

    private func publishNext() {
        guard let upstream = services.publishing?.publisher, let next = publishes.next() else { return }
        let connection = self.connection
        let promise = connection.channel.eventLoop.makePromise(of: Result<Int64?, KafkaError>.self)
        let user = connection.isAnonymous ? nil : connection.userID
        promise.completeWithTask {
            if let channel = next.channel {
                return await upstream.publish(
                    next.data, toChannel: channel, clientID: next.id, user: user, device: connection.deviceID, session: connection.sessionID
                )
            }
            return await upstream.publish(
                next.data, sync: next.sync, clientID: next.id, user: connection.userID, device: connection.deviceID, session: connection.sessionID
            )
        }
        promise.futureResult.assumeIsolated().whenSuccess { [self] result in
            publishes.finished()
            if case .success = result { services.metrics.published(ok: true) } else { services.metrics.published(ok: false) }
            guard connection.channel.isActive, !connection.isClosing else { return }
            switch result {
            case .success(let synced):
                if let id = next.id {
                    let stream = next.channel.map { "c:" + $0 } ?? "u"
                    connection.send(ServerMessage.published(id: id, stream: synced.map { _ in stream }, offset: synced), now: now)
                }
            case .failure:
                // Kafka's own words name brokers and topics: not for clients.
                let again = next.id == nil ? "send it again" : "send it again with the same id"
                tell(code: "publish-failed", "Kafka did not take the publish; \(again)", id: next.id)
            }
            publishNext()
        }
    }

    private func errorFrame(_ code: String, _ text: String, id: String? = nil) -> ByteBuffer {
        ServerMessage.error(code: code, message: text, id: id)
    }

    /// An `error` frame for a request the client may make but that cannot be served now (not abuse);
    /// `id` names the client's publish it answers.
    private func tell(code: String, _ text: String, id: String? = nil) {
        connection.send(errorFrame(code, text, id: id), now: now)
    }

    /// Answers an invalid client message with an `error` frame; repeated abuse closes with 1008.
    private func refuse(code: String, _ text: String, id: String? = nil) {
        invalidMessages += 1
        if invalidMessages > Self.invalidMessageLimit {
            return connection.close(.tooManyInvalidMessages)
        }
        tell(code: code, text, id: id)
    }

    /// Verifies a `refresh`'s token off the loop, then lets `TokenRefresh` decide on the loop: the
    /// connection's expiry moves and it is told `refreshed`, or the refusal is an `error` frame and the
    /// connection goes on under its old token (expiring at its old `exp`).
    private func refresh(with token: String) {
        refreshing = true
        let connection = self.connection
        let tokens = services.tokens
        let promise = connection.channel.eventLoop.makePromise(of: Result<Identity, HandshakeRefusal>.self)
        promise.completeWithTask {
            do throws(HandshakeRefusal) { return .success(try await tokens.verify(token)) } catch { return .failure(error) }
        }
        promise.futureResult.assumeIsolated().whenSuccess { [self] verified in
            refreshing = false
            guard connection.channel.isActive, !connection.isClosing else { return }
            switch TokenRefresh.decide(verified, for: connection, now: now) {
            case .refused(let code, let reason):
                refuse(code: code, reason)
            case .accepted(let identity):
                guard connection.lifecycle.refreshed(expiresAt: identity.expiresAt, now: now) else { return }
                connection.allowedChannels = identity.channels
                // The new token may grant less: what it no longer allows is not followed any more.
                let namespaces = services.namespaces
                let dropped = connection.subscriptions.filter { !namespaces.mayFollow($0, grants: identity.channels, anonymous: false) }
                for channel in dropped {
                    shard.assumeIsolated { $0.unsubscribe(connection, from: channel) }
                    tell(code: "channel-not-allowed", "the new token does not grant channel \(channel): it was unsubscribed")
                }
                connection.send(ServerMessage.refreshed(expiresAt: identity.expiresAt), now: now)
            }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection.writabilityChanged(now: now)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let connection = self.connection
        replayTask?.cancel()
        replayTask = nil
        let ended = connection.closed()
        services.metrics.closed(
            serverCode: ended.byServer ? ended.code : nil,
            clientCode: !ended.byServer && ended.code != 0 ? ended.code : nil
        )
        services.shard(for: context.eventLoop).assumeIsolated { $0.unregister(connection) }
        if !connection.isAnonymous {
            services.registry.remove(connection)
            services.cluster?.closed(connection)
        }
        commitCursor()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let event = rules.decoderFailed(error) else { return context.close(promise: nil) }
        handle(event, context: context)
    }
}
