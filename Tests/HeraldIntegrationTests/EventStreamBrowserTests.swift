import Foundation
import HeraldCore
import Testing

@Suite("The JS client falls back to Server-Sent Events in a real browser")
struct EventStreamBrowserTests {
    @Test("with WebSocket unavailable, a page on another origin connects over /v1/sse, receives pushes, resumes after 4009 with a fresh token, and stops at 4003")
    func fallbackInChromium() async throws {
        try await GatewayHarness.run { node in
            // The first token expires within seconds (4009), the second is the refreshed one.
            let tokens = [try await node.token("dora", device: "browser", ttl: 4), try await node.token("dora", device: "browser")]
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-sse-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let page = """
            <!doctype html><meta charset="utf-8"><title>no WebSocket here</title>
            <script type="module">
            // Every WebSocket this page opens fails before it opens, as behind a proxy that drops upgrades.
            const Real = window.WebSocket;
            window.WebSocket = class extends Real { constructor() { super("ws://127.0.0.1:1/"); } };
            window.log = [];
            const tokens = \(String(decoding: try JSONSerialization.data(withJSONObject: tokens), as: UTF8.self));
            let asked = 0;
            try {
              const { connect } = await import("http://127.0.0.1:\(node.port)/herald.js");
              window.herald = connect("ws://127.0.0.1:\(node.port)/v1/ws", {
                token: () => tokens[Math.min(asked++, tokens.length - 1)],
                backoffCap: 500,
              });
              for (const type of ["transport", "welcome", "message", "close", "state", "error"]) {
                herald.addEventListener(type, (e) => {
                  const d = e.detail;
                  window.log.push(type === "transport" ? "transport " + d.transport
                    : type === "welcome" ? "welcome " + (d.recovered === undefined ? "new" : d.recovered)
                    : type === "message" ? "message " + JSON.stringify(d.data)
                    : type === "close" ? "close " + d.code + " " + d.action
                    : type === "error" ? "error " + d.code
                    : "state " + d.state);
                });
              }
            } catch (error) {
              window.log.push("failed: " + error);
            }
            </script>
            """
            try page.write(to: folder.appendingPathComponent("index.html"), atomically: true, encoding: .utf8)
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
            func log() async throws -> [String] { (try await browser.evaluate("return window.log || []") as? [String]) ?? [] }
            func waitFor(_ what: String, _ condition: ([String]) -> Bool) async throws {
                let deadline = ContinuousClock.now + .seconds(30)
                while try await !condition(log()) {
                    guard ContinuousClock.now < deadline else { throw TestFailure("the page did not reach \(what): \(try await log())") }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            func push(_ n: Int) async throws {
                let pushed = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["dora"]},"data":{"n":\#(n)}}"#)
                #expect(pushed.status == 202, "\(pushed.body)")
            }

            try await waitFor("a welcome over SSE") { $0.contains("welcome new") }
            #expect(try await log().contains("transport sse"))
            #expect(try await browser.evaluate("return window.herald.transport") as? String == "sse")
            try await push(1)
            try await waitFor("the first push") { $0.contains(#"message {"n":1}"#) }

            // The first token expires: the close event says 4009, the page asks for a new token and
            // resumes from its cursor; what was pushed meanwhile arrives once.
            try await waitFor("the 4009 close event") { $0.contains("close 4009 refresh-token") }
            try await push(2)
            try await waitFor("a recovered welcome and the second push") { $0.contains("welcome true") && $0.contains(#"message {"n":2}"#) }
            try await push(3)
            try await waitFor("the third push") { $0.contains(#"message {"n":3}"#) }
            let messages = try await log().filter { $0.hasPrefix("message") }
            #expect(messages == [#"message {"n":1}"#, #"message {"n":2}"#, #"message {"n":3}"#], "each once, in order")

            // A kick ends the stream with 4003, and the client stops, as over a WebSocket.
            _ = try await api(node.apiPort, "DELETE", "/v1/users/dora/connections")
            try await waitFor("the 4003 close event and state closed") { $0.contains("close 4003 stop") && $0.last == "state closed" }
        }
    }
}
