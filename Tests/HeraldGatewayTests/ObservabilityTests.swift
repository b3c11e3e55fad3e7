import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import NIOPosix
import Testing

/// The repository's root (where `ops/` and `docs/` are).
func repositoryRoot() -> URL {
    var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
        directory = directory.deletingLastPathComponent()
    }
    return directory
}

/// Runs a program to completion and returns its status and output.
func run(_ executable: String, _ arguments: [String], in directory: URL? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}

/// A TCP port nothing listens on right now.
func freePort() throws -> Int {
    let group = MultiThreadedEventLoopGroup.singleton
    let channel = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
    let port = channel.localAddress?.port ?? 0
    try channel.close().wait()
    return port
}

@Suite("Observability: metrics a real Prometheus scrapes, rules promtool checks, a dashboard on live metrics, logs without secrets")
struct ObservabilityTests {
    static let ops = repositoryRoot().appendingPathComponent("ops/prometheus")

    static func promtool() throws -> String {
        try requiredTool("promtool", package: "Debian's prometheus")
    }

    @Test("promtool checks the configuration and the rules, and every alert's unit test passes")
    func promtoolRules() throws {
        let promtool = try Self.promtool()
        let config = try run(promtool, ["check", "config", "prometheus.yml"], in: Self.ops)
        #expect(config.status == 0, "\(config.output)")
        let rules = try run(promtool, ["check", "rules", "rules/herald.rules.yml"], in: Self.ops)
        #expect(rules.status == 0, "\(rules.output)")
        let tests = try run(promtool, ["test", "rules", "tests/herald.rules.test.yml"], in: Self.ops)
        #expect(tests.status == 0, "\(tests.output)")
        // Every alert has a unit test and a runbook section.
        let ruleText = try String(contentsOf: Self.ops.appendingPathComponent("rules/herald.rules.yml"), encoding: .utf8)
        let testText = try String(contentsOf: Self.ops.appendingPathComponent("tests/herald.rules.test.yml"), encoding: .utf8)
        let runbooks = try String(contentsOf: repositoryRoot().appendingPathComponent("docs/operations.md"), encoding: .utf8)
        let alerts = ruleText.matches(of: /- alert: (\w+)/).map { String($0.1) }
        #expect(alerts.count == 12)
        for alert in alerts {
            #expect(testText.contains("alertname: \(alert)"), "\(alert) has no promtool test")
            #expect(runbooks.contains("### \(alert)"), "\(alert) has no runbook section in docs/operations.md")
        }
    }

    @Test("a real Prometheus scrapes a node: PromQL counts its connections and deliveries; every dashboard query names a live metric")
    func prometheusScrapesANode() async throws {
        let prometheus = try requiredTool("prometheus", package: "Debian's prometheus")
        let processes = try await NodeProcesses.start()
        defer { processes.stop() }
        let apiPort = Int(try await processes.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("herald-prometheus-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            rule_files: ["\(Self.ops.appendingPathComponent("rules/herald.rules.yml").path)"]
            scrape_configs:
              - job_name: herald
                static_configs: [{targets: ["127.0.0.1:\(apiPort)"]}]
            """
        try config.write(to: directory.appendingPathComponent("prometheus.yml"), atomically: true, encoding: .utf8)
        let prometheusPort = try freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: prometheus)
        server.arguments = [
            "--config.file=\(directory.appendingPathComponent("prometheus.yml").path)",
            "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)",
            "--web.listen-address=127.0.0.1:\(prometheusPort)",
        ]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            server.terminate()
            server.waitUntilExit()
        }

        // N connections, M messages delivered to them.
        let connections = 24
        let messages = 40
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        let client = HeraldClient(host: "127.0.0.1", port: processes.port, group: MultiThreadedEventLoopGroup.singleton)
        var open: [TestConnection] = []
        for index in 0..<connections {
            let token = try await issuer.token(user: "watched-\(index)", expiresAt: Date().addingTimeInterval(600))
            open.append(try await TestConnection.open(try await client.connect(token: token)))
        }
        for index in 0..<messages {
            let response = try await api(apiPort, "POST", "/v1/push", body: #"{"to":{"users":["watched-\#(index % connections)"]},"data":{"n":\#(index)}}"#)
            #expect(response.status == 202)
        }
        for (index, connection) in open.enumerated() {
            for _ in stride(from: index, to: messages, by: connections) { _ = try await connection.nextMessage() }
        }

        func query(_ promql: String) async throws -> Double? {
            let encoded = promql.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? promql
            guard let response = try? await api(prometheusPort, "GET", "/api/v1/query?query=\(encoded)", key: nil),
                  response.status == 200,
                  let data = response.json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]],
                  let value = result.first?["value"] as? [Any], let text = value.last as? String else { return nil }
            return Double(text)
        }
        let deadline = ContinuousClock.now + .seconds(60)
        var seenConnections: Double? = nil
        var seenDeliveries: Double? = nil
        while ContinuousClock.now < deadline {
            seenConnections = try await query("sum(herald_connections)")
            seenDeliveries = try await query(#"sum(herald_messages_delivered_total{stream="user"})"#)
            let recordedNow = try await query("job:herald_connections:sum")
            if seenConnections == Double(connections), let delivered = seenDeliveries, delivered >= Double(messages),
               recordedNow == Double(connections) { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        let connectionsText = seenConnections.map { String($0) } ?? "none"
        let deliveriesText = seenDeliveries.map { String($0) } ?? "none"
        let deliveries = seenDeliveries ?? 0
        #expect(seenConnections == Double(connections), "PromQL sum(herald_connections) = \(connectionsText)")
        #expect(deliveries >= Double(messages), "PromQL deliveries = \(deliveriesText)")
        let pushes = try await query(#"sum(herald_api_requests_total{endpoint="/v1/push",status="202"})"#)
        #expect(pushes == Double(messages))
        let up = try await query(#"up{job="herald"}"#)
        #expect(up == 1)
        let maxFDs = try await query("process_max_fds") ?? 0
        #expect(maxFDs > 0)
        // The recording rules evaluate on live data too.
        let recorded = try await query("job:herald_connections:sum")
        #expect(recorded == Double(connections))

        // The dashboard: valid JSON, the datasource a variable, and every query on live metrics.
        let live = try await api(apiPort, "GET", "/metrics", key: nil).body
        let exported = Set(live.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line in
            line.split(whereSeparator: { $0 == "{" || $0 == " " }).first.map(String.init)
        })
        let dashboardURL = repositoryRoot().appendingPathComponent("ops/grafana/dashboards/herald.json")
        let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: dashboardURL)) as? [String: Any])
        let variables = ((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]]) ?? []
        #expect(variables.contains { $0["type"] as? String == "datasource" && $0["name"] as? String == "datasource" })
        var checked: Set<String> = []
        for panel in dashboard["panels"] as? [[String: Any]] ?? [] where panel["type"] as? String != "row" {
            #expect((panel["datasource"] as? [String: Any])?["uid"] as? String == "${datasource}", "\(panel["title"] ?? "?")")
            for target in panel["targets"] as? [[String: Any]] ?? [] {
                let expr = try #require(target["expr"] as? String)
                let names = expr.matches(of: /\b((?:herald|process)_[a-z_]+)/).map { String($0.1) }
                #expect(!names.isEmpty, "\(expr) names no Herald metric")
                for name in names {
                    #expect(exported.contains(name), "dashboard panel \(panel["title"] ?? "?") queries \(name), which the node does not export")
                    checked.insert(name)
                }
            }
        }
        #expect(checked.count >= 28, "the dashboard covers \(checked.count) metrics")
        for connection in open { connection.session.close() }
    }

    @Test("JSON logs, one object a line, never carry a token, an API key or the token secret")
    func logsWithoutSecrets() async throws {
        let apiKey = "observability-api-key-0123456789"
        let node = try HeraldProcess(
            ["serve", "--port", "0", "--host", "127.0.0.1", "--api-port", "0", "--api-host", "127.0.0.1", "--node-id", "logs",
             "--log-format", "json", "--log-level", "trace"],
            environment: ["HERALD_JWT_SECRET": testSecret, "HERALD_API_KEYS": apiKey]
        )
        defer { node.stop() }
        let port = Int(try await node.waitFor(#""msg":"WebSocket listener open".*?"port":"(\d+)""#))!
        let apiPort = Int(try await node.waitFor(#"listening on [^:"]*:(\d+)"#))!
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        let token = try await issuer.token(user: "private", channels: ["news"], expiresAt: Date().addingTimeInterval(600))
        let client = HeraldClient(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton)
        let connection = try await TestConnection.open(try await client.connect(token: token, tokenInQuery: true))
        #expect(try await api(apiPort, "POST", "/v1/push", body: #"{"to":{"users":["private"]},"data":1}"#, key: apiKey).status == 202)
        _ = try await connection.nextMessage()
        _ = try await api(apiPort, "GET", "/v1/node", key: "wrong-key-\(apiKey)")
        _ = try? await client.connect(token: token + "x", tokenInQuery: true)
        connection.session.close()
        try await Task.sleep(for: .milliseconds(300))
        node.stop()

        let lines = node.text.split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(lines.count > 10, "a node at trace level logs")
        for line in lines {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any], "not one JSON object: \(line)")
        }
        let output = node.text
        #expect(!output.contains(apiKey), "the API key is in the logs")
        #expect(!output.contains(testSecret), "the token secret is in the logs")
        #expect(!output.contains(token), "a token is in the logs")
        #expect(!output.contains(String(token.split(separator: ".")[1])), "a token's claims are in the logs")
    }
}
