import Foundation
import Testing

/// `herald-bench` is its own executable: these run its cheapest modes briefly, so that the load tool
/// the figures in docs/benchmarks.md come from keeps building, starting its workers and measuring.
@Suite("herald-bench: the load generator apart from the server")
struct BenchToolTests {
    @Test(
        "every herald-bench mode accepts its options: none is named twice (push's --concurrency clashed with the fleet's)",
        arguments: ["connections", "broadcast", "push", "resume", "kafka", "soak"]
    )
    func optionsParse(mode: String) async throws {
        let (status, output) = try await runBench([mode, "--help"], limit: .seconds(30))
        #expect(status == 0, "\(output)")
        #expect(!output.contains("Validation failed"), "\(output)")
        #expect(output.contains("USAGE: herald-bench \(mode)"), "\(output)")
    }

    @Test("herald-bench kafka measures produce and consume on its own embedded Kafka and prints one JSON line")
    func kafka() async throws {
        let (status, output) = try await runBench(
            [
                "kafka", "--records", "2000", "--keys", "100", "--partitions", "2", "--batch", "500", "--runs", "1",
                "--json",
            ]
        )
        #expect(status == 0, "\(output)")
        let result = try benchResult(output, mode: "kafka")
        #expect(result["records"] as? Int == 2_000)
        #expect((result["produce_records_per_second"] as? Int ?? 0) > 0, "\(output)")
        #expect((result["consume_records_per_second"] as? Int ?? 0) > 0, "\(output)")
    }

    @Test(
        "herald-bench broadcast over two worker processes (itself again) reaches every connection of a node, none missing"
    )
    func broadcastWithWorkers() async throws {
        let node = try await NodeProcesses.start()
        defer { node.stop() }
        let (status, output) = try await runBench(
            [
                "broadcast", "--via", "kafka", "--kafka-brokers", node.bootstrap, "--port", String(node.port), "--connections", "40",
                "--processes", "2", "--rounds", "1", "--source-addresses", "4", "--jwt-secret", testSecret, "--json",
            ]
        )
        #expect(status == 0, "\(output)")
        let result = try benchResult(output, mode: "broadcast")
        #expect(result["connections"] as? Int == 40)
        #expect(result["processes"] as? Int == 2)
        #expect(result["missing"] as? Int == 0, "\(output)")
    }
}

extension BenchToolTests {
    @Test("herald-bench broadcast times each round from the HTTP push, reports the first round apart and the node's CPU per delivery")
    func broadcastThroughTheAPI() async throws {
        let node = try await NodeProcesses.start()
        defer { node.stop() }
        let apiPort = try await node.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#)
        let (status, output) = try await runBench(
            [
                "broadcast", "--port", String(node.port), "--api-port", apiPort, "--api-key", testAPIKey, "--connections", "20",
                "--rounds", "3", "--source-addresses", "2", "--jwt-secret", testSecret, "--node-pid", String(node.node.pid), "--json",
            ]
        )
        #expect(status == 0, "\(output)")
        let result = try benchResult(output, mode: "broadcast")
        #expect(result["via"] as? String == "http")
        #expect(result["missing"] as? Int == 0, "\(output)")
        #expect((result["first_round_last_ms"] as? Double ?? 0) > 0, "\(output)")
        #expect((result["median_last_ms"] as? Int).map { $0 >= 0 } == true, "\(output)")
        #expect(result["node_cpu_us_per_delivery"] is Double, "\(output)")
    }
}

extension BenchToolTests {
    @Test("herald-bench push sends through a node's API with --push-concurrency and every device gets every push")
    func push() async throws {
        let node = try await NodeProcesses.start()
        defer { node.stop() }
        let apiPort = try await node.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#)
        let (status, output) = try await runBench(
            [
                "push", "--port", String(node.port), "--api-port", apiPort, "--api-key", testAPIKey, "--users", "4",
                "--devices", "2", "--push-concurrency", "2", "--seconds", "1", "--source-addresses", "4",
                "--jwt-secret", testSecret, "--json",
            ]
        )
        #expect(status == 0, "\(output)")
        let result = try benchResult(output, mode: "push")
        #expect(result["concurrency"] as? Int == 2)
        #expect(result["failed_requests"] as? Int == 0, "\(output)")
        #expect((result["deliveries"] as? Int ?? 0) > 0, "\(output)")
        #expect(result["missing_deliveries"] as? Int == 0, "\(output)")
    }
}

/// Runs `herald-bench` to its end, or stops it after `limit` and fails: its output goes to a file, so
/// that a chatty run cannot block on a full pipe.
func runBench(
    _ arguments: [String], limit: Duration = .seconds(90)
) async throws -> (status: Int32, output: String) {
    let log = FileManager.default.temporaryDirectory.appendingPathComponent(
        "herald-bench-\(UUID().uuidString.prefix(8)).log")
    guard FileManager.default.createFile(atPath: log.path, contents: nil) else {
        throw TestFailure("cannot create \(log.path)")
    }
    defer { try? FileManager.default.removeItem(at: log) }
    let handle = try FileHandle(forWritingTo: log)
    defer { try? handle.close() }
    let process = Process()
    process.executableURL = try builtExecutable("herald-bench")
    process.arguments = arguments
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    let deadline = ContinuousClock.now + limit
    while process.isRunning, ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(100))
    }
    let timedOut = process.isRunning
    if timedOut {
        process.terminate()
        process.waitUntilExit()
    }
    let output = try String(contentsOf: log, encoding: .utf8)
    if timedOut {
        throw TestFailure("herald-bench \(arguments.joined(separator: " ")) did not finish within \(limit):\n\(output)")
    }
    return (process.terminationStatus, output)
}

/// The JSON line a `--json` run prints last, checked to be the given mode's.
func benchResult(_ output: String, mode: String) throws -> [String: Any] {
    guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix(#"{"bench":"\#(mode)""#) }),
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    else {
        throw TestFailure("no {\"bench\":\"\(mode)\",...} line in:\n\(output)")
    }
    return object
}
