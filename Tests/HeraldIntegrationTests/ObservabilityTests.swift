import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import Hummingbird
import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing

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
        #expect(alerts.count == 16)
        for alert in alerts {
            #expect(testText.contains("alertname: \(alert)"), "\(alert) has no promtool test")
            #expect(runbooks.contains("### \(alert)"), "\(alert) has no runbook section in docs/operations.md")
        }
        // Conventions: absolute runbook URLs from one base, whose anchors are this repository's
        // docs/operations.md sections; severity critical or warning.
        let urls = ruleText.matches(of: /runbook_url: "([^"]+)"/).map { String($0.1) }
        #expect(urls.count == alerts.count)
        let anchors = DocsTests.anchors(of: runbooks)
        for url in urls {
            #expect(url.hasPrefix(Self.runbookBase + "#"), "\(url) is not \(Self.runbookBase)#…")
            let anchor = String(url.split(separator: "#").last ?? "")
            #expect(anchors.contains(anchor), "\(url): docs/operations.md has no section #\(anchor)")
        }
        let severities = Set(ruleText.matches(of: /severity: (\w+)/).map { String($0.1) })
        #expect(severities == ["critical", "warning"], "\(severities)")
    }

    /// Where the runbooks live for a reader of an alert: docs/operations.md on the repository's home.
    static let runbookBase = "https://github.com/herald-gateway/herald/blob/main/docs/operations.md"

    static func amtool() throws -> String {
        guard let amtool = which("amtool") else {
            throw TestFailure("amtool is not installed: apt-get install -y prometheus-alertmanager (scripts/install-deps --test does)")
        }
        return amtool
    }

    @Test("amtool checks the Alertmanager configuration, and critical and warning alerts both reach the alarm platform")
    func alertmanagerConfiguration() throws {
        let amtool = try Self.amtool()
        let config = repositoryRoot().appendingPathComponent("ops/alertmanager/alertmanager.yml").path
        let checked = try run(amtool, ["check-config", config])
        #expect(checked.status == 0 && checked.output.contains("SUCCESS"), "\(checked.output)")
        for severity in ["critical", "warning"] {
            // --verify.receivers makes amtool exit 1 when the route ends elsewhere.
            let routed = try run(amtool, [
                "config", "routes", "test", "--config.file", config, "--verify.receivers=alarm-platform", "alertname=HeraldNodeDown", "severity=\(severity)",
            ])
            #expect(routed.status == 0 && routed.output.contains("alarm-platform"), "\(severity): \(routed.output)")
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
        let build = try await query(#"herald_build_info{job="herald"}"#)
        #expect(build == 1)
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
                // Grafana's convention: rates over $__rate_interval, and every series of Herald's job
                // only (a Prometheus scrapes other processes too).
                for window in expr.matches(of: /\[([^\]]+)\]/) {
                    #expect(window.1 == "$__rate_interval", "\(panel["title"] ?? "?"): [\(window.1)] instead of [$__rate_interval]")
                }
                for selector in expr.matches(of: /\b(?:herald|process)_[a-z_]+(\{[^}]*\})?/) {
                    #expect(selector.1?.contains(#"job=~"$job""#) == true, "\(panel["title"] ?? "?"): \(selector.0) is not filtered to $job")
                }
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

    @Test("a node stops: a real Prometheus with the rules fires HeraldNodeDown, Alertmanager routes it, and the alarm platform's webhook receives it")
    func alertReachesTheAlarmPlatform() async throws {
        guard let prometheus = which("prometheus") else {
            throw TestFailure("prometheus is not installed: apt-get install -y prometheus (scripts/install-deps --test does)")
        }
        guard let alertmanager = which("prometheus-alertmanager") ?? which("alertmanager") else {
            throw TestFailure("alertmanager is not installed: apt-get install -y prometheus-alertmanager (scripts/install-deps --test does)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("herald-alerting-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        // The alarm platform: a webhook on loopback that keeps what it is sent.
        let webhook = try await WebhookReceiver.start()
        defer { Task { await webhook.stop() } }

        // ops/alertmanager/alertmanager.yml as it is, but for the receiver's URL and a shorter wait.
        let shipped = try String(contentsOf: repositoryRoot().appendingPathComponent("ops/alertmanager/alertmanager.yml"), encoding: .utf8)
        let placeholder = "http://alarm-platform.monitoring.svc:8080/alerts/herald"
        #expect(shipped.contains(placeholder))
        let amConfig = shipped.replacingOccurrences(of: placeholder, with: "http://127.0.0.1:\(webhook.port)/alerts/herald")
            .replacingOccurrences(of: "group_wait: 10s", with: "group_wait: 1s")
        try amConfig.write(to: directory.appendingPathComponent("alertmanager.yml"), atomically: true, encoding: .utf8)
        let amPort = try freePort()
        let am = try HeraldProcess(executable: alertmanager, [
            "--config.file=\(directory.appendingPathComponent("alertmanager.yml").path)",
            "--storage.path=\(directory.appendingPathComponent("am-data").path)",
            "--web.listen-address=127.0.0.1:\(amPort)",
            "--cluster.listen-address=",
        ])
        defer { am.stop() }

        let processes = try await NodeProcesses.start()
        defer { processes.stop() }
        let apiPort = Int(try await processes.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!
        let config = """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            rule_files: ["\(Self.ops.appendingPathComponent("rules/herald.rules.yml").path)"]
            alerting:
              alertmanagers: [{static_configs: [{targets: ["127.0.0.1:\(amPort)"]}]}]
            scrape_configs:
              - job_name: herald
                static_configs: [{targets: ["127.0.0.1:\(apiPort)"]}]
            """
        try config.write(to: directory.appendingPathComponent("prometheus.yml"), atomically: true, encoding: .utf8)
        let prometheusPort = try freePort()
        let server = try HeraldProcess(executable: prometheus, [
            "--config.file=\(directory.appendingPathComponent("prometheus.yml").path)",
            "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)",
            "--web.listen-address=127.0.0.1:\(prometheusPort)",
        ])
        defer { server.stop() }

        func up() async -> String? {
            guard let response = try? await api(prometheusPort, "GET", "/api/v1/query?query=up", key: nil),
                  let data = response.json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]],
                  let value = result.first?["value"] as? [Any] else { return nil }
            return value.last as? String
        }
        var deadline = ContinuousClock.now + .seconds(30)
        while await up() != "1" {
            guard ContinuousClock.now < deadline else { throw TestFailure("Prometheus never scraped the node: \(server.text.suffix(2_000))") }
            try await Task.sleep(for: .milliseconds(250))
        }
        // The node goes away; HeraldNodeDown waits a minute (`for: 1m`) before it fires.
        processes.node.stop()
        deadline = ContinuousClock.now + .seconds(120)
        var delivered: [String: Any]? = nil
        while delivered == nil {
            guard ContinuousClock.now < deadline else {
                throw TestFailure("no alert reached the webhook; Alertmanager: \(am.text.suffix(2_000))")
            }
            delivered = webhook.received().compactMap { body in
                (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
            }.first { payload in
                (payload["alerts"] as? [[String: Any]] ?? []).contains { ($0["labels"] as? [String: Any])?["alertname"] as? String == "HeraldNodeDown" }
            }
            if delivered == nil { try await Task.sleep(for: .milliseconds(500)) }
        }
        let payload = try #require(delivered)
        #expect(payload["receiver"] as? String == "alarm-platform")
        #expect(payload["status"] as? String == "firing")
        let alert = try #require((payload["alerts"] as? [[String: Any]])?.first)
        let labels = alert["labels"] as? [String: Any] ?? [:]
        #expect(labels["severity"] as? String == "critical")
        #expect(labels["instance"] as? String == "127.0.0.1:\(apiPort)")
        let runbook = (alert["annotations"] as? [String: Any])?["runbook_url"] as? String ?? ""
        #expect(runbook == Self.runbookBase + "#heraldnodedown", "\(runbook)")
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

/// A webhook receiver on loopback (the alarm platform in the alerting test): Hummingbird, keeping every
/// request body it is posted.
struct WebhookReceiver: Sendable {
    final class Bodies: Sendable {
        let list = Mutex<[String]>([])
    }

    let port: Int
    private let bodies: Bodies
    private let group: ServiceGroup
    private let task: Task<Void, Never>

    static func start() async throws -> WebhookReceiver {
        let bodies = Bodies()
        let router = Router()
        router.post("alerts/herald") { request, _ -> HTTPResponse.Status in
            let body = try await request.body.collect(upTo: 1 << 20)
            bodies.list.withLock { $0.append(String(buffer: body)) }
            return .ok
        }
        let port = PortBox()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in port.set(channel.localAddress?.port ?? 0) }, logger: testLogger
        )
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [.init(service: app)], logger: testLogger))
        let task = Task { do { try await group.run() } catch {} }
        return WebhookReceiver(port: await port.wait(), bodies: bodies, group: group, task: task)
    }

    func received() -> [String] { bodies.list.withLock { $0 } }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = await task.value
    }
}
