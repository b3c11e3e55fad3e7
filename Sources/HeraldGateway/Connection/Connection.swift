import HeraldCore
public import NIOCore

/// One WebSocket connection as its shard and the session registry see it.
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
    public let expiresAt: Int64
    /// Channels the token allows this connection to subscribe to.
    let allowedChannels: Set<String>

    // Loop-confined state.
    var subscriptions: [String] = []
    /// The next connection of the same user on the same shard (the shard's index is a list through here).
    var nextOfUser: Connection?
    var missedPongs: UInt8 = 0
    var isClosing = false
    /// The close code the connection ended with (0: none), and whether the server sent it: for metrics.
    var closeCode: UInt16 = 0
    var closedByServer = false
    /// Bytes written since the last flush. NIO counts unflushed bytes as queued too, so a large batch
    /// is flushed in slices: writability then measures what the peer has not taken, not our batching.
    var unflushedBytes = 0
    /// Set while a resume replays (and, for a client ahead of this node, until it has caught up).
    var resume: ResumeState?

    init(id: UInt64, identity: Identity, channel: any Channel, openedAt: Int64) {
        self.id = id
        // Ids decoded from JSON live in heap storage; a copy of a short one fits in the String
        // itself (up to 15 UTF-8 bytes), which saves an allocation per connection.
        self.userID = String(decoding: Array(identity.userID.utf8), as: UTF8.self)
        self.deviceID = identity.deviceID
        self.allowedChannels = identity.channels
        self.channel = channel
        self.openedAt = openedAt
        self.expiresAt = identity.expiresAt
    }

    /// Sends a close frame and closes the connection: at once when the peer answers with its own close
    /// frame (the handler sees it), else after `grace`, so that a peer that stopped reading cannot hold
    /// the socket.
    /// With `failing` (a protocol violation, RFC 6455 §7.1.7) the TCP connection is closed as soon as
    /// the close frame is written, without waiting for the peer's answer.
    func close(_ code: CloseCode, _ reason: String, failing: Bool = false, grace: TimeAmount = .seconds(3)) {
        channel.eventLoop.preconditionInEventLoop()
        guard !isClosing else { return }
        isClosing = true
        closeCode = code.rawValue
        closedByServer = true
        Self.sendClose(on: channel, code, reason, failing: failing, grace: grace)
    }

    /// Writes a close frame and closes the channel: once the frame is written when failing, else when
    /// the peer answers (the handler sees it). `grace` bounds both, for a peer that stopped reading.
    static func sendClose(on channel: any Channel, _ code: CloseCode, _ reason: String, failing: Bool, grace: TimeAmount = .seconds(3)) {
        let written = channel.writeAndFlush(ServerFrame.close(code: code.rawValue, reason: reason))
        if failing { written.whenComplete { _ in channel.close(promise: nil) } }
        channel.eventLoop.scheduleTask(in: grace) { channel.close(promise: nil) }
    }

    /// Writes what a resume queued while the socket takes it; back to plain live delivery when done.
    func drainResume() {
        guard let resume, !resume.fetching, !isClosing else { return }
        if resume.drain(into: channel), resume.skipThrough.isEmpty { self.resume = nil }
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
