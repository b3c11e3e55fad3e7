import Foundation
import HeraldClient
import HeraldGateway
import NIOCore
import Synchronization

/// Many idle WebSocket connections to a node, one user each, spread over loopback source addresses;
/// every text frame after the welcome is timed, for broadcast rounds.
final class ConnectionFleet: Sendable {
    private struct State {
        var connections: [WebSocketClientConnection] = []
        /// Arrival times in nanoseconds of the system's monotonic clock, which every process on the
        /// machine shares: a coordinator can compare them with its own push time.
        var arrivals: [UInt64] = []
        var closed = 0
    }

    private let state = Mutex(State())
    /// Called with each message frame's text (after the welcome); the default records its arrival time.
    private let onMessage: (@Sendable (String) -> Void)?

    init(onMessage: (@Sendable (String) -> Void)? = nil) {
        self.onMessage = onMessage
    }

    var count: Int { state.withLock { $0.connections.count } }
    var closedCount: Int { state.withLock { $0.closed } }

    /// Opens `count` connections, `concurrency` handshakes at a time, retrying refusals with
    /// `Retry-After` as a well-behaved client would. Calls `progress` now and then.
    /// `ports`: connections are spread over them round-robin (several nodes on one machine); `rate`:
    /// handshakes started per second at most (0: as fast as `concurrency` allows).
    func open(
        count: Int, host: String, port: Int, secret: String, sourceAddresses: Int, concurrency: Int,
        group: any EventLoopGroup, ports: [Int] = [], rate: Double = 0,
        user: (Int) -> String = { "bench-\($0)" }, progress: @Sendable (Int) -> Void
    ) async throws -> Duration {
        let ports = ports.isEmpty ? [port] : ports
        let issuer = try await TokenIssuer(hmacSecret: secret)
        let expiry = Date().addingTimeInterval(6 * 3_600)
        var tokens: [String] = []
        tokens.reserveCapacity(count)
        for index in 0..<count {
            tokens.append(try await issuer.token(user: user(index), device: "d\(index)", expiresAt: expiry))
        }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group2 in
            var next = 0
            func add() {
                let index = next
                next += 1
                let token = tokens[index]
                // Spread over 127.0.0.2…: one source address slows down past ~14k connections.
                let source = sourceAddresses > 0 ? "127.0.0.\(2 + index % min(sourceAddresses, 250))" : nil
                let target = ports[index % ports.count]
                let notBefore = rate > 0 ? start + .milliseconds(Int(Double(index) * 1_000 / rate)) : start
                group2.addTask {
                    if rate > 0 { try await Task.sleep(until: notBefore) }
                    try await self.connectOne(host: host, port: target, token: token, source: source, group: group)
                }
            }
            while next < min(concurrency, count) { add() }
            var done = 0
            while try await group2.next() != nil {
                done += 1
                if done % 1_000 == 0 { progress(done) }
                if next < count { add() }
            }
        }
        return ContinuousClock.now - start
    }

    private func connectOne(host: String, port: Int, token: String, source: String?, group: any EventLoopGroup) async throws {
        while true {
            do {
                let connection = try await WebSocketClientConnection.connect(
                    host: host, port: port, path: "/v1/ws", headers: [("Authorization", "Bearer \(token)")],
                    group: group, sourceAddress: source, observer: { [self] event in self.observe(event) }
                )
                state.withLock { $0.connections.append(connection) }
                return
            } catch let refused as HandshakeRejected where refused.status == 429 || refused.status == 503 {
                try await Task.sleep(for: .seconds(Double(refused.header("Retry-After").flatMap(Int.init) ?? 1)))
            }
        }
    }

    private func observe(_ event: WebSocketClientConnection.Event) {
        switch event {
        case .text(let text):
            guard !text.hasPrefix(#"{"type":"welcome""#) else { return }
            if let onMessage { return onMessage(text) }
            let now = DispatchTime.now().uptimeNanoseconds
            state.withLock { $0.arrivals.append(now) }
        case .closed:
            state.withLock { $0.closed += 1 }
        case .binary, .pong:
            break
        }
    }

    /// Forgets the arrivals so far (before a round).
    func resetArrivals() {
        state.withLock { $0.arrivals.removeAll(keepingCapacity: true) }
    }

    /// Waits until `expected` arrivals or `limit`, and returns them.
    func waitForArrivals(_ expected: Int, limit: Duration) async throws -> [UInt64] {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if state.withLock({ $0.arrivals.count }) >= expected { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        return state.withLock { $0.arrivals }
    }

    func closeAll() {
        for connection in state.withLock({ $0.connections }) {
            connection.channel.close(promise: nil)
        }
    }
}

/// Resident memory of a process, in bytes, from /proc.
func residentBytes(pid: Int32) -> Int? {
    guard let statm = try? String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8) else { return nil }
    let fields = statm.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let index = min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))
    return sorted[index]
}
