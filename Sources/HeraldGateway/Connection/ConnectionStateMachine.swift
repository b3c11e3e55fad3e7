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

    // Stored with the small fields together: an idle connection carries this whole value.
    let limits: Limits
    /// Unix milliseconds: the token's `exp`. Nothing is delivered at or after it.
    let expiresAt: Int64
    /// Frames held during a fetch, or queued behind a replay or an unwritable socket, in write order.
    private var queue: [Queued] = []
    private var queueHead = 0
    /// At most one pong waits: a later ping's answer replaces an earlier one (RFC 6455 §5.5.3).
    private var pendingPong: Frame?
    /// Bytes in `queue` (from `queueHead`) and `pendingPong`.
    private(set) var queuedBytes = 0
    /// Streams whose client is ahead of this node: live records up to the offset are ones it has.
    private var skipThrough: [HeraldStream: Int64] = [:]
    /// Since when the connection has been over its budget with no progress (Unix milliseconds), or
    /// `notStalled`.
    private var stalledSince = Self.notStalled
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
            if state != .resuming, !skipThrough.isEmpty, let through = skipThrough[stream], offset <= through { return .dropped }
        }
        if state == .live, socketWritable, queueIsEmpty { return .write }
        queue.append(Queued(frame: frame, stream: stream, offset: offset))
        queuedBytes += frame.byteCount
        return checkBudget(now: now).map { .close($0) } ?? .queued
    }

    /// The answer to a ping: written at once, ahead of queued messages (control frames may be), or, if
    /// the socket is full, kept as the one pong that waits.
    mutating func pong(_ frame: Frame, now: Int64) -> Offer {
        guard !isClosing else { return .dropped }
        if socketWritable, pendingPong == nil { return .write }
        queuedBytes += frame.byteCount - (pendingPong?.byteCount ?? 0)
        pendingPong = frame
        return checkBudget(now: now).map { .close($0) } ?? .queued
    }

    /// The next frame to write while the socket is writable: the waiting pong, then the queue. Nothing
    /// while a replay is fetched.
    mutating func nextFrameToWrite() -> Frame? {
        if isClosing { return nil }
        if let pong = pendingPong {
            pendingPong = nil
            queuedBytes -= pong.byteCount
            return pong
        }
        guard state != .resuming, !queueIsEmpty else { return nil }
        while queueHead < queue.count {
            let next = queue[queueHead]
            queueHead += 1
            queuedBytes -= next.frame.byteCount
            if !skipThrough.isEmpty, let stream = next.stream, let through = skipThrough[stream], next.offset <= through { continue }
            compactQueueIfDrained()
            return next.frame
        }
        compactQueueIfDrained()
        return nil
    }

    /// The caller wrote what `nextFrameToWrite` gave while the socket took it: a replay that is all
    /// written hands over to live delivery.
    mutating func finishedWriting(socketWritable writable: Bool, now: Int64) {
        socketWritable = writable
        if state == .pacing, queueIsEmpty, pendingPong == nil { state = .live }
        updateStall(now: now, progressed: false)
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
        skipThrough.merge(skip) { max($0, $1) }
        var ahead: [Queued] = []
        ahead.reserveCapacity(replay.count + 1)
        if let first { ahead.append(Queued(frame: first, stream: nil, offset: 0)) }
        for frame in replay { ahead.append(Queued(frame: frame, stream: nil, offset: 0)) }
        var bytes = 0
        for entry in ahead { bytes += entry.frame.byteCount }
        queue.replaceSubrange(queue.startIndex..<queueHead, with: [])
        queueHead = 0
        queue.insert(contentsOf: ahead, at: 0)
        queuedBytes += bytes
        state = .pacing
        return checkBudget(now: now)
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
        if stalledSince != Self.notStalled, now - stalledSince >= limits.slowWindowMillis, case .close(let disconnect) = close(.slowConsumer) {
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

    private var queueIsEmpty: Bool { queueHead == queue.count }

    private mutating func checkBudget(now: Int64) -> Disconnect? {
        if countedBytes > limits.hardLimitBytes, case .close(let disconnect) = close(.slowConsumerOverflow) { return disconnect }
        updateStall(now: now, progressed: false)
        return nil
    }

    /// Starts the window when the connection goes over its budget, restarts it on progress, and ends
    /// it when the connection is back under.
    private mutating func updateStall(now: Int64, progressed: Bool) {
        let over = !socketWritable || queuedBytes > limits.budgetBytes
        if !over {
            stalledSince = Self.notStalled
        } else if stalledSince == Self.notStalled || progressed {
            stalledSince = now
        }
    }

    private mutating func discardQueue() {
        queue = []
        queueHead = 0
        pendingPong = nil
        queuedBytes = 0
        stalledSince = Self.notStalled
    }

    private mutating func compactQueueIfDrained() {
        if queueHead == queue.count {
            queue.removeAll(keepingCapacity: queue.count <= 64)
            queueHead = 0
        } else if queueHead > 1_024, queueHead * 2 > queue.count {
            queue.removeSubrange(0..<queueHead)
            queueHead = 0
        }
    }
}
