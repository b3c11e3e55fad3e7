import HeraldCore
import HeraldKafka
import NIOCore
import NIOWebSocket

/// The frame rules NIO leaves to the application (RFC 6455), then the protocol's client frames.
///
/// NIO's decoder parses frames and bounds a single frame's size; this handler refuses unmasked client
/// frames, reserved bits and reserved opcodes (1002), checks that text is UTF-8 across fragments and
/// fails fast (1007), bounds a whole message, fragments included (1009), answers pings, and runs the
/// close handshake. In gateway mode it registers the connection with its shard and the session
/// registry; in echo mode (`--dev` only, for the Autobahn suite) it sends every message back.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    enum Mode {
        case gateway(Connection, GatewayContext, initialChannels: [String], resume: HandshakeState.ResumeRequest)
        case echo
    }

    private let mode: Mode
    private let maxMessageBytes: Int
    private var message: ByteBuffer?
    private var messageIsText = false
    private var utf8 = UTF8Validation()
    private var badFrames: UInt8 = 0
    private var closing = false
    /// Client publishes waiting for the one in flight: sent one at a time, so they reach Kafka in order.
    private var publishQueue: [(data: [UInt8], sync: Bool)] = []
    private var publishing = false

    init(mode: Mode, maxMessageBytes: Int) {
        self.mode = mode
        self.maxMessageBytes = maxMessageBytes
    }

    private var connection: Connection? {
        if case .gateway(let connection, _, _, _) = mode { return connection }
        return nil
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard case .gateway(let connection, let gateway, let channels, let resume) = mode else { return }
        gateway.metrics.connectionsOpened.increment()
        let shard = gateway.shard(for: context.eventLoop)
        for replaced in gateway.registry.add(connection) {
            replaced.channel.eventLoop.execute {
                replaced.close(.replaced, "replaced by a newer connection of the same user")
            }
        }
        var following = channels
        if case .cursor(let cursor) = resume {
            following += cursor.channels.filter { !following.contains($0) }
        }
        let positions = shard.assumeIsolated { $0.register(connection, channels: following) }
        switch resume {
        case .none:
            sendWelcome(context, connection, gateway, positions)
        case .failed(let reason):
            gateway.replay.notRecovered(reason)
            sendWelcome(context, connection, gateway, positions, recovered: false, reason: reason)
        case .cursor(let cursor):
            startResume(from: cursor, positions: positions, context: context, connection: connection, gateway: gateway)
        }
    }

    /// Replays what the cursor says the device missed, holding live records meanwhile; the welcome
    /// goes out when the outcome is known, then the replay, then what was held.
    private func startResume(
        from cursor: ResumeCursor, positions: [(stream: HeraldStream, offset: Int64)], context: ChannelHandlerContext,
        connection: Connection, gateway: GatewayContext
    ) {
        let shard = gateway.shard(for: context.eventLoop)
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
        let state = ResumeState()
        connection.resume = state
        replay(requests, connection: connection, gateway: gateway, context: context) { [self] outcome in
            switch outcome {
            case .recovered(let frames):
                sendWelcome(context, connection, gateway, resumed, recovered: true)
                state.release(replay: frames, skipThrough: ahead)
            case .failed(let reason):
                sendWelcome(context, connection, gateway, positions, recovered: false, reason: reason)
                state.release(replay: [], skipThrough: [:])
            case .unavailable:
                connection.close(.overloaded, "the replay cannot be read now; reconnect later with the same cursor")
                return
            }
            connection.drainResume()
        }
    }

    /// Runs a replay off the loop and continues on it, unless the connection ended meanwhile.
    private func replay(
        _ requests: [StreamReplay], connection: Connection, gateway: GatewayContext, context: ChannelHandlerContext,
        then: @escaping (ReplayOutcome) -> Void
    ) {
        let promise = context.eventLoop.makePromise(of: ReplayOutcome.self)
        let replay = gateway.replay
        let id = connection.id
        promise.completeWithTask { await replay.replay(requests, connection: id, now: WebSocketListener.nowMillis()) }
        promise.futureResult.assumeIsolated().whenSuccess { outcome in
            guard !connection.isClosing, connection.channel.isActive else { return }
            then(outcome)
        }
    }

    private func sendWelcome(
        _ context: ChannelHandlerContext, _ connection: Connection, _ gateway: GatewayContext,
        _ positions: [(stream: HeraldStream, offset: Int64)], recovered: Bool? = nil, reason: RecoveryFailure? = nil
    ) {
        let welcome = ServerMessage.welcome(
            node: gateway.nodeID, session: connection.sessionID, epoch: gateway.epoch,
            positions: positions.map { ($0.stream.wireName, $0.offset) }, recovered: recovered, reason: reason?.rawValue
        )
        context.writeAndFlush(wrapOutboundOut(welcome), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .gateway(let connection, let gateway, _, _) = mode {
            gateway.metrics.closed(
                serverCode: connection.closedByServer ? connection.closeCode : nil,
                clientCode: !connection.closedByServer && connection.closeCode != 0 ? connection.closeCode : nil
            )
            connection.isClosing = true
            gateway.shard(for: context.eventLoop).assumeIsolated { $0.unregister(connection) }
            gateway.registry.remove(connection)
            gateway.admission.release()
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        connection?.missedPongs = 0
        guard frame.maskKey != nil else {
            return fail(context, .protocolError, "client frames must be masked")
        }
        guard !frame.rsv1, !frame.rsv2, !frame.rsv3 else {
            return fail(context, .protocolError, "reserved bits set without a negotiated extension")
        }
        switch frame.opcode {
        case .ping:
            guard !closing else { return }
            context.writeAndFlush(wrapOutboundOut(ServerFrame.control(.pong, payload: frame.unmaskedData)), promise: nil)
        case .pong:
            break
        case .connectionClose:
            receivedClose(context, frame.unmaskedData)
        case .text, .binary:
            guard message == nil else {
                return fail(context, .protocolError, "a new message began before the previous one ended")
            }
            messageIsText = frame.opcode == .text
            utf8 = UTF8Validation()
            message = context.channel.allocator.buffer(capacity: frame.length)
            append(context, frame)
        case .continuation:
            guard message != nil else {
                return fail(context, .protocolError, "a continuation frame with no message to continue")
            }
            append(context, frame)
        default:
            fail(context, .protocolError, "reserved opcode")
        }
    }

    private func append(_ context: ChannelHandlerContext, _ frame: WebSocketFrame) {
        guard var buffer = message else { return }
        guard buffer.readableBytes + frame.length <= maxMessageBytes else {
            message = nil
            return fail(context, .messageTooBig, "messages are limited to \(maxMessageBytes) bytes")
        }
        var payload = frame.unmaskedData
        if messageIsText {
            let valid = payload.withUnsafeReadableBytes { utf8.consume($0) }
            guard valid, !frame.fin || utf8.isComplete else {
                message = nil
                return fail(context, .invalidPayload, "text frames must be valid UTF-8")
            }
        }
        message = nil  // keep the buffer uniquely referenced while appending
        buffer.writeBuffer(&payload)
        guard frame.fin else {
            message = buffer
            return
        }
        received(context, buffer, isText: messageIsText)
    }

    private func received(_ context: ChannelHandlerContext, _ payload: ByteBuffer, isText: Bool) {
        guard !closing else { return }
        switch mode {
        case .echo:
            let echoed = ServerFrame.build(isText ? .text : .binary, capacity: payload.readableBytes) { buffer in
                var payload = payload
                buffer.writeBuffer(&payload)
            }
            context.writeAndFlush(wrapOutboundOut(echoed), promise: nil)
        case .gateway(let connection, let gateway, _, _):
            guard isText else {
                return refuse(context, code: "bad-request", "binary frames are not part of the protocol; send JSON text")
            }
            do {
                let parsed = try ClientMessage.parse(Array(payload.readableBytesView))
                handle(parsed, connection: connection, gateway: gateway, context: context)
            } catch {
                refuse(context, code: "bad-request", error.message)
            }
        }
    }

    private func handle(_ message: ClientMessage, connection: Connection, gateway: GatewayContext, context: ChannelHandlerContext) {
        let shard = gateway.shard(for: context.eventLoop)
        switch message {
        case .ack:
            gateway.countAck()
        case .subscribe(let channel, let offset):
            guard connection.allowedChannels.contains(channel) else {
                return refuse(context, code: "channel-not-allowed", "the token does not grant channel \(channel)")
            }
            guard let offset else {
                _ = shard.assumeIsolated { $0.subscribe(connection, to: channel) }
                return
            }
            subscribe(channel, from: offset, connection: connection, gateway: gateway, context: context)
        case .unsubscribe(let channel):
            shard.assumeIsolated { $0.unsubscribe(connection, from: channel) }
        case .publish(let data, let sync):
            guard gateway.upstream != nil else {
                return tell(context, code: "unsupported", "this node has no upstream topic to publish to")
            }
            guard publishQueue.count < gateway.configuration.maxQueuedPublishes else {
                return tell(context, code: "slow-down", "more than \(gateway.configuration.maxQueuedPublishes) publishes wait for Kafka; this one was dropped")
            }
            publishQueue.append((data, sync))
            publishNext(connection: connection, gateway: gateway)
        }
    }

    /// `subscribe` with an offset: the channel's messages after it, then live, like a resume of one stream.
    private func subscribe(_ channel: String, from offset: Int64, connection: Connection, gateway: GatewayContext, context: ChannelHandlerContext) {
        if connection.resume?.isQueueing == true {
            return tell(context, code: "busy", "a replay is still being sent; subscribe to \(channel) again once it is done")
        }
        let shard = gateway.shard(for: context.eventLoop)
        guard let position = shard.assumeIsolated({ $0.subscribeReturningPosition(connection, to: channel) }) else {
            return tell(context, code: "already-subscribed", "already subscribed to \(channel); unsubscribe first to replay it")
        }
        let stream = HeraldStream.channel(channel)
        let state = connection.resume ?? ResumeState()
        state.fetching = true
        connection.resume = state
        let request = StreamReplay(stream: stream, partition: shard.partition(of: stream), after: offset, through: position)
        replay([request], connection: connection, gateway: gateway, context: context) { [self] outcome in
            switch outcome {
            case .recovered(let frames):
                state.release(replay: frames, skipThrough: offset > position ? [stream: offset] : [:])
            case .failed(let reason):
                tell(context, code: "not-recovered", "channel \(channel) continues live from \(position): \(reason.rawValue)")
                state.release(replay: [], skipThrough: [:])
            case .unavailable(let message):
                tell(context, code: "unavailable", "channel \(channel) continues live from \(position); its replay failed: \(message)")
                state.release(replay: [], skipThrough: [:])
            }
            connection.drainResume()
        }
    }

    private func publishNext(connection: Connection, gateway: GatewayContext) {
        guard !publishing, !publishQueue.isEmpty, let upstream = gateway.upstream else { return }
        publishing = true
        let next = publishQueue.removeFirst()
        let channel = connection.channel
        let promise = channel.eventLoop.makePromise(of: KafkaError?.self)
        promise.completeWithTask {
            await upstream.publish(next.data, sync: next.sync, user: connection.userID, device: connection.deviceID, session: connection.sessionID)
        }
        promise.futureResult.assumeIsolated().whenSuccess { [self] error in
            publishing = false
            gateway.metrics.published(ok: error == nil)
            guard channel.isActive, !connection.isClosing else { return }
            if let error {
                let frame = ServerMessage.error(code: "publish-failed", message: "Kafka did not take the publish (\(error.message)); send it again")
                channel.writeAndFlush(frame, promise: nil)
            }
            publishNext(connection: connection, gateway: gateway)
        }
    }

    /// An `error` frame for a request the client may make but that cannot be served now (not abuse).
    private func tell(_ context: ChannelHandlerContext, code: String, _ text: String) {
        context.writeAndFlush(wrapOutboundOut(ServerMessage.error(code: code, message: text)), promise: nil)
    }

    /// Answers a bad client frame with an `error` frame; repeated abuse closes with 1008.
    private func refuse(_ context: ChannelHandlerContext, code: String, _ text: String) {
        badFrames += 1
        if badFrames > 10 {
            return fail(context, .policyViolation, "too many invalid frames")
        }
        context.writeAndFlush(wrapOutboundOut(ServerMessage.error(code: code, message: text)), promise: nil)
    }

    private func receivedClose(_ context: ChannelHandlerContext, _ payload: ByteBuffer) {
        if closing || connection?.isClosing == true {
            // Our close was answered: the handshake is complete.
            context.close(promise: nil)
            return
        }
        var payload = payload
        var code = CloseCode.normal.rawValue
        if payload.readableBytes == 1 {
            return fail(context, .protocolError, "a close frame's payload is a 2-byte code and a reason")
        }
        if let received = payload.readInteger(as: UInt16.self) {
            guard CloseCode.isValidOnTheWire(received) else {
                return fail(context, .protocolError, "close code \(received) may not be sent")
            }
            guard payload.withUnsafeReadableBytes({ UTF8Validation.isValid($0) }) else {
                return fail(context, .invalidPayload, "the close reason is not UTF-8")
            }
            code = received
        }
        closing = true
        connection?.isClosing = true
        connection?.closeCode = code
        let reply = ServerFrame.close(code: code, reason: "")
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in channel.close(promise: nil) }
    }

    private func fail(_ context: ChannelHandlerContext, _ code: CloseCode, _ reason: String) {
        guard !closing else { return }
        closing = true
        message = nil
        if let connection {
            connection.close(code, reason, failing: true)
        } else {
            Connection.sendClose(on: context.channel, code, reason, failing: true)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let connection {
            if context.channel.isWritable {
                connection.drainResume()
            } else if connection.resume?.isQueueing != true {
                // Over the outbound cap: a slow consumer. It resumes from its cursor after reconnecting.
                // (A replay is paced by writability instead; its own bound is on what it holds.)
                closing = true
                connection.close(.slowConsumer, "outbound queue over its cap; reconnect and resume")
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case NIOWebSocketError.invalidFrameLength:
            fail(context, .messageTooBig, "frame larger than \(maxMessageBytes) bytes")
        case is NIOWebSocketError:
            fail(context, .protocolError, "malformed frame")
        default:
            context.close(promise: nil)
        }
    }
}
