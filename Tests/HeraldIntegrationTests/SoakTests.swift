import Foundation
import Testing

/// The soak in short: `herald-bench soak` against a node process for under a minute. The few-minutes
/// run whose figures docs/benchmarks.md records is the same command with `--seconds 180`.
@Suite("Soak: well-behaved devices beside hostile clients")
struct SoakTests {
    /// The node's settings for a soak (docs/benchmarks.md shows them): a small outbound budget and a
    /// short slow-consumer window so that the never-reading clients are closed within seconds, a replay
    /// bound above the 5 MB they resume (more than the node's socket buffer takes, so that the node's
    /// own queue fills) that bounds what one of them can make the node hold, a second API key for the
    /// hostile batches, and a push rate the hostile key exceeds.
    static let environment = [
        "HERALD_OUTBOUND_CAP": "65536", "HERALD_SLOW_CONSUMER_SECONDS": "2", "HERALD_REPLAY_MAX_BYTES": "8388608",
        "HERALD_PUSH_RATE": "200", "HERALD_MAX_PUSH_RECORDS": "2000", "HERALD_API_KEYS": "\(testAPIKey),hostile-api-key",
    ]

    @Test(
        "200 devices receive every acknowledged push exactly once and in order while never-reading resumes, ping and publish floods, tokenless handshakes and giant batches are refused or closed with the contract's codes; the node's counters stay within budget and its connections return to zero"
    )
    func shortSoak() async throws {
        let node = try await NodeProcesses.start(environment: Self.environment)
        defer { node.stop() }
        let apiPort = try await node.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#)
        let (status, output) = try await runBench(
            [
                "soak", "--port", String(node.port), "--api-port", apiPort, "--kafka-brokers", node.bootstrap,
                "--api-key", testAPIKey, "--hostile-api-key", "hostile-api-key", "--jwt-secret", testSecret,
                "--node-pid", String(node.node.process.processIdentifier), "--connections", "200", "--seconds", "40",
                "--push-rate", "40", "--produce-rate", "40", "--hold-seconds", "15", "--handshake-rate", "100",
                "--max-push-records", "2000", "--source-addresses", "8", "--json",
            ],
            limit: .seconds(110)
        )
        #expect(status == 0, "\(output)")
        let result = try benchResult(output, mode: "soak")
        let int = { (key: String) in (result[key] as? NSNumber)?.intValue ?? -1 }

        // The well-behaved devices: nothing missed, nothing twice, nothing out of order, nobody closed.
        #expect(int("acknowledged") > 1_000, "\(output)")
        #expect(int("missing") == 0, "\(output)")
        #expect(int("duplicated") == 0, "\(output)")
        #expect(int("out_of_order") == 0, "\(output)")
        #expect(int("devices_closed") == 0, "\(output)")
        #expect(int("push_failures") == 0, "\(output)")
        // Liveness only (the figure is reported, not judged): every push arrived within half a minute.
        #expect((0..<30_000).contains(int("delivery_max_ms")), "\(output)")

        // The hostile ones: refused or closed with the contract's codes, and only those.
        let outcomes = (result["outcomes"] as? [String: NSNumber] ?? [:]).mapValues(\.intValue)
        func of(_ actor: String) -> [String: Int] {
            outcomes.filter { $0.key.hasPrefix(actor + ".") }.reduce(into: [:]) { $0[String($1.key.dropFirst(actor.count + 1))] = $1.value }
        }
        // A never-reading client that floods pings sees its socket end (the node's close frame is lost
        // when the flood meets the closed socket, which resets it), or reads the 4008; the node's own
        // count says each of those ends was a 4008.
        #expect(!of("never-read").isEmpty && Set(of("never-read").keys).isSubset(of: ["4008", "none"]), "\(outcomes)")
        #expect(!of("ping-flood").isEmpty && Set(of("ping-flood").keys).isSubset(of: ["4008", "none"]), "\(outcomes)")
        let neverReadingEnds = of("never-read").values.reduce(0, +) + of("ping-flood").values.reduce(0, +)
        let serverCloses = (result["server_closes"] as? [String: NSNumber] ?? [:]).mapValues(\.intValue)
        #expect((serverCloses["4008"] ?? 0) >= neverReadingEnds, "\(serverCloses) for \(outcomes)")
        #expect((serverCloses["1008"] ?? 0) >= of("publish-flood").filter { $0.key != "slow-down" }.values.reduce(0, +), "\(serverCloses) for \(outcomes)")
        #expect(Set(of("slow-reader").keys).isSubset(of: ["4008", "none", "kept-up"]), "\(outcomes)")
        #expect((of("publish-flood")["slow-down"] ?? 0) >= 1 && (of("publish-flood")["1008"] ?? 0) >= 1, "\(outcomes)")
        #expect(Set(of("publish-flood").keys).isSubset(of: ["slow-down", "1008", "none"]), "\(outcomes)")
        #expect((of("handshake")["401"] ?? 0) >= 1 && Set(of("handshake").keys).isSubset(of: ["401", "429"]), "\(outcomes)")
        #expect((of("batch")["413"] ?? 0) >= 1 && Set(of("batch").keys) == ["413"], "\(outcomes)")
        #expect((of("rate")["429"] ?? 0) >= 1 && Set(of("rate").keys).isSubset(of: ["202", "429", "503"]), "\(outcomes)")
        // A device reconnecting during the tokenless flood was never refused for it.
        #expect((of("churn")["101"] ?? 0) >= 1 && Set(of("churn").keys) == ["101"], "\(outcomes)")

        // The node's own counters: within budget, and everything given back.
        let closes = (result["server_closes"] as? [String: NSNumber] ?? [:]).mapValues(\.intValue)
        #expect(closes["1012"] == 0, "nobody was closed for the node falling behind Kafka: \(closes)")
        #expect(int("slow_consumer_closes") >= 1, "\(output)")
        // One connection's queue: its replay (bounded at 8 MiB), the 64 KiB budget, one frame more.
        #expect((0...(8_388_608 + 65_536 + 65_536)).contains(int("peak_queued_bytes")), "\(output)")
        #expect(int("node_connections_peak") >= 200, "\(output)")
        #expect(int("node_connections_after") == 0, "every connection's admission slot was given back: \(output)")
        #expect(int("node_connections_gauge_after") == 0, "\(output)")
    }
}
