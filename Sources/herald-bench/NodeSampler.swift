import ArgumentParser
import Foundation
import NIOCore
import Synchronization

/// The node under test seen from outside, once a second: its resident memory and CPU time from /proc
/// (when its pid is given) and its own counters from `GET /v1/node`.
final class NodeSampler: Sendable {
    struct Sample: Sendable {
        var seconds: Double
        var residentBytes: Int?
        var cpuSeconds: Double?
        var connections: Int?
        var peakQueuedBytes: Int?
        var slowConsumerCloses: Int?
        var hotWindowBytes: Int?
    }

    private let samples = Mutex<[Sample]>([])
    let pid: Int32?
    let connection: HTTPLoadConnection
    let apiKey: String

    init(pid: Int32?, connection: HTTPLoadConnection, apiKey: String) {
        self.pid = pid
        self.connection = connection
        self.apiKey = apiKey
    }

    var all: [Sample] { samples.withLock { $0 } }

    /// Samples until `until`, once a second.
    func run(from start: ContinuousClock.Instant, until deadline: ContinuousClock.Instant) async {
        while ContinuousClock.now < deadline {
            await sample(since: start)
            try? await Task.sleep(for: .seconds(1))
        }
    }

    @discardableResult
    func sample(since start: ContinuousClock.Instant) async -> Sample {
        var sample = Sample(seconds: (ContinuousClock.now - start).seconds)
        if let pid {
            sample.residentBytes = residentBytes(pid: pid)
            sample.cpuSeconds = Self.cpuSeconds(pid: pid)
        }
        if let status = try? await status() {
            sample.connections = status["connections"] as? Int
            let outbound = status["outbound"] as? [String: Any]
            sample.peakQueuedBytes = outbound?["peak_queued_bytes"] as? Int
            sample.slowConsumerCloses = outbound?["slow_consumer_closes"] as? Int
            sample.hotWindowBytes = (status["hot_window"] as? [String: Any])?["bytes"] as? Int
        }
        samples.withLock { $0.append(sample) }
        return sample
    }

    func status() async throws -> [String: Any] {
        let (status, body) = try await connection.send(ByteBuffer(string: "GET /v1/node HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer \(apiKey)\r\n\r\n"))
        guard status == 200, let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            throw ValidationError("GET /v1/node answered \(status): \(body)")
        }
        return object
    }

    /// The sum of a Prometheus metric's samples whose labels include every `label="value"` given.
    func metric(_ name: String, _ labels: [String: String] = [:]) async throws -> Double {
        let (status, text) = try await connection.send(ByteBuffer(string: "GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n"))
        guard status == 200 else { throw ValidationError("GET /metrics answered \(status)") }
        var sum = 0.0
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let rest = line.dropFirst(name.count)
            guard rest.first == "{" || rest.first == " " else { continue }
            guard labels.allSatisfy({ line.contains("\($0.key)=\"\($0.value)\"") }) else { continue }
            sum += Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return sum
    }

    /// User plus system CPU time of a process, from /proc/PID/stat (fields 14 and 15, in clock ticks).
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // After "pid (comm)" the fields start at 3 (state); utime is 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
