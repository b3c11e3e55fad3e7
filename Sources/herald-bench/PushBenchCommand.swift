import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// U users × D devices connected; C concurrent HTTP pushes for T seconds, each to one random user.
/// Reports requests per second, request latency (push → Kafka ack → answer) and end-to-end latency
/// (push → each device), and checks that every device got every push to its user.
struct PushBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "U users × D devices, C concurrent pushes for T seconds: requests/s, latencies, every delivery checked."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Option(help: "Users.") var users = 1_000
    @Option(help: "Devices (connections) per user.") var devices = 10
    /// Not `--concurrency`: that is the fleet's handshakes in flight (FleetOptions), as in every mode.
    @Option(help: "Concurrent HTTP requests.") var pushConcurrency = 64
    @Option(help: "Seconds of pushing.") var seconds = 20
    @Option(help: "The API's port.") var apiPort = 8081
    @Option(help: "API key. Env: HERALD_API_KEY.") var apiKey: String?
    @Option(help: "Payload bytes per push.") var payloadBytes = 100

    func run() async throws {
        let secret = try fleetOptions.secret
        guard let key = apiKey ?? ProcessInfo.processInfo.environment["HERALD_API_KEY"] else {
            throw ValidationError("--api-key or HERALD_API_KEY is required")
        }
        let json = fleetOptions.json
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let tracker = DeliveryTracker()
        let fleet = ConnectionFleet(onMessage: { text in tracker.received(text) })
        let devices = self.devices
        _ = try await fleet.open(
            count: users * devices, host: fleetOptions.host, port: fleetOptions.port, secret: secret,
            sourceAddresses: fleetOptions.sourceAddresses, concurrency: fleetOptions.concurrency, group: group,
            user: { "user-\($0 / devices)" }, progress: { done in if !json { progressLine("connected \(done)") } }
        )
        if !json { FileHandle.standardError.write(Data("\n".utf8)) }

        let padding = String(repeating: "p", count: max(0, payloadBytes - 40))
        let deadline = ContinuousClock.now + .seconds(seconds)
        let stats = PushStats()
        // Ids unique to this run: the node remembers ids for five minutes and would not produce a repeat.
        let run = UUID().uuidString.prefix(8)
        let (host, apiPort, users) = (fleetOptions.host, apiPort, users)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for worker in 0..<pushConcurrency {
                tasks.addTask {
                    let connection = try await HTTPLoadConnection.connect(host: host, port: apiPort, group: group)
                    defer { connection.close() }
                    var sequence = 0
                    while ContinuousClock.now < deadline {
                        sequence += 1
                        let id = "\(run)-\(worker)-\(sequence)"
                        let user = "user-\(Int.random(in: 0..<users))"
                        let body = #"{"to":{"users":["\#(user)"]},"id":"\#(id)","data":{"p":"\#(padding)"}}"#
                        let request = ByteBuffer(string: "POST /v1/push HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
                        let sent = ContinuousClock.now
                        tracker.pushed(id, at: sent, expecting: devices)
                        let (status, _) = try await connection.send(request)
                        let elapsed = (ContinuousClock.now - sent).seconds * 1_000
                        if status == 202 {
                            stats.latencies.withLock { $0.append(elapsed) }
                        } else {
                            stats.failures.add(1, ordering: .relaxed)
                            tracker.forget(id)
                        }
                    }
                }
            }
            try await tasks.waitForAll()
        }
        let elapsed = (ContinuousClock.now - start).seconds
        // Let the last deliveries land.
        try await Task.sleep(for: .seconds(3))
        let report = tracker.report()
        let sorted = stats.latencies.withLock { $0 }.sorted()
        let failed = stats.failures.load(ordering: .relaxed)
        let rate = Double(sorted.count) / elapsed
        let endToEnd = report.latencies.sorted()
        if json {
            print(#"{"bench":"push","users":\#(users),"devices":\#(devices),"concurrency":\#(pushConcurrency),"seconds":\#(seconds),"requests_per_second":\#(Int(rate)),"request_p50_ms":\#(percentile(sorted, 0.5)),"request_p99_ms":\#(percentile(sorted, 0.99)),"delivery_p50_ms":\#(percentile(endToEnd, 0.5)),"delivery_p99_ms":\#(percentile(endToEnd, 0.99)),"failed_requests":\#(failed),"deliveries":\#(report.delivered),"missing_deliveries":\#(report.missing)}"#)
        } else {
            print("users \(users) × devices \(devices), \(pushConcurrency) concurrent pushes for \(seconds) s")
            print(String(format: "accepted pushes          %8d (%.0f per second), failed %d", sorted.count, rate, failed))
            print(String(format: "request latency          p50 %.1f ms, p99 %.1f ms (push → Kafka ack → 202)", percentile(sorted, 0.5), percentile(sorted, 0.99)))
            print(String(format: "delivery latency         p50 %.1f ms, p99 %.1f ms (push → each device)", percentile(endToEnd, 0.5), percentile(endToEnd, 0.99)))
            print("deliveries               \(report.delivered), missing \(report.missing), duplicated \(report.duplicated)")
        }
        fleet.closeAll()
        try await group.shutdownGracefully()
    }
}

final class PushStats: Sendable {
    let latencies = Mutex<[Double]>([])
    let failures = Atomic<Int>(0)
}

/// Every push's expected deliveries, and when each arrived.
final class DeliveryTracker: Sendable {
    private struct Expected {
        var sent: ContinuousClock.Instant
        var remaining: Int
    }

    private struct State {
        var expected: [String: Expected] = [:]
        var latencies: [Double] = []
        var delivered = 0
        var duplicated = 0
        var unknown: [String: Int] = [:]
    }

    private let state = Mutex(State())

    func pushed(_ id: String, at sent: ContinuousClock.Instant, expecting count: Int) {
        state.withLock { state in
            // A delivery can beat the HTTP answer: count what arrived before the push was recorded.
            let early = state.unknown.removeValue(forKey: id) ?? 0
            state.expected[id] = Expected(sent: sent, remaining: count - early)
        }
    }

    func forget(_ id: String) {
        _ = state.withLock { $0.expected.removeValue(forKey: id) }
    }

    func received(_ text: String) {
        guard let range = text.range(of: #""id":""#), let end = text[range.upperBound...].firstIndex(of: "\"") else { return }
        let id = String(text[range.upperBound..<end])
        let now = ContinuousClock.now
        state.withLock { state in
            state.delivered += 1
            guard var entry = state.expected[id] else {
                state.unknown[id, default: 0] += 1
                return
            }
            if entry.remaining <= 0 { state.duplicated += 1; return }
            entry.remaining -= 1
            state.latencies.append((now - entry.sent).seconds * 1_000)
            state.expected[id] = entry
        }
    }

    func report() -> (delivered: Int, missing: Int, duplicated: Int, latencies: [Double]) {
        state.withLock { state in
            let missing = state.expected.values.reduce(0) { $0 + max(0, $1.remaining) }
            return (state.delivered, missing, state.duplicated, state.latencies)
        }
    }
}
