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

    init(connection: Connection, services: SessionServices) {
        self.connection = connection
        self.services = services
        self.rules = WebSocketFrameRules(maxMessageBytes: services.settings.maxMessageBytes)
        self.publishes = PublishQueue()
    }

    private var now: Int64 { services.clock.nowMillis() }
    private var shard: Shard { services.shard(for: connection.channel.eventLoop) }

    /// The connection begins, right after the handler joined the pipeline (the channels and the resume
    /// are arguments, not stored: every idle connection would carry them).
    func start(initialChannels: [String], resume: HandshakeState.ResumeRequest) {
        services.metrics.connectionsOpened.increment()
        for replaced in services.registry.add(connection) {
            replaced.channel.eventLoop.execute { replaced.close(.replaced) }
        }
        services.cluster?.opened(connection)
        var following = initialChannels
        if case .cursor(let cursor) = resume {
            following += cursor.channels.filter { !following.contains($0) }
        }
        let connection = self.connection
        let positions = shard.assumeIsolated { $0.register(connection, channels: following) }
        switch resume {
        case .none:
            connection.send(welcome(positions), now: now)
        case .failed(let reason):
            services.replay.notRecovered(reason)
            connection.send(welcome(positions, recovered: false, reason: reason), now: now)
        case .cursor(let cursor):
            startResume(from: cursor, positions: positions)
        }
    }

    /// Replays what the cursor says the device missed; the lifecycle holds live records meanwhile (the
    /// connection was made resuming). The welcome goes out when the outcome is known, then the replay,
    /// then what was held.
    private func startResume(from cursor: ResumeCursor, positions: [(stream: HeraldStream, offset: Int64)]) {
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
                    first: welcome(resumed, recovered: true), replay: frames.flatMap { $0 }, skip: ahead, now: now
                )
            case .failed(let reason):
                decision = connection.lifecycle.replayArrived(
                    first: welcome(positions, recovered: false, reason: reason), replay: [], skip: [:], now: now
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

    private func welcome(
        _ positions: [(stream: HeraldStream, offset: Int64)], recovered: Bool? = nil, reason: RecoveryFailure? = nil
    ) -> ByteBuffer {
        ServerMessage.welcome(
            node: services.nodeID, session: connection.sessionID, epoch: services.epoch,
            positions: positions.map { ($0.stream.wireName, $0.offset) }, recovered: recovered, reason: reason?.rawValue
        )
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
        case .ack:
            services.countAck()
        case .subscribe(let channel, let offset):
            guard connection.allowedChannels.contains(channel) else {
                return refuse(code: "channel-not-allowed", "the token does not grant channel \(channel)")
            }
            guard let offset else {
                _ = shard.assumeIsolated { $0.subscribe(connection, to: channel) }
                return
            }
            subscribe(channel, from: offset)
        case .unsubscribe(let channel):
            shard.assumeIsolated { $0.unsubscribe(connection, from: channel) }
        case .publish(let data, let sync, let id):
            guard let publishing = services.publishing else {
                return tell(code: "unsupported", "this node has no upstream topic to publish to", id: id)
            }
            guard publishing.limits.admit(connection.userID, bytes: data.count) else {
                slowDowns &+= 1
                if slowDowns > Self.slowDownLimit { return connection.close(.publishAbuse) }
                return tell(code: "slow-down", "this user publishes more than its limit; this publish was dropped", id: id)
            }
            slowDowns = 0
            let maxWaiting = services.settings.maxQueuedPublishes
            guard publishes.enqueue(.init(data: data, sync: sync, id: id), maxWaiting: maxWaiting) else {
                return tell(code: "slow-down", "more than \(maxWaiting) publishes wait for Kafka; this one was dropped", id: id)
            }
            publishNext()
        }
    }

    private func publishNext() {
        guard let upstream = services.publishing?.publisher, let next = publishes.next() else { return }
        let connection = self.connection
        let promise = connection.channel.eventLoop.makePromise(of: Result<Int64?, KafkaError>.self)
        promise.completeWithTask {
            await upstream.publish(
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
                    connection.send(ServerMessage.published(id: id, stream: synced.map { _ in "u" }, offset: synced), now: now)
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
    private func refuse(code: String, _ text: String) {
        invalidMessages += 1
        if invalidMessages > Self.invalidMessageLimit {
            return connection.close(.tooManyInvalidMessages)
        }
        tell(code: code, text)
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
        services.registry.remove(connection)
        services.cluster?.closed(connection)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let event = rules.decoderFailed(error) else { return context.close(promise: nil) }
        handle(event, context: context)
    }
}
