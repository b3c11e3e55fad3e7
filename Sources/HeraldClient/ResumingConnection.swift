import Foundation
public import HeraldCore
import Synchronization

/// A connection to Herald that stays connected: the Swift counterpart of `clients/js/herald.js`.
///
/// It reconnects after a drop with full-jitter backoff, as the close code says (`ReconnectPolicy`).
/// It keeps a cursor (the last offset of every stream it follows) and resumes from it on every
/// reconnect, to any node, so its `events` carry each message of its streams once, in order. A token
/// provider is asked before every attempt, so an expired token (4009) is replaced, and ahead of the
/// token's `exp` while connected: the new token goes to the node in a `refresh`, and the connection
/// stays open past the old `exp`.
public final class ResumingConnection: Sendable {
    public enum State: String, Sendable {
        case connecting, open, reconnecting, closed
    }

    public enum Event: Sendable, Equatable {
        case state(State)
        case welcome(ServerEvent.Welcome)
        case message(ServerEvent.Message)
        /// The node could not replay what was missed (`recovered:false`): resynchronise from the backend.
        case resync(reason: String)
        case error(code: String, message: String)
        /// Kafka took the publish sent with `id` (see `ServerEvent.published`).
        case published(id: String, stream: String?, offset: Int64?)
        /// The publish sent with `id` failed; send it again with the same id.
        case publishFailed(id: String, code: String, message: String)
        /// The node took a refreshed token: the connection now expires at `expiresAt` (Unix ms).
        case refreshed(expiresAt: Int64)
        /// The connection ended; `action` says what happens next.
        /// The answer to a `history` request (`ServerEvent.history`).
        case history(ServerEvent.History)
        case closed(code: UInt16?, action: CloseAction)
    }

    /// The cursor: the epoch of the cluster and, per stream, the last offset seen.
    public struct Cursor: Sendable, Equatable {
        public var epoch: String
        public var positions: [String: Int64]

        public init(epoch: String, positions: [String: Int64]) {
            self.epoch = epoch
            self.positions = positions
        }

        public var text: String { ResumeCursor(positions: positions).text }
    }

    private struct MutableState {
        var cursor: Cursor?
        var stopped = false
        var session: HeraldSession?
        var task: Task<Void, Never>?
        /// The last offset per stream not acked yet, and whether an ack is scheduled.
        var unacked: [String: Int64] = [:]
        var ackScheduled = false
    }

    public let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let client: HeraldClient
    private let token: @Sendable () async throws -> String
    private let channels: [String]
    private let policy: ReconnectPolicy
    private let state: Mutex<MutableState>
    private let ackInterval: Duration?

    /// `cursor`: one saved from an earlier session (`cursor` below), to resume from at once.
    /// `ackInterval`: how often at most the last message of each stream is acked, so the node commits
    /// the device's position (a `device` token then resumes from it without a cursor); nil: no acks.
    public init(
        client: HeraldClient, channels: [String] = [], policy: ReconnectPolicy = ReconnectPolicy(), cursor: Cursor? = nil,
        ackInterval: Duration? = .seconds(1), token: @escaping @Sendable () async throws -> String
    ) {
        self.ackInterval = ackInterval
        (events, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .unbounded)
        self.client = client
        self.token = token
        self.channels = channels
        self.policy = policy
        self.state = Mutex(MutableState(cursor: cursor))
    }

    /// The cursor now: save it to resume a later session where this one stopped.
    public var cursor: Cursor? { state.withLock { $0.cursor } }

    public func start() {
        let task = Task { await self.run() }
        state.withLock { $0.task = task }
    }

    /// Closes for good (no reconnect).
    public func stop() {
        let (session, task) = state.withLock { state in
            state.stopped = true
            return (state.session, state.task)
        }
        session?.close()
        task?.cancel()
    }

    private var isStopped: Bool { state.withLock { $0.stopped } }

    private func run() async {
        var attempt = 0
        var first = true
        while !isStopped, !Task.isCancelled {
            continuation.yield(.state(first ? .connecting : .reconnecting))
            first = false
            let action = await connectOnce(onWelcome: { attempt = 0 })
            guard policy.reconnects(after: action), !isStopped else { break }
            let delay = policy.delay(attempt: attempt, unit: Double.random(in: 0..<1))
            attempt += 1
            try? await Task.sleep(for: delay)
        }
        state.withLock { $0.stopped = true }
        continuation.yield(.state(.closed))
        continuation.finish()
    }

    /// Acks the stream's last offset within the ack interval, with the others waiting then.
    private func scheduleAck(_ stream: String, _ offset: Int64) {
        guard let ackInterval else { return }
        let start = state.withLock { state -> Bool in
            state.unacked[stream] = offset
            guard !state.ackScheduled else { return false }
            state.ackScheduled = true
            return true
        }
        guard start else { return }
        Task {
            try? await Task.sleep(for: ackInterval)
            let (session, pending) = state.withLock { state in
                state.ackScheduled = false
                defer { state.unacked = [:] }
                return (state.session, state.unacked)
            }
            // Without a session they are dropped: the node committed what it had when the socket closed.
            for (stream, offset) in pending.sorted(by: { $0.key < $1.key }) { session?.ack(stream: stream, offset: offset) }
        }
    }

    /// One connection, from the handshake to its end; returns what to do next.
    private func connectOnce(onWelcome: () -> Void) async -> CloseAction {
        let session: HeraldSession
        let expiry: Date?
        do {
            let cursor = state.withLock { $0.cursor }
            let current = try await token()
            expiry = TokenExpiry.of(current)
            session = try await client.connect(
                token: current, channels: channels, cursor: cursor.map(\.text), epoch: cursor?.epoch
            )
        } catch let refused as HandshakeRejected {
            continuation.yield(.error(code: "handshake", message: "\(refused.status) \(refused.body)"))
            // 503/429: the node sheds load; 401: the token provider is asked again next time. Other
            // refusals (403) would repeat: stop.
            if [401, 429, 503].contains(refused.status) {
                if let seconds = refused.header("Retry-After").flatMap(Int.init) { try? await Task.sleep(for: .seconds(seconds)) }
                return .resume
            }
            return .stop
        } catch {
            continuation.yield(.error(code: "transport", message: "\(error)"))
            return .resume
        }
        state.withLock { $0.session = session }
        defer { state.withLock { $0.session = nil } }
        if isStopped { session.close() }
        let refresher = Task { await self.refreshAhead(of: expiry, on: session) }
        defer { refresher.cancel() }
        for await event in session.events {
            switch event {
            case .welcome(let welcome):
                onWelcome()
                state.withLock { state in
                    // Acks of an earlier socket are not this one's to send.
                    state.unacked = [:]
                    var positions = state.cursor?.positions ?? [:]
                    if welcome.recovered == false { positions = [:] }
                    positions.merge(welcome.positions) { _, new in new }
                    state.cursor = Cursor(epoch: welcome.epoch, positions: positions)
                }
                continuation.yield(.welcome(welcome))
                continuation.yield(.state(.open))
                if welcome.recovered == false { continuation.yield(.resync(reason: welcome.reason ?? "")) }
            case .message(let message):
                let fresh = state.withLock { state -> Bool in
                    // The server never repeats a message; this guards against a stale socket all the same.
                    if let last = state.cursor?.positions[message.stream], message.offset <= last { return false }
                    state.cursor?.positions[message.stream] = message.offset
                    return true
                }
                if fresh {
                    scheduleAck(message.stream, message.offset)
                    continuation.yield(.message(message))
                }
            case .error(let code, let message):
                continuation.yield(.error(code: code, message: message))
            case .published(let id, let stream, let offset):
                continuation.yield(.published(id: id, stream: stream, offset: offset))
            case .publishFailed(let id, let code, let message):
                continuation.yield(.publishFailed(id: id, code: code, message: message))
            case .refreshed(let expiresAt):
                continuation.yield(.refreshed(expiresAt: expiresAt))
            case .history(let history):
                continuation.yield(.history(history))
            case .closed(let code, _):
                let action = ReconnectPolicy.action(forClose: code)
                continuation.yield(.closed(code: code, action: action))
                return action
            }
        }
        return .resume
    }

    /// While the session lasts: shortly before the token's `exp`, asks the provider for a new token and
    /// sends it in a `refresh`. A provider that hands back no later `exp` ends the refreshing: the node
    /// then closes with 4009 at the old one, and the reconnect asks the provider again.
    private func refreshAhead(of expiry: Date?, on session: HeraldSession) async {
        var expiry = expiry
        while let current = expiry, !Task.isCancelled {
            let remaining = current.timeIntervalSinceNow
            let wait = max(0, remaining - TokenExpiry.lead(remaining: remaining))
            guard (try? await Task.sleep(for: .milliseconds(Int64(wait * 1_000)))) != nil else { return }
            guard let fresh = try? await token(), let next = TokenExpiry.of(fresh), next > current else { return }
            session.refresh(token: fresh)
            expiry = next
        }
    }
}
