import HeraldCore
public import NIOCore

extension ByteBuffer: MeasuredFrame {
    var byteCount: Int { readableBytes }
}

/// What every connection of a node reports to: the outbound statistics and the connection count it
/// holds a place in. One per node, so a connection carries one reference for both.
final class ConnectionAccounts: Sendable {
    let outbound: OutboundStats
    let admission: Admission?

    init(outbound: OutboundStats, admission: Admission?) {
        self.outbound = outbound
        self.admission = admission
    }
}

/// One WebSocket connection as its shard and the session registry see it: its identity, its channel,
/// and its lifecycle (`ConnectionStateMachine`), whose decisions this class carries out on the socket.
///
/// Identity is immutable. The mutable state is touched only on `channel.eventLoop` (by the
/// connection's handler and by its shard, which runs on that loop); other threads reach it only by
/// scheduling work on that loop.
/// @unchecked Sendable: that loop confinement is what makes it safe.
public final class Connection: @unchecked Sendable {
    /// Node-unique and random, so a session id names one connection across nodes too.
    public let id: UInt64
    public let userID: String
    public let deviceID: String?
    public let channel: any Channel
    /// Unix milliseconds.
    public let openedAt: Int64
    /// Unix milliseconds: the token's `exp`. Nothing is delivered at or after it.
    public var expiresAt: Int64 { lifecycle.expiresAt }
    /// Channels the token grants by name (the `channels` claim; a refresh replaces them). Whether the
    /// connection may follow a channel is `ChannelNamespaces.mayFollow`'s decision, with these.
    var allowedChannels: Set<String>
    private let accounts: ConnectionAccounts

    // Loop-confined state.
    var subscriptions: [String] = []
    /// The next connection of the same user on the same shard (the shard's index is a list through here).
    var nextOfUser: Connection?
    var lifecycle: ConnectionStateMachine<ByteBuffer>
    /// Whether this connection holds a place in the node's connection count, until `closed()` or its
    /// deinit gives it back (exactly once: cleared when it does). Declared right after the lifecycle,
    /// whose last bytes are small fields: it fits beside them.
    private var holdsSlot = false
    /// WebSocket frames or Server-Sent Events: which bytes of a record the shard writes.
    let transport: ConnectionTransport
    /// Bytes written since the last flush. NIO counts unflushed bytes as queued too, so a large batch
    /// is flushed in slices: writability then measures what the peer has not taken, not our batching.
    var unflushedBytes = 0

    init(
        id: UInt64, identity: Identity, channel: any Channel, openedAt: Int64, limits: ConnectionStateMachine<ByteBuffer>.Limits,
        accounts: ConnectionAccounts, slot: AdmissionSlot? = nil, resuming: Bool = false, transport: ConnectionTransport = .webSocket
    ) {
        self.transport = transport
        self.id = id
        // Ids decoded from JSON live in heap storage; a copy of a short one fits in the String
        // itself (up to 15 UTF-8 bytes), which saves an allocation per connection.
        self.userID = String(decoding: Array(identity.userID.utf8), as: UTF8.self)
        self.deviceID = identity.deviceID
        self.allowedChannels = identity.channels
        self.channel = channel
        self.openedAt = openedAt
        self.accounts = accounts
        let handedOver = slot?.handOver()
        // The place goes back to `accounts.admission`: it must be the count the slot was taken from.
        precondition(handedOver == nil || handedOver === accounts.admission, "an admission slot from another node's count")
        self.holdsSlot = handedOver != nil
        self.lifecycle = ConnectionStateMachine(limits: limits, expiresAt: identity.expiresAt, resuming: resuming)
    }

    var isClosing: Bool { lifecycle.isClosing }

    /// No token: the connection follows only channels of namespaces open to anonymous connections.
    var isAnonymous: Bool { userID.isEmpty }

    /// Sends a message frame that is not a live record (the welcome, an `error` frame) in its place
    /// among the messages.
    func send(_ frame: ByteBuffer, now: Int64) {
        carryOut(lifecycle.offer(frame, stream: nil, offset: 0, now: now), frame)
    }

    /// Answers a ping.
    func sendPong(_ frame: ByteBuffer, now: Int64) {
        carryOut(lifecycle.pong(frame, now: now), frame)
    }

    /// Sends a close frame and closes the connection (once; later calls do nothing).
    func close(_ disconnect: Disconnect) {
        channel.eventLoop.preconditionInEventLoop()
        if case .close(let disconnect) = lifecycle.close(disconnect) { sendClose(disconnect) }
    }

    /// Carries out what the lifecycle decided for `frame`.
    func carryOut(_ offer: ConnectionStateMachine<ByteBuffer>.Offer, _ frame: ByteBuffer) {
        switch offer {
        case .write: channel.writeAndFlush(frame, promise: nil)
        case .queued: observeQueued()
        case .dropped: break
        case .close(let disconnect): sendClose(disconnect)
        }
    }

    /// Writes what waits while the socket takes it.
    func drain(now: Int64) {
        var wrote = false
        while channel.isWritable, let frame = lifecycle.nextFrameToWrite() {
            channel.write(frame, promise: nil)
            wrote = true
        }
        if wrote { channel.flush() }
        lifecycle.finishedWriting(socketWritable: channel.isWritable, now: now)
    }

    func writabilityChanged(now: Int64) {
        if channel.isWritable {
            lifecycle.socketBecameWritable(now: now)
            drain(now: now)
        } else if let disconnect = lifecycle.socketBecameUnwritable(now: now) {
            sendClose(disconnect)
        } else {
            observeQueued()
        }
    }

    /// What the node really holds for this connection now (the lifecycle's queue and the socket's
    /// buffer as NIO counts it), for the node's statistics; read only where something queued.
    private func observeQueued() {
        let buffered = (try? channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
        accounts.outbound.observe(lifecycle.queuedBytes + buffered)
    }

    /// The channel is gone: gives the admission slot back and says how the connection ended.
    func closed() -> (byServer: Bool, code: UInt16) {
        giveSlotBack()
        return lifecycle.channelClosed()
    }

    private func giveSlotBack() {
        if holdsSlot { accounts.admission?.returnSlot() }
        holdsSlot = false
    }

    deinit { giveSlotBack() }

    /// Writes a close frame and closes the channel: once the frame is written when the disconnect
    /// fails the connection, else when the peer answers (the handler sees it). `grace` bounds both,
    /// for a peer that stopped reading.
    func sendClose(_ disconnect: Disconnect) {
        if disconnect.code == .slowConsumer { accounts.outbound.slowConsumerClosed() }
        Self.sendClose(on: channel, disconnect)
    }

    static func sendClose(on channel: any Channel, _ disconnect: Disconnect, grace: TimeAmount = .seconds(3)) {
        let written = channel.writeAndFlush(ServerFrame.close(code: disconnect.code.rawValue, reason: disconnect.reason))
        if disconnect.failsConnection { written.whenComplete { _ in channel.close(promise: nil) } }
        channel.eventLoop.scheduleTask(in: grace) { channel.close(promise: nil) }
    }

    /// The session id clients see (`welcome.session`, `herald-exclude`).
    public var sessionID: String { Self.sessionID(id) }

    static func sessionID(_ id: UInt64) -> String {
        let hex = String(id, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    static func parseSessionID(_ text: String) -> UInt64? {
        guard text.utf8.count == 16 else { return nil }
        return UInt64(text, radix: 16)
    }
}
