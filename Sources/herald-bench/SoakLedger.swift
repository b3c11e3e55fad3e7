import Foundation
import HeraldClient
import Synchronization

/// What the soak's well-behaved devices were promised and what they got: every push a producer saw
/// acknowledged (202 from the API, or Kafka's ack for a direct produce), and every message each device
/// received, so that the end can say which were missed, which came twice and which came out of order.
final class SoakLedger: Sendable {
    private struct Device {
        var received: [String: Int] = [:]
        var lastOffset: Int64 = -1
        var outOfOrder = 0
        var closed = false
    }

    private struct State {
        var devices: [Device]
        /// (device, id) of every acknowledged push.
        var acknowledged: [(device: Int, id: String)] = []
        var latencies: [Double] = []
        /// Latencies by the ten seconds they arrived in, counted from `origin`.
        var byTenSeconds: [Int: [Double]] = [:]
        var origin: UInt64 = DispatchTime.now().uptimeNanoseconds
        var epoch: String?
    }

    private let state: Mutex<State>

    init(devices: Int) {
        state = Mutex(State(devices: Array(repeating: Device(), count: devices)))
    }

    var epoch: String? { state.withLock { $0.epoch } }

    /// Counts the ten-second buckets of `Report.p99ByTenSeconds` from now.
    func startClock() {
        state.withLock { $0.origin = DispatchTime.now().uptimeNanoseconds; $0.byTenSeconds = [:] }
    }

    func acknowledged(device: Int, id: String) {
        state.withLock { $0.acknowledged.append((device, id)) }
    }

    /// A device's event, on its connection's event loop. Latency is measured from the send time the
    /// push carries (`"t"`, the system's monotonic clock, which every process on the machine shares).
    func observe(device: Int, _ event: WebSocketClientConnection.Event) {
        switch event {
        case .text(let text):
            guard let parsed = ServerEvent.parse(text) else { return }
            switch parsed {
            case .welcome(let welcome):
                state.withLock { if $0.epoch == nil { $0.epoch = welcome.epoch } }
            case .message(let message):
                let now = DispatchTime.now().uptimeNanoseconds
                let sent = Self.sentAt(message.data)
                state.withLock { state in
                    if message.offset <= state.devices[device].lastOffset { state.devices[device].outOfOrder += 1 }
                    state.devices[device].lastOffset = max(state.devices[device].lastOffset, message.offset)
                    state.devices[device].received[message.id ?? "", default: 0] += 1
                    if let sent, now > sent {
                        let latency = Double(now - sent) / 1e6
                        state.latencies.append(latency)
                        state.byTenSeconds[Int((now &- state.origin) / 10_000_000_000), default: []].append(latency)
                    }
                }
            default:
                break
            }
        case .closed:
            state.withLock { $0.devices[device].closed = true }
        case .binary, .pong:
            break
        }
    }

    /// `{"t":123,...}`: the send time, read without a JSON parser.
    static func sentAt(_ data: String) -> UInt64? {
        guard let range = data.range(of: #""t":"#) else { return nil }
        return UInt64(data[range.upperBound...].prefix { $0.isNumber })
    }

    struct Report {
        var acknowledged: Int
        var delivered: Int
        var missing: Int
        var duplicated: Int
        var outOfOrder: Int
        var closed: Int
        var latencies: [Double]
        /// The 99th percentile of each ten seconds' deliveries, in order.
        var p99ByTenSeconds: [Double]
    }

    func report() -> Report {
        state.withLock { state in
            var missing = 0
            var duplicated = 0
            var delivered = 0
            for (device, id) in state.acknowledged {
                let count = state.devices[device].received[id] ?? 0
                if count == 0 { missing += 1 }
                if count > 1 { duplicated += count - 1 }
                delivered += min(count, 1)
            }
            return Report(
                acknowledged: state.acknowledged.count, delivered: delivered, missing: missing, duplicated: duplicated,
                outOfOrder: state.devices.reduce(0) { $0 + $1.outOfOrder }, closed: state.devices.filter(\.closed).count,
                latencies: state.latencies.sorted(),
                p99ByTenSeconds: state.byTenSeconds.keys.sorted().map { percentile(state.byTenSeconds[$0]!.sorted(), 0.99) }
            )
        }
    }

    /// Whether every acknowledged push has arrived (to stop waiting for stragglers early).
    var complete: Bool {
        state.withLock { state in
            state.acknowledged.allSatisfy { (state.devices[$0.device].received[$0.id] ?? 0) > 0 }
        }
    }
}
