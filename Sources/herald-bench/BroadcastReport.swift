import Foundation

/// One broadcast round: every arrival's time after the push was sent (ms, sorted), and the CPU the
/// node and the clients spent from the send to the last arrival.
struct BroadcastRound: Sendable {
    var latencies: [Double]
    var missing: Int
    var nodeCPUSeconds: Double?
    var clientCPUSeconds: Double

    var first: Double { latencies.first ?? 0 }
    var last: Double { latencies.last ?? 0 }
    var p50: Double { percentile(latencies, 0.5) }
    var p99: Double { percentile(latencies, 0.99) }
    var deliveriesPerSecond: Double { last > 0 ? Double(latencies.count) / (last / 1_000) : 0 }
    var nodeMicrosecondsPerDelivery: Double? {
        guard let nodeCPUSeconds, !latencies.isEmpty else { return nil }
        return nodeCPUSeconds * 1e6 / Double(latencies.count)
    }
    var clientMicrosecondsPerDelivery: Double { latencies.isEmpty ? 0 : clientCPUSeconds * 1e6 / Double(latencies.count) }

    var line: String {
        var text = String(format: "%d deliveries, first %.1f ms, p50 %.0f ms, p99 %.0f ms, last %.0f ms, %.0f deliveries/s, missing %d",
                          latencies.count, first, p50, p99, last, deliveriesPerSecond, missing)
        if let node = nodeMicrosecondsPerDelivery { text += String(format: ", node %.1f µs/delivery", node) }
        text += String(format: ", clients %.1f µs/delivery", clientMicrosecondsPerDelivery)
        return text
    }
}

/// What a broadcast run says: the first round (a fresh node's first push) apart, the rest as medians
/// per round, and the percentiles of every delivery of every round, as an outside client counts them.
struct BroadcastReport {
    let rounds: [BroadcastRound]
    let connections: Int

    private var later: [BroadcastRound] { Array(rounds.dropFirst()) }
    private var allLatencies: [Double] { rounds.flatMap(\.latencies).sorted() }
    private var missing: Int { rounds.map(\.missing).reduce(0, +) }

    /// The node's CPU per delivery over the rounds after the first (whole seconds of CPU over all their
    /// deliveries: /proc counts in 10 ms ticks, too coarse for one round alone).
    private var nodeMicrosecondsPerDelivery: Double? {
        let measured = (later.isEmpty ? rounds : later)
        let cpu = measured.compactMap(\.nodeCPUSeconds)
        guard cpu.count == measured.count, !cpu.isEmpty else { return nil }
        let deliveries = measured.map(\.latencies.count).reduce(0, +)
        return deliveries > 0 ? cpu.reduce(0, +) * 1e6 / Double(deliveries) : nil
    }

    private var clientMicrosecondsPerDelivery: Double {
        let measured = (later.isEmpty ? rounds : later)
        let deliveries = measured.map(\.latencies.count).reduce(0, +)
        return deliveries > 0 ? measured.map(\.clientCPUSeconds).reduce(0, +) * 1e6 / Double(deliveries) : 0
    }

    var text: String {
        var lines: [String] = []
        if let first = rounds.first { lines.append("first round: \(first.line)") }
        let rest = later
        if !rest.isEmpty {
            lines.append(String(
                format: "rounds 2-%d, medians: first arrival %.1f ms, p99 %.0f ms, last %.0f ms, %.0f deliveries/s",
                rounds.count, median(rest.map(\.first)), median(rest.map(\.p99)), median(rest.map(\.last)), median(rest.map(\.deliveriesPerSecond))
            ))
        }
        let all = allLatencies
        lines.append(String(format: "all %d deliveries of %d rounds to %d connections: p99 %.0f ms, max %.0f ms, missing %d",
                            all.count, rounds.count, connections, percentile(all, 0.99), all.last ?? 0, missing))
        if let node = nodeMicrosecondsPerDelivery { lines.append(String(format: "node CPU per delivery (rounds after the first): %.1f µs", node)) }
        lines.append(String(format: "client CPU per delivery (rounds after the first): %.1f µs", clientMicrosecondsPerDelivery))
        return lines.joined(separator: "\n")
    }

    func json(processes: Int, payloadBytes: Int, via: String) -> String {
        let rest = later.isEmpty ? rounds : later
        let all = allLatencies
        let first = rounds.first
        var fields: [String] = [
            #""bench":"broadcast""#, #""via":"\#(via)""#, #""connections":\#(connections)"#, #""processes":\#(processes)"#,
            #""rounds":\#(rounds.count)"#, #""payload_bytes":\#(payloadBytes)"#,
            #""first_round_first_ms":\#(round1(first?.first ?? 0))"#, #""first_round_last_ms":\#(round1(first?.last ?? 0))"#,
            #""median_first_ms":\#(round1(median(rest.map(\.first))))"#,
            #""median_last_ms":\#(Int(median(rest.map(\.last))))"#, #""median_p99_ms":\#(Int(median(rest.map(\.p99))))"#,
            #""median_deliveries_per_second":\#(Int(median(rest.map(\.deliveriesPerSecond))))"#,
            #""all_p99_ms":\#(Int(percentile(all, 0.99)))"#, #""all_max_ms":\#(Int(all.last ?? 0))"#,
            #""client_cpu_us_per_delivery":\#(round1(clientMicrosecondsPerDelivery))"#, #""missing":\#(missing)"#,
        ]
        if let node = nodeMicrosecondsPerDelivery { fields.append(#""node_cpu_us_per_delivery":\#(round1(node))"#) }
        return "{" + fields.joined(separator: ",") + "}"
    }

    private func round1(_ value: Double) -> Double { (value * 10).rounded() / 10 }
}
