import HeraldCore

/// A frame as the lifecycle sees it: opaque bytes of a known size.
protocol MeasuredFrame {
    var byteCount: Int { get }
}

/// The lifecycle of one connection, and every byte the node queues for it, as one pure value: the
/// handler and the shard report events and carry out the decisions it returns; they decide nothing
/// about the lifecycle themselves. It touches no socket and no clock (times come in as arguments), so
/// the resume contract (no gap, no duplicate across a replay-to-live switch) is unit-testable.
///
/// States:
/// - `live`: frames go to the socket while it is writable; behind an unwritable socket they queue
///   here, in order.
/// - `resuming`: a replay is being fetched; live frames are held.
/// - `pacing`: the welcome, the replay and what was held are written as the socket takes them; live
///   frames queue behind them. Back to `live` once the queue is empty.
/// - `closing`: a close frame was sent (or answered); nothing more is queued.
/// - `closed`: the channel is gone.
///
/// The byte budget: everything queued for the connection (held, queued, a pending pong, and the
/// socket's own buffer, which writability bounds at the budget) counts. Over the budget with no
/// progress for the slow-consumer window, or over the hard limit at any moment, the connection is
/// closed with 4008; a burst that a reader takes within the window closes nothing.
struct ConnectionStateMachine<Frame: MeasuredFrame> {
    /// One instance per node, shared by every connection (a reference costs a connection 8 bytes).
    final class Limits: Sendable {
        /// Bytes a connection may have queued for longer than a moment (the socket's high water mark).
        let budgetBytes: Int
        /// Bytes beyond which the connection is closed at once, however briefly.
        let hardLimitBytes: Int
        /// How long a connection may stay over its budget without the peer reading anything.
        let slowWindowMillis: Int64

        init(budgetBytes: Int, hardLimitBytes: Int, slowWindowMillis: Int64) {
            self.budgetBytes = budgetBytes
            self.hardLimitBytes = hardLimitBytes
            self.slowWindowMillis = slowWindowMillis
        }
    }

    enum State: Equatable {
        case live
        case resuming
        case pacing
        case closing(byServer: Bool, code: UInt16)
        case closed
    }

    /// What to do with a message frame (live or an `error` frame) offered to the connection.
    enum Offer: Equatable {
        /// Write it to the socket now (the caller still holds it: nothing is copied).
        case write
        /// Kept here, in order, behind what is already queued.
        case queued
        /// Not for this connection: closing, or a record the client already has.
        case dropped
        /// Send this close (the queue was discarded).
        case close(Disconnect)
    }

    /// What the periodic tick found.
    enum Tick: Equatable {
        case none
        case sendPing
        case close(Disconnect)
        /// The peer answered no ping for too long: close the socket without a handshake.
        case abort
    }

    /// The client's close frame arrived.
    enum PeerClose: Equatable {
        /// Answer with this code and close once it is written.
        case reply(UInt16)
        /// It answered our close: close now.
        case closeNow
    }

    private struct Queued {
        var frame: Frame
        var stream: HeraldStream?
        var offset: Int64
    }

    /// What waits for the socket: frames held during a fetch or queued behind a replay or an
    /// unwritable socket (in write order), the one waiting pong, the streams whose client is ahead, and
    /// since when the connection has been over its budget with no progress (Unix milliseconds, or
    /// `notStalled`). Kept out of line and only while something waits: an idle connection carries a
    /// nil reference instead. Copied before a change when shared, so the lifecycle stays a value.
    private final class Backlog {
        var queue: [Queued] = []
        var queueHead = 0
        /// At most one pong waits: a later ping's answer replaces an earlier one (RFC 6455 §5.5.3).
        var pendingPong: Frame?
        /// Bytes in `queue` (from `queueHead`) and `pendingPong`.
        var queuedBytes = 0
        /// Live records up to the offset are ones the client has (it came from a node further along).
        var skipThrough: [HeraldStream: Int64] = [:]
        var stalledSince = ConnectionStateMachine.notStalled

        var queueIsEmpty: Bool { queueHead == queue.count }
        var isIdle: Bool { queueIsEmpty && pendingPong == nil && skipThrough.isEmpty && stalledSince == ConnectionStateMachine.notStalled }

        func copy() -> Backlog {
            let copy = Backlog()
            copy.queue = queue
            copy.queueHead = queueHead
            copy.pendingPong = pendingPong
            copy.queuedBytes = queuedBytes
            copy.skipThrough = skipThrough
            copy.stalledSince = stalledSince
            return copy
        }
    }

    // Stored with the small fields together: an idle connection carries this whole value.
    let limits: Limits
    /// Unix milliseconds: the token's `exp` (the last accepted refresh's). Nothing is delivered at or after it.
    private(set) var expiresAt: Int64
    private var waiting: Backlog?
    private static var notStalled: Int64 { .min }
    private(set) var state: State = .live
    private var socketWritable = true
    private var missedPongs: UInt8 = 0

    init(limits: Limits, expiresAt: Int64, resuming: Bool = false) {
        self.limits = limits
        self.expiresAt = expiresAt
        if resuming { state = .resuming }
    }

    var isClosing: Bool {
        switch state {
        case .closing, .closed: true
        case .live, .resuming, .pacing: false
        }
    }

    /// Whether a replay is being fetched or written (a `subscribe` with an offset must wait).
    var isReplaying: Bool { state == .resuming || state == .pacing }

    /// What the budget counts now: queued here, and the socket's buffer (at the budget while unwritable).
    var countedBytes: Int { queuedBytes + (socketWritable ? 0 : limits.budgetBytes) }

    /// Bytes queued here: held, queued, and the waiting pong.
    var queuedBytes: Int { waiting?.queuedBytes ?? 0 }

    // MARK: Outbound frames

    /// A live record for this connection, or (with no stream) an `error` frame, which keeps its place
    /// among the messages.
    mutating func offer(_ frame: Frame, stream: HeraldStream?, offset: Int64, now: Int64) -> Offer {
        switch state {
        case .closing, .closed:
            return .dropped
        case .live, .resuming, .pacing:
            break
        }
        if let stream {
            if now >= expiresAt { return close(.tokenExpired) }
            if state != .resuming, let skip = waiting?.skipThrough, !skip.isEmpty, let through = skip[stream], offset <= through {
                return .dropped
            }
        }
        if state == .live, socketWritable, queueIsEmpty { return .write }
        // Scoped: a reference still held when `checkBudget` changes the backlog would make it look
        // shared, and copy-on-write would copy the whole queue.
        do {
            let backlog = backlog()
            backlog.queue.append(Queued(frame: frame, stream: stream, offset: offset))
            backlog.queuedBytes += frame.byteCount
        }
        return checkBudget(now: now).map { .close($0) } ?? .queued
    }

    /// The answer to a ping: written at once, ahead of queued messages (control frames may be), or, if
    /// the socket is full, kept as the one pong that waits.
    mutating func pong(_ frame: Frame, now: Int64) -> Offer {
        guard !isClosing else { return .dropped }
        if socketWritable, waiting?.pendingPong == nil { return .write }
        do {
            let backlog = backlog()
            backlog.queuedBytes += frame.byteCount - (backlog.pendingPong?.byteCount ?? 0)
            backlog.pendingPong = frame
        }
        return checkBudget(now: now).map { .close($0) } ?? .queued
    }

    /// The next frame to write while the socket is writable: the waiting pong, then the queue. Nothing
    /// while a replay is fetched.
    mutating func nextFrameToWrite() -> Frame? {
        if isClosing || waiting == nil { return nil }
        let backlog = backlog()
        if let pong = backlog.pendingPong {
            backlog.pendingPong = nil
            backlog.queuedBytes -= pong.byteCount
            return pong
        }
        guard state != .resuming, !backlog.queueIsEmpty else { return nil }
        while backlog.queueHead < backlog.queue.count {
            let next = backlog.queue[backlog.queueHead]
            backlog.queueHead += 1
            backlog.queuedBytes -= next.frame.byteCount
            if !backlog.skipThrough.isEmpty, let stream = next.stream, let through = backlog.skipThrough[stream], next.offset <= through {
                continue
            }
            Self.compactIfDrained(backlog)
            return next.frame
        }
        Self.compactIfDrained(backlog)
        return nil
    }

    /// The caller wrote what `nextFrameToWrite` gave while the socket took it: a replay that is all
    /// written hands over to live delivery.
    mutating func finishedWriting(socketWritable writable: Bool, now: Int64) {
        socketWritable = writable
        if state == .pacing, queueIsEmpty, waiting?.pendingPong == nil { state = .live }
        updateStall(now: now, progressed: false)
        dropBacklogIfIdle()
    }

    // MARK: Socket events

    /// The socket's buffer reached the budget (NIO's high water mark).
    mutating func socketBecameUnwritable(now: Int64) -> Disconnect? {
        guard !isClosing else { return nil }
        socketWritable = false
        return checkBudget(now: now)
    }

    /// The peer read enough for the socket's buffer to fall to its low water mark: progress.
    mutating func socketBecameWritable(now: Int64) {
        socketWritable = true
        updateStall(now: now, progressed: true)
        dropBacklogIfIdle()
    }

    /// Any frame from the client shows it is alive.
    mutating func frameReceived() { missedPongs = 0 }

    // MARK: Resume

    /// A replay for `subscribe` with an offset starts: live frames are held until it arrives.
    mutating func startReplay() -> Bool {
        guard state == .live else { return false }
        state = .resuming
        return true
    }

    /// The replay arrived: `first` (the welcome, or a notice) and the replayed frames go before what
    /// was held, minus the records the client already has (`skip`: it came from a node further along).
    mutating func replayArrived(first: Frame?, replay: [Frame], skip: [HeraldStream: Int64], now: Int64) -> Disconnect? {
        guard state == .resuming else { return nil }
        var ahead: [Queued] = []
        ahead.reserveCapacity(replay.count + 1)
        if let first { ahead.append(Queued(frame: first, stream: nil, offset: 0)) }
        for frame in replay { ahead.append(Queued(frame: frame, stream: nil, offset: 0)) }
        var bytes = 0
        for entry in ahead { bytes += entry.frame.byteCount }
        do {
            let backlog = backlog()
            backlog.skipThrough.merge(skip) { max($0, $1) }
            backlog.queue.replaceSubrange(backlog.queue.startIndex..<backlog.queueHead, with: [])
            backlog.queueHead = 0
            backlog.queue.insert(contentsOf: ahead, at: 0)
            backlog.queuedBytes += bytes
        }
        state = .pacing
        return checkBudget(now: now)
    }

    // MARK: Token refresh

    /// A refresh's new token was verified: the connection now expires at its `exp`. False when the
    /// connection is already closing (a 4009 sent is not taken back) or the new token has expired too.
    mutating func refreshed(expiresAt newExpiry: Int64, now: Int64) -> Bool {
        guard !isClosing, newExpiry > now else { return false }
        expiresAt = newExpiry
        return true
    }

    // MARK: Closing

    /// The server closes the connection: the queue is discarded (the client resumes from its
    /// cursor), and the caller sends the close frame. `nil` if it is already closing.
    mutating func close(_ disconnect: Disconnect) -> Offer {
        guard !isClosing else { return .dropped }
        state = .closing(byServer: true, code: disconnect.code.rawValue)
        discardQueue()
        return .close(disconnect)
    }

    /// A close frame from the client with `code` (1000 for an empty one).
    mutating func peerClosed(code: UInt16) -> PeerClose {
        if case .closing = state { return .closeNow }
        if state == .closed { return .closeNow }
        state = .closing(byServer: false, code: code)
        discardQueue()
        return .reply(code)
    }

    /// The channel is gone: what it ended with, for the metrics (code 0: no close frame either way).
    mutating func channelClosed() -> (byServer: Bool, code: UInt16) {
        let ended: (Bool, UInt16)
        switch state {
        case .closing(let byServer, let code): ended = code == 0 ? (false, 0) : (byServer, code)
        case .live, .resuming, .pacing, .closed: ended = (false, 0)
        }
        state = .closed
        discardQueue()
        return ended
    }

    // MARK: Time

    /// The shard's periodic sweep: token expiry, the slow-consumer window, and pings.
    mutating func tick(now: Int64, ping: Bool, missedPongLimit: UInt8) -> Tick {
        guard !isClosing else { return .none }
        if now >= expiresAt, case .close(let disconnect) = close(.tokenExpired) { return .close(disconnect) }
        if let stalledSince = waiting?.stalledSince, stalledSince != Self.notStalled, now - stalledSince >= limits.slowWindowMillis, case .close(let disconnect) = close(.slowConsumer) {
            return .close(disconnect)
        }
        guard ping else { return .none }
        if missedPongs >= missedPongLimit {
            state = .closing(byServer: true, code: 0)
            discardQueue()
            return .abort
        }
        missedPongs += 1
        return socketWritable ? .sendPing : .none
    }

    // MARK: Budget

    private var queueIsEmpty: Bool { waiting?.queueIsEmpty ?? true }

    /// The backlog, to change: made when something first waits, copied first if another value shares it.
    private mutating func backlog() -> Backlog {
        guard waiting != nil else {
            let made = Backlog()
            waiting = made
            return made
        }
        if !isKnownUniquelyReferenced(&waiting!) { waiting = waiting!.copy() }
        return waiting!
    }

    private mutating func dropBacklogIfIdle() {
        if let waiting, waiting.isIdle { self.waiting = nil }
    }

    private mutating func checkBudget(now: Int64) -> Disconnect? {
        if countedBytes > limits.hardLimitBytes, case .close(let disconnect) = close(.slowConsumerOverflow) { return disconnect }
        updateStall(now: now, progressed: false)
        return nil
    }

    /// Starts the window when the connection goes over its budget, restarts it on progress, and ends
    /// it when the connection is back under.
    private mutating func updateStall(now: Int64, progressed: Bool) {
        let over = !socketWritable || queuedBytes > limits.budgetBytes
        let stalledSince = waiting?.stalledSince ?? Self.notStalled
        if !over {
            if stalledSince != Self.notStalled { backlog().stalledSince = Self.notStalled }
        } else if stalledSince == Self.notStalled || progressed {
            backlog().stalledSince = now
        }
    }

    private mutating func discardQueue() {
        waiting = nil
    }

    private static func compactIfDrained(_ backlog: Backlog) {
        if backlog.queueHead == backlog.queue.count {
            backlog.queue.removeAll(keepingCapacity: backlog.queue.count <= 64)
            backlog.queueHead = 0
        } else if backlog.queueHead > 1_024, backlog.queueHead * 2 > backlog.queue.count {
            backlog.queue.removeSubrange(0..<backlog.queueHead)
            backlog.queueHead = 0
        }
    }
}
