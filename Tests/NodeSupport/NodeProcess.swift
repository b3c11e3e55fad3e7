package import Foundation
import Testing

/// The `herald` executable next to the test bundle (`swift build --build-tests` builds it too), or
/// `HERALD_TEST_EXECUTABLE`: the process tests run against another build that way, to show that a
/// regression test fails without its fix.
package func heraldExecutable() throws -> URL {
    if let override = ProcessInfo.processInfo.environment["HERALD_TEST_EXECUTABLE"], !override.isEmpty {
        return URL(fileURLWithPath: override)
    }
    return try builtExecutable("herald")
}

/// One of the package's executables (`herald`, `herald-bench`) next to the test bundle.
package func builtExecutable(_ name: String) throws -> URL {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<3 {
        let candidate = directory.appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        directory = directory.deletingLastPathComponent()
    }
    let fallback = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug/\(name)")
    guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
        throw TestFailure("the \(name) executable is not built: run swift build --build-tests")
    }
    return fallback
}

/// A `herald` process (a node, or the embedded Kafka alone), its output collected, stopped with
/// SIGTERM at the end.
/// @unchecked Sendable: `output`, appended by the pipe's reader and read by the test, is guarded by `lock`;
/// `process` is configured before `run()` and only queried after.
package final class HeraldProcess: @unchecked Sendable {
    package let process = Process()
    private let lock = NSLock()
    private var output = ""

    package convenience init(_ arguments: [String], environment: [String: String] = [:]) throws {
        try self.init(executable: try heraldExecutable().path, arguments, environment: environment)
    }

    /// Any program, its output collected the same way (chromedriver, for one).
    package init(executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        // Tests stop nodes with SIGTERM: a short drain, unless a test sets its own.
        env["HERALD_DRAIN_SECONDS"] = "1"
        env["HERALD_DRAIN_DELAY_SECONDS"] = "0"
        // A test run inside a Kubernetes pod is not a production node: the tests choose the Kafka they use.
        env["KUBERNETES_SERVICE_HOST"] = nil
        env["HERALD_PRODUCTION"] = nil
        env.merge(environment) { _, new in new }
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.output += String(decoding: data, as: UTF8.self)
            self.lock.unlock()
        }
        try process.run()
    }

    /// Waits for the process to exit; nil if it is still running after `limit`.
    package func exitStatus(within limit: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + limit
        while process.isRunning {
            guard ContinuousClock.now < deadline else { return nil }
            try await Task.sleep(for: .milliseconds(50))
        }
        return process.terminationStatus
    }

    package var text: String {
        lock.lock()
        defer { lock.unlock() }
        return output
    }

    /// Waits until the output matches `pattern` and returns the first capture group.
    package func waitFor(_ pattern: String, within limit: Duration = .seconds(30)) async throws -> String {
        let regex = try NSRegularExpression(pattern: pattern)
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let current = text
            if let match = regex.firstMatch(in: current, range: NSRange(current.startIndex..., in: current)),
               let range = Range(match.range(at: match.numberOfRanges > 1 ? 1 : 0), in: current) {
                return String(current[range])
            }
            guard process.isRunning else { throw TestFailure("herald exited: \(current)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("no /\(pattern)/ within \(limit) in: \(text)")
    }

    package var pid: Int32 { process.processIdentifier }

    /// Resident memory of the process, in bytes.
    package var residentBytes: Int {
        guard let statm = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/statm", encoding: .utf8) else { return 0 }
        let fields = statm.split(separator: " ")
        return (Int(fields.count > 1 ? fields[1] : "0") ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    package var isRunning: Bool { process.isRunning }

    /// SIGTERM, without waiting: the node drains and exits on its own.
    package func terminate() {
        if process.isRunning { process.terminate() }
    }

    package func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// SIGKILL, for helper programs started from a thread that blocks SIGTERM: they inherit the
    /// blocked mask (Foundation's Process keeps it), so `stop()` would wait for them forever.
    package func kill() {
        if process.isRunning {
            _ = Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

/// The embedded Kafka in its own process and a node in another, as they run in production.
package struct NodeProcesses {
    package let kafka: HeraldProcess
    package let node: HeraldProcess
    package let bootstrap: String
    package let port: Int

    package static func start(nodeArguments: [String] = [], environment: [String: String] = [:]) async throws -> NodeProcesses {
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let node = try HeraldProcess(
            ["serve", "--kafka-brokers", bootstrap, "--port", "0", "--host", "127.0.0.1", "--api-port", "0", "--api-host", "127.0.0.1",
             "--node-id", "proc-node"] + nodeArguments,
            environment: ["HERALD_JWT_SECRET": testSecret, "HERALD_API_KEYS": testAPIKey].merging(environment) { _, new in new }
        )
        let port = try await node.waitFor(#"port=(\d+) \[\w+\] WebSocket listener open"#)
        return NodeProcesses(kafka: kafka, node: node, bootstrap: bootstrap, port: Int(port)!)
    }

    package func stop() {
        node.stop()
        kafka.stop()
    }
}

/// A `herald serve` process of a cluster, with its ports.
package struct ClusterNode {
    package let name: String
    package let process: HeraldProcess
    package let port: Int
    package let apiPort: Int

    package init(name: String, process: HeraldProcess, port: Int, apiPort: Int) {
        self.name = name
        self.process = process
        self.port = port
        self.apiPort = apiPort
    }

    package static func start(_ name: String, bootstrap: String, environment: [String: String]) async throws -> ClusterNode {
        let process = try HeraldProcess(
            ["serve", "--kafka-brokers", bootstrap, "--port", "0", "--host", "127.0.0.1", "--api-port", "0", "--api-host", "127.0.0.1",
             "--node-id", name],
            environment: ["HERALD_JWT_SECRET": testSecret, "HERALD_API_KEYS": testAPIKey].merging(environment) { _, new in new }
        )
        let port = Int(try await process.waitFor(#"port=(\d+) \[\w+\] WebSocket listener open"#))!
        let apiPort = Int(try await process.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!
        return ClusterNode(name: name, process: process, port: port, apiPort: apiPort)
    }
}
