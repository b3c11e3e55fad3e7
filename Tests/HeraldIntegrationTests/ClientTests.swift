import Foundation
import HeraldClient
import HeraldCore
import HeraldKafka
import NIOCore
import Testing

@Suite("Clients: the JS module's unit tests, the assets the node serves, and the Swift client's resume")
struct ClientTests {
    @Test("node --test runs the JS module's backoff, close-code and cursor tests")
    func javascriptUnitTests() throws {
        let node = try requiredTool("node", "nodejs", package: "Debian's nodejs")
        let (status, output) = try run(node, ["--test", "clients/js/test/"], in: repositoryRoot())
        #expect(status == 0, "\(output)")
        #expect(output.contains("# fail 0"), "\(output.suffix(2_000))")
        let passed = output.firstMatch(of: /# pass (\d+)/).flatMap { Int($0.1) } ?? 0
        #expect(passed >= 12)
    }

    @Test("the JS client reconnects after exactly the closes the Swift CloseCode table says, and stops after the rest")
    func javascriptCloseTableIsTheSwiftOne() throws {
        guard let node = which("node") ?? which("nodejs") else {
            throw TestFailure("node is not installed: apt-get install -y nodejs (scripts/install-deps --test does)")
        }
        let codes: [UInt16] = CloseCode.allCases.map(\.rawValue) + [1003, 1005, 1006, 1014, 1015, 3000, 4000, 4002, 4010, 4999]
        let script = "import { closeAction } from './clients/js/herald.js';"
            + "console.log(JSON.stringify(\(codes).map((code) => [code, closeAction(code)])));"
        let (status, output) = try run(node, ["--input-type=module", "-e", script], in: repositoryRoot())
        #expect(status == 0, "\(output)")
        let pairs = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[Any]], "\(output)")
        for pair in pairs {
            let code = try #require((pair.first as? NSNumber)?.uint16Value)
            let action = try #require(pair.last as? String)
            #expect(action == CloseCode.clientAction(forClose: code).rawValue, "close \(code): the JS client does \(action)")
        }
        #expect(pairs.count == codes.count)
    }

    @Test("clients/js packs with npm, installs from the tarball into an empty folder, imports by its name, and its tests pass there")
    func javascriptPackageInstalls() throws {
        guard let npm = which("npm"), let node = which("node") ?? which("nodejs") else {
            throw TestFailure("node and npm are needed: apt-get install -y nodejs npm (scripts/install-deps --test does)")
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-npm-\(UUID().uuidString)")
        let app = folder.appendingPathComponent("app")
        try FileManager.default.createDirectory(at: app, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let manifest = try JSONSerialization.jsonObject(
            with: Data(contentsOf: repositoryRoot().appendingPathComponent("clients/js/package.json"))
        ) as? [String: Any] ?? [:]
        #expect(manifest["type"] as? String == "module", "without it Node 18 reads herald.js as CommonJS")
        #expect(manifest["license"] as? String == "Apache-2.0")
        let name = try #require(manifest["name"] as? String)
        let version = try #require(manifest["version"] as? String)

        let (packed, packOutput) = try run(npm, ["pack", "--pack-destination", folder.path, "--silent"], in: repositoryRoot().appendingPathComponent("clients/js"))
        #expect(packed == 0, "\(packOutput)")
        let tarball = try #require(
            try FileManager.default.contentsOfDirectory(atPath: folder.path).first { $0.hasSuffix("-\(version).tgz") }, "no tarball: \(packOutput)"
        )
        try #"{"name":"empty-app","private":true,"type":"module"}"#.write(to: app.appendingPathComponent("package.json"), atomically: true, encoding: .utf8)
        let (installed, installOutput) = try run(
            npm, ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", folder.appendingPathComponent(tarball).path], in: app
        )
        #expect(installed == 0, "\(installOutput)")

        let probe = #"import { connect, closeAction } from "\#(name)"; console.log(typeof connect, closeAction(1012));"#
        let (imported, importOutput) = try run(node, ["--input-type=module", "-e", probe], in: app)
        #expect(imported == 0 && importOutput.contains("function resume"), "\(importOutput)")
        let (tested, testOutput) = try run(node, ["--test", "node_modules/\(name)/test/"], in: app)
        #expect(tested == 0 && testOutput.contains("# fail 0"), "\(testOutput.suffix(2_000))")
    }

    @Test("the embedded client assets are the files in clients/ (scripts/embed-client-assets)")
    func assetsAreCurrent() throws {
        let python = try requiredPython(for: "scripts/embed-client-assets")
        let (status, generated) = try run(python, ["scripts/embed-client-assets", "--print"], in: repositoryRoot())
        #expect(status == 0)
        let committed = try String(contentsOf: repositoryRoot().appendingPathComponent("Sources/HeraldGateway/Listener/ClientAssets.swift"), encoding: .utf8)
        #expect(generated == committed, "run scripts/embed-client-assets: ClientAssets.swift is out of date")
    }

    @Test("/herald.js and /herald.d.ts can be imported from a page on another origin (CORS), limited to the allowed origins when some are configured")
    func clientAssetsAreCrossOrigin() async throws {
        let page = [("Origin", "https://app.example.com")]
        try await GatewayHarness.run { node in
            for path in ["/herald.js", "/herald.d.ts"] {
                let response = try await api(node.port, "GET", path, key: nil, headers: page)
                #expect(response.status == 200)
                #expect(response.headers["access-control-allow-origin"] == "*", "\(path): \(response.headers)")
                #expect(response.headers["cache-control"]?.contains("max-age=") == true)
            }
            // Not the demo's helpers, nor refusals: only the public client files are shared.
            let notFound = try await api(node.port, "GET", "/nothing", key: nil, headers: page)
            #expect(notFound.status == 404 && notFound.headers["access-control-allow-origin"] == nil)
        }
        try await GatewayHarness.run(configure: { $0.allowedOrigins = ["https://app.example.com"] }) { node in
            let allowed = try await api(node.port, "GET", "/herald.js", key: nil, headers: page)
            #expect(allowed.headers["access-control-allow-origin"] == "https://app.example.com")
            #expect(allowed.headers["vary"] == "Origin")
            let other = try await api(node.port, "GET", "/herald.js", key: nil, headers: [("Origin", "https://evil.example")])
            #expect(other.status == 200 && other.headers["access-control-allow-origin"] == nil)
            #expect(other.headers["vary"] == "Origin")
        }
    }

    @Test("the public port serves /herald.js always, and the demo with its helpers only in development mode")
    func publicPages() async throws {
        try await GatewayHarness.run { node in
            let script = try await api(node.port, "GET", "/herald.js", key: nil)
            #expect(script.status == 200)
            #expect(script.headers["content-type"]?.hasPrefix("text/javascript") == true)
            #expect(script.body.contains("export function connect("))
            #expect(try await api(node.port, "GET", "/herald.d.ts", key: nil).body.contains("export class HeraldConnection"))
            for path in ["/", "/dev/token?user=a"] {
                let response = try await api(node.port, "GET", path, key: nil)
                #expect(response.status == 404 && response.errorCode == "not-found", "\(path) without --dev: \(response.status)")
            }
        }
        try await GatewayHarness.run(developmentTools: true) { node in
            let page = try await api(node.port, "GET", "/", key: nil)
            #expect(page.status == 200 && page.body.contains(#"import { connect, cursorText } from "/herald.js""#))
            let token = try await api(node.port, "GET", "/dev/token?user=demo&device=browser", key: nil)
            let issued = try #require(token.json["token"] as? String)
            let connection = try await TestConnection.open(try await node.client.connect(token: issued))
            let pushed = try await api(node.port, "POST", "/dev/push", body: #"{"user":"demo","text":"hi"}"#, key: nil)
            #expect(pushed.status == 202)
            let message = try await connection.nextMessage()
            #expect(message.data == #""hi""# && message.offset == pushed.json["offset"] as? Int64)
            #expect(try await api(node.port, "POST", "/dev/push", body: #"{"user":""}"#, key: nil).status == 400)
            let restarted = try await api(node.port, "POST", "/dev/restart", body: #"{"user":"demo"}"#, key: nil)
            #expect(restarted.json["closed"] as? Int == 1)
            #expect(try await connection.closeCode() == CloseCode.restarting.rawValue)
        }
    }

    @Test("ResumingConnection: resumes after 1012 with nothing lost or repeated, and stops after a kick (4003)")
    func swiftClientResumes() async throws {
        try await GatewayHarness.run(developmentTools: true) { node in
            let token = try await node.token("swifty", device: "mac")
            let connection = ResumingConnection(
                client: node.client, policy: ReconnectPolicy(base: .milliseconds(50), cap: .milliseconds(400)), token: { token }
            )
            let inbox = Inbox<ResumingConnection.Event>()
            let reader = Task { for await event in connection.events { await inbox.append(event) } }
            defer { reader.cancel() }
            connection.start()
            func next() async throws -> ResumingConnection.Event { try await inbox.next(within: .seconds(15)) }
            func nextMessage() async throws -> ServerEvent.Message {
                while true { if case .message(let message) = try await next() { return message } }
            }
            func welcome() async throws -> ServerEvent.Welcome {
                while true { if case .welcome(let welcome) = try await next() { return welcome } }
            }
            #expect(try await welcome().recovered == nil)
            var expected: [Int64] = []
            for n in 0..<3 { expected.append(try await node.produce(HeraldRecord(stream: .user("swifty")), #"{"n":\#(n)}"#).offset) }
            var received: [Int64] = []
            for _ in 0..<3 { received.append(try await nextMessage().offset) }

            // The node "restarts" this user's connection; messages sent meanwhile are replayed.
            _ = try await api(node.port, "POST", "/dev/restart", body: #"{"user":"swifty"}"#, key: nil)
            for n in 3..<8 { expected.append(try await node.produce(HeraldRecord(stream: .user("swifty")), #"{"n":\#(n)}"#).offset) }
            let resumed = try await welcome()
            #expect(resumed.recovered == true)
            while received.count < expected.count { received.append(try await nextMessage().offset) }
            #expect(received == expected, "every message once, in order, across the reconnect")
            #expect(connection.cursor?.positions["u"] == expected.last)

            // A kick (4003) stops it.
            #expect(try await api(node.apiPort, "DELETE", "/v1/users/swifty/connections").status == 202)
            var sawStop = false
            while true {
                let event = try await next()
                if case .closed(let code, let action) = event { sawStop = code == 4003 && action == .stop }
                if case .state(.closed) = event { break }
            }
            #expect(sawStop)
        }
    }
}
