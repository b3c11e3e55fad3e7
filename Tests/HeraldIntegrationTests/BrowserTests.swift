import Foundation
import HeraldCore
import HeraldKafka
import NIOCore
import Testing

/// A headless Chromium driven over the WebDriver protocol (Debian's `chromium` and `chromium-driver`;
/// `scripts/install-deps --test` installs them), talking to chromedriver's HTTP API directly.
struct Browser {
    let driverPort: Int
    let session: String
    let driver: HeraldProcess

    /// `arguments`: more Chromium flags (a test CA's `--ignore-certificate-errors-spki-list`).
    static func start(arguments: [String] = []) async throws -> Browser {
        let chromium = try requiredTool("chromium", "chromium-browser", package: "Debian's chromium")
        let chromedriver = try requiredTool("chromedriver", package: "Debian's chromium-driver")
        let port = try freePort()
        let driver = try HeraldProcess(executable: chromedriver, ["--port=\(port)"])
        let deadline = ContinuousClock.now + .seconds(20)
        while (try? await api(port, "GET", "/status", key: nil))?.status != 200 {
            guard ContinuousClock.now < deadline else { throw TestFailure("chromedriver did not start: \(driver.text)") }
            try await Task.sleep(for: .milliseconds(100))
        }
        let flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,1000"] + arguments
        let options: [String: Any] = ["binary": chromium, "args": flags]
        let capabilities = String(decoding: try JSONSerialization.data(withJSONObject: [
            "capabilities": ["alwaysMatch": ["browserName": "chrome", "goog:chromeOptions": options]],
        ]), as: UTF8.self)
        let created = try await api(port, "POST", "/session", body: capabilities, key: nil)
        guard let value = created.json["value"] as? [String: Any], let session = value["sessionId"] as? String else {
            throw TestFailure("no WebDriver session: \(created.body)")
        }
        return Browser(driverPort: port, session: session, driver: driver)
    }

    func open(_ url: String) async throws {
        let response = try await api(driverPort, "POST", "/session/\(session)/url", body: #"{"url":"\#(url)"}"#, key: nil)
        guard response.status == 200 else { throw TestFailure("navigation failed: \(response.body)") }
    }

    /// Runs `script` (a function body) in the page and returns its JSON result.
    func evaluate(_ script: String) async throws -> Any? {
        let body = try JSONSerialization.data(withJSONObject: ["script": script, "args": []])
        let response = try await api(driverPort, "POST", "/session/\(session)/execute/sync", body: String(decoding: body, as: UTF8.self), key: nil)
        return response.json["value"]
    }

    func screenshot(to file: URL) async throws {
        let response = try await api(driverPort, "GET", "/session/\(session)/screenshot", key: nil)
        guard let base64 = response.json["value"] as? String, let png = Data(base64Encoded: base64) else {
            throw TestFailure("no screenshot: \(response.body.prefix(200))")
        }
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try png.write(to: file)
    }

    func quit() async {
        _ = try? await api(driverPort, "DELETE", "/session/\(session)", key: nil)
        // The session is closed, and with it Chromium; chromedriver may have SIGTERM blocked (see kill()).
        driver.kill()
    }
}

@Suite("The demo page in a real browser")
struct BrowserTests {
    @Test("the page connects, shows a push, and after the node restarts shows what it missed, once, in order, recovered")
    func demoPageResumesAcrossARestart() async throws {
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let port = try freePort()
        let apiPort = try freePort()
        func startNode(_ name: String) async throws -> HeraldProcess {
            let node = try HeraldProcess(
                ["serve", "--dev", "--kafka-brokers", bootstrap, "--port", String(port), "--host", "127.0.0.1",
                 "--api-port", String(apiPort), "--api-host", "127.0.0.1", "--node-id", name],
                // --dev signs with a random secret of its own: the page asks the node it reaches for a token.
                environment: ["HERALD_API_KEYS": testAPIKey]
            )
            _ = try await node.waitFor(#"port=(\d+) \[\w+\] WebSocket listener open"#)
            return node
        }
        var node = try await startNode("demo-1")
        defer { node.stop() }

        let browser = try await Browser.start()
        defer { Task { await browser.quit() } }
        try await browser.open("http://127.0.0.1:\(port)/?user=alice&device=browser&backoffCap=1000")

        func text(_ id: String) async throws -> String {
            (try await browser.evaluate("return document.getElementById('\(id)').textContent") as? String) ?? ""
        }
        func rows() async throws -> [(stream: String, offset: Int64, data: String)] {
            let value = try await browser.evaluate(
                "return Array.from(document.querySelectorAll('#messages tr')).map(r => [r.dataset.stream, Number(r.dataset.offset), r.cells[2].textContent])"
            ) as? [[Any]] ?? []
            return value.map { ($0[0] as? String ?? "", ($0[1] as? NSNumber)?.int64Value ?? -1, $0[2] as? String ?? "") }
        }
        func waitUntil(_ what: String, _ condition: () async throws -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(30)
            while try await !condition() {
                guard ContinuousClock.now < deadline else {
                    throw TestFailure("the page did not reach: \(what); events: \((try? await text("events")) ?? "")")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }

        try await waitUntil("state open") { try await text("state") == "open" }
        #expect(try await text("node") == "demo-1")
        let first = try await api(apiPort, "POST", "/v1/push", body: #"{"to":{"users":["alice"]},"data":{"n":1}}"#)
        #expect(first.status == 202)
        try await waitUntil("the first push on the page") { try await rows().count == 1 }

        // The node restarts: SIGTERM (the page gets 1012 and retries while it is away), and three
        // messages are produced straight to Kafka meanwhile.
        node.process.terminate()
        node.process.waitUntilExit()
        try await waitUntil("state reconnecting") { try await text("state") == "reconnecting" }
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: bootstrap)), logger: testLogger
        )
        for n in 2...4 {
            _ = try await producer.send(KafkaOutgoingRecord(topic: "herald.events", key: Array("alice".utf8), value: ByteBuffer(string: #"{"n":\#(n)}"#)))
        }
        await producer.shutdown()
        node = try await startNode("demo-2")

        try await waitUntil("four messages after the resume") {
            let count = try await rows().count
            let recovered = try await text("recovered")
            return count >= 4 && recovered.hasPrefix("true")
        }
        try await Task.sleep(for: .milliseconds(500))
        let shown = try await rows()
        #expect(shown.map(\.data) == [#"{"n":1}"#, #"{"n":2}"#, #"{"n":3}"#, #"{"n":4}"#], "every message once, in order: \(shown)")
        #expect(shown.allSatisfy { $0.stream == "u" })
        #expect(zip(shown, shown.dropFirst()).allSatisfy { $0.offset < $1.offset })
        #expect(try await text("recovered") == "true")
        #expect(try await text("node") == "demo-2")
        let events = try await text("events")
        #expect(events.contains("closed 1012"), "the page saw the drain's 1012: \(events)")

        try await browser.screenshot(to: repositoryRoot().appendingPathComponent("docs/images/demo-page.png"))
    }

    @Test("a page on another origin imports /herald.js from the node, connects and receives a push")
    func crossOriginImport() async throws {
        try await GatewayHarness.run { node in
            let token = try await node.token("carol", device: "browser")
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-cross-origin-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let page = """
            <!doctype html><meta charset="utf-8"><title>another origin</title>
            <script type="module">
            window.result = "loading";
            try {
              const { connect } = await import("http://127.0.0.1:\(node.port)/herald.js");
              window.result = "imported";
              const herald = connect("ws://127.0.0.1:\(node.port)/v1/ws", { token: "\(token)" });
              herald.addEventListener("welcome", () => { window.result = "welcome"; });
              herald.addEventListener("message", (e) => { window.result = "message " + JSON.stringify(e.detail.data); });
            } catch (error) {
              window.result = "failed: " + error;
            }
            </script>
            """
            try page.write(to: folder.appendingPathComponent("index.html"), atomically: true, encoding: .utf8)
            // The page's origin: another port on loopback, served by Python's http.server.
            let pagePort = try freePort()
            let server = try HeraldProcess(
                executable: try pythonWith(module: "http.server"),
                ["-m", "http.server", String(pagePort), "--bind", "127.0.0.1", "--directory", folder.path]
            )
            defer { server.kill() }
            let ready = ContinuousClock.now + .seconds(10)
            while (try? await api(pagePort, "GET", "/index.html", key: nil))?.status != 200 {
                guard ContinuousClock.now < ready else { throw TestFailure("http.server did not start: \(server.text)") }
                try await Task.sleep(for: .milliseconds(100))
            }

            let browser = try await Browser.start()
            defer { Task { await browser.quit() } }
            try await browser.open("http://127.0.0.1:\(pagePort)/index.html")
            func result() async throws -> String { (try await browser.evaluate("return String(window.result)") as? String) ?? "" }
            func waitFor(_ expected: String) async throws {
                let deadline = ContinuousClock.now + .seconds(20)
                while try await result() != expected {
                    guard ContinuousClock.now < deadline else {
                        throw TestFailure("the cross-origin page shows \(try await result()), not \(expected)")
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            try await waitFor("welcome")
            let pushed = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["carol"]},"data":{"hello":"from another origin"}}"#)
            #expect(pushed.status == 202)
            try await waitFor(#"message {"hello":"from another origin"}"#)
        }
    }
}
