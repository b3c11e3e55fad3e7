import Foundation
import HeraldClient
import HeraldGateway
import NIOPosix
import Testing

@Suite("The herald command as a user runs it: output through a pipe, --version, the build-info metric")
struct CommandLineTests {
    @Test("herald serve --dev with stdout a pipe prints the secret, the API key and the example URL while the node runs")
    func developmentCredentialsReachAPipeAtOnce() async throws {
        let port = try freePort()
        let apiPort = try freePort()
        let node = try HeraldProcess(
            ["serve", "--dev", "--port", String(port), "--host", "127.0.0.1", "--api-port", String(apiPort), "--api-host", "127.0.0.1",
             "--embedded-partitions", "2"]
        )
        defer { node.stop() }
        _ = try await node.waitFor(#"WebSocket listener open"#)
        // The node is up; the lines must be in the pipe now, not at exit (waitFor fails if it exits).
        let secret = try await node.waitFor(#"HERALD_JWT_SECRET=(\S+)"#, within: .seconds(10))
        let key = try await node.waitFor(#"HERALD_API_KEYS=(\S+)"#, within: .seconds(10))
        let example = try await node.waitFor(#"example: (ws://127\.0\.0\.1:\d+/v1/ws\?\S+)"#, within: .seconds(10))
        #expect(node.process.isRunning)
        #expect(secret.utf8.count >= 32)
        #expect(example.hasPrefix("ws://127.0.0.1:\(port)/v1/ws?"))
        // And they work: the key is accepted by the push API of the running node.
        let pushed = try await api(apiPort, "POST", "/v1/push", body: #"{"to":{"users":["alice"]},"data":1}"#, key: key)
        #expect(pushed.status == 202, "\(pushed.body)")
    }

    @Test("herald --version names the version, the commit, Swift and the librdkafka it runs with")
    func version() throws {
        let (status, output) = try run(try heraldExecutable().path, ["--version"])
        #expect(status == 0)
        #expect(output.firstMatch(of: /^herald \d+\.\d+\.\d+ \(commit \S+, Swift \d+\.\d+\+?, librdkafka \d+\.\d+\.\d+[^)]*\)\n$/) != nil, "\(output)")
    }

    @Test("GET /metrics carries herald_build_info with version, commit, Swift and librdkafka labels, and the commit from the image")
    func buildInfoMetric() async throws {
        let processes = try await NodeProcesses.start(environment: ["HERALD_BUILD_COMMIT": "abc1234"])
        defer { processes.stop() }
        let apiPort = Int(try await processes.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!
        let metrics = try await api(apiPort, "GET", "/metrics", key: nil).body
        let (_, versionText) = try run(try heraldExecutable().path, ["--version"])
        let version = try #require(versionText.firstMatch(of: #/^herald (\S+) /#)).1
        let line = try #require(metrics.split(separator: "\n").first { $0.hasPrefix("herald_build_info{") }, "no herald_build_info in /metrics")
        #expect(line.contains(#"version="\#(version)""#), "\(line)")
        #expect(line.contains(#"commit="abc1234""#), "\(line)")
        #expect(line.firstMatch(of: /swift_version="\d+\.\d+\+?"/) != nil, "\(line)")
        #expect(line.firstMatch(of: /librdkafka_version="\d+\.\d+\.\d+/) != nil, "\(line)")
        #expect(line.hasSuffix("} 1"))
        #expect(metrics.contains("# TYPE herald_build_info gauge"))
    }
}
