import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import NIOPosix
import Testing

/// The examples of `examples/`, run with the commands `docs/examples.md` shows (placeholders replaced
/// by this run's ports and addresses), against a real node.
@Suite("examples/: each runs with the command docs/examples.md shows and does what it says")
struct ExampleTests {
    /// The lines of docs/examples.md's `sh` blocks that start with `prefix`.
    static func commands(startingWith prefix: String) throws -> [String] {
        let text = try String(contentsOf: repositoryRoot().appendingPathComponent("docs/examples.md"), encoding: .utf8)
        return ProducerTests.codeBlocks(text, language: "sh").flatMap { $0.split(separator: "\n") }.map(String.init)
            .filter { $0.hasPrefix(prefix) }
    }

    static func command(startingWith prefix: String) throws -> String {
        let found = try commands(startingWith: prefix)
        guard found.count == 1, let command = found.first else {
            throw TestFailure("docs/examples.md should show one command starting with \(prefix); it shows \(found)")
        }
        return command
    }

    /// A `herald serve --dev` node, as `scripts/run` starts it, with its output in `herald.log`.
    struct DevNode {
        let process: HeraldProcess
        let folder: URL
        let port: Int
        let apiPort: Int
        var log: URL { folder.appendingPathComponent("herald.log") }

        static func start() async throws -> DevNode {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-example-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let port = try freePort()
            let apiPort = try freePort()
            let process = try HeraldProcess(
                ["serve", "--dev", "--port", String(port), "--host", "127.0.0.1", "--api-port", String(apiPort), "--api-host", "127.0.0.1",
                 "--node-id", "example"] + (try documentedArguments())
            )
            _ = try await process.waitFor(#"HERALD_API_KEYS=(\S+)"#, within: .seconds(60))
            _ = try await process.waitFor(#"port=(\d+) \[\w+\] WebSocket listener open"#, within: .seconds(60))
            try process.text.write(to: folder.appendingPathComponent("herald.log"), atomically: true, encoding: .utf8)
            return DevNode(process: process, folder: folder, port: port, apiPort: apiPort)
        }

        func stop() {
            process.stop()
            try? FileManager.default.removeItem(at: folder)
        }

        /// What docs/examples.md's `scripts/run … > herald.log &` passes on to `herald serve --dev`.
        static func documentedArguments() throws -> [String] {
            let command = try ExampleTests.command(startingWith: "scripts/run")
            guard let redirect = command.range(of: " > herald.log &") else {
                throw TestFailure("docs/examples.md should start the node as scripts/run … > herald.log &, not \(command)")
            }
            return try shellWords(String(command[command.index(command.startIndex, offsetBy: "scripts/run".count)..<redirect.lowerBound]))
        }

        /// Words as `sh` splits them, for the quoting docs use: spaces, and '…' around a word with spaces.
        static func shellWords(_ text: String) throws -> [String] {
            var words: [String] = []
            var word: String? = nil
            var quoted = false
            for character in text {
                switch character {
                case "'": quoted.toggle(); word = word ?? ""
                case " " where !quoted: if let done = word { words.append(done) }; word = nil
                case "\"", "\\", "$", "`": throw TestFailure("docs/examples.md's scripts/run line uses \(character); only '…' quoting is read here")
                default: word = (word ?? "") + String(character)
                }
            }
            guard !quoted else { throw TestFailure("an unclosed ' in: \(text)") }
            if let done = word { words.append(done) }
            return words
        }

        /// A connection to the node as `user`, with a token signed by the node's random secret.
        func connect(_ user: String, channels: [String] = []) async throws -> TestConnection {
            let secret = try await process.waitFor(#"HERALD_JWT_SECRET=(\S+)"#)
            let token = try await TokenIssuer(hmacSecret: secret).token(
                user: user, device: nil, channels: channels, expiresAt: Date().addingTimeInterval(600)
            )
            let session = try await HeraldClient(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton)
                .connect(token: token, channels: channels)
            return try await TestConnection.open(session)
        }

        /// `command` from the repository's root, `herald.log` being this node's.
        func run(_ command: String) throws -> (status: Int32, output: String) {
            let script = "cd '\(repositoryRoot().path)' && " + command.replacingOccurrences(of: "herald.log", with: log.path)
            return try HeraldNodeTestSupport.run("/bin/sh", ["-e", "-c", script])
        }
    }

    @Test("the producer example writes a shipped order straight to the events topic of scripts/run's node: the user and the channel get it, with its id")
    func producerExample() async throws {
        _ = try pythonWith(module: "confluent_kafka", package: "confluent-kafka")
        let command = try Self.command(startingWith: "python3 examples/producer/")
        let node = try await DevNode.start()
        defer { node.stop() }
        let alice = try await node.connect("alice", channels: ["orders"])
        defer { alice.session.close() }
        let result = try node.run(command)
        #expect(result.status == 0, "\(command)\n\(result.output)")
        var received: [ServerEvent.Message] = []
        for _ in 0..<2 { received.append(try await alice.nextMessage(within: .seconds(30))) }
        #expect(Set(received.map(\.stream)) == ["u", "c:orders"])
        for message in received {
            #expect(message.id == "order-1235-shipped")
            let data = try #require(try JSONSerialization.jsonObject(with: Data(message.data.utf8)) as? [String: Any])
            #expect(data["order"] as? Int == 1235 && data["status"] as? String == "shipped", "\(message.data)")
        }
        #expect(!node.process.text.contains("misrouted"), "murmur2 placed every record where Herald reads it")
    }

    /// The image-filter runner started with the documented command against a dev node's log.
    struct ImageFilter {
        let node: DevNode
        let runner: HeraldProcess
        let url: String
        var folder: URL { node.folder }
        var port: Int { node.port }

        static func start() async throws -> ImageFilter {
            let command = try ExampleTests.command(startingWith: "python3 examples/image-filter/runner.py")
            let node = try await DevNode.start()
            // The documented command, with this run's ports: its defaults are scripts/run's.
            let arguments = command.replacingOccurrences(of: "herald.log", with: node.log.path)
                .split(separator: " ").dropFirst().map(String.init)
                + ["--port", "0", "--herald-api", "http://127.0.0.1:\(node.apiPort)", "--herald-public", "http://127.0.0.1:\(node.port)"]
            let runner = try HeraldProcess(executable: try requiredPython(for: "the image-filter example"), arguments.map {
                $0.hasPrefix("examples/") ? repositoryRoot().appendingPathComponent($0).path : $0
            })
            let url = try await runner.waitFor(#"image-filter example on (http://127\.0\.0\.1:\d+)/"#, within: .seconds(30))
            return ImageFilter(node: node, runner: runner, url: url)
        }

        func stop() {
            runner.kill()
            node.stop()
        }

        /// A sample PNG written by the documented command.
        func sample() throws -> URL {
            let command = try ExampleTests.command(startingWith: "python3 examples/image-filter/sample.py")
            let file = folder.appendingPathComponent("sample.png")
            let script = "cd '\(repositoryRoot().path)' && " + command.replacingOccurrences(of: "sample.png", with: file.path)
            let result = try run("/bin/sh", ["-e", "-c", script])
            guard result.status == 0 else { throw TestFailure("\(script): \(result.output)") }
            return file
        }

        /// Runs Python next to the example's modules; its last line of output.
        func python(_ script: String, _ arguments: [String]) throws -> String {
            let directory = repositoryRoot().appendingPathComponent("examples/image-filter").path
            let result = try run(try requiredPython(for: "the image-filter example"), ["-c", "import sys; sys.path.insert(0, '\(directory)')\n" + script] + arguments)
            guard result.status == 0 else { throw TestFailure("python failed: \(result.output)\nrunner: \(runner.text)") }
            return result.output.split(separator: "\n").last.map(String.init) ?? ""
        }
    }

    /// Checks a result: a PNG of the sample's size whose every pixel is sepia (red ≥ green ≥ blue).
    static let checkResult = """
    import pngfile, urllib.request
    width, height, rows = pngfile.read(urllib.request.urlopen(sys.argv[1], timeout=10).read())
    sepia = all(row[i] >= row[i + 1] >= row[i + 2] for row in rows for i in range(0, len(row), 3))
    print(f"{width}x{height} sepia={sepia}")
    """

    @Test("image-filter: the runner filters an upload and the job-done push reaches the uploader's connection, with the result's URL; bad uploads are refused or reported")
    func imageFilterRunner() async throws {
        let example = try await ImageFilter.start()
        defer { example.stop() }
        let signIn = try await api(Int(example.url.split(separator: ":").last!)!, "GET", "/token", key: nil)
        let user = try #require(signIn.json["user"] as? String)
        let token = try #require(signIn.json["token"] as? String)
        let session = try await HeraldClient(host: "127.0.0.1", port: example.port, group: MultiThreadedEventLoopGroup.singleton).connect(token: token)
        let connection = try await TestConnection.open(session)
        defer { session.close() }

        let upload = """
        import urllib.request, urllib.error, json
        def post(body, token):
            request = urllib.request.Request(sys.argv[1] + "/upload", data=body, method="POST", headers={"Authorization": "Bearer " + token})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.load(response)
            except urllib.error.HTTPError as error:
                return error.code, json.load(error)
        good = post(open(sys.argv[2], "rb").read(), sys.argv[3])
        unsigned = post(b"x", "not-a-token")
        broken = post(b"not a png at all", sys.argv[3])
        print(json.dumps({"good": good, "unsigned": unsigned[0], "broken": broken}))
        """
        let answers = try example.python(upload, [example.url, try example.sample().path, token])
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(answers.utf8)) as? [String: Any])
        let good = try #require(parsed["good"] as? [Any])
        #expect(good.first as? Int == 202)
        let job = try #require((good.last as? [String: Any])?["job"] as? String)
        #expect(parsed["unsigned"] as? Int == 401)
        let brokenJob = try #require(((parsed["broken"] as? [Any])?.last as? [String: Any])?["job"] as? String)

        var results: [String: [String: Any]] = [:]
        for _ in 0..<2 {
            let message = try await connection.nextMessage(within: .seconds(60))
            #expect(message.stream == "u", "pushed to the uploader's own stream")
            let data = try #require(try JSONSerialization.jsonObject(with: Data(message.data.utf8)) as? [String: Any])
            results[data["job"] as? String ?? ""] = data
        }
        let done = try #require(results[job], "no push for job \(job) to \(user): \(results)")
        #expect(done["type"] as? String == "job-done")
        let url = try #require(done["url"] as? String)
        #expect(url.hasPrefix(example.url + "/results/"))
        #expect(try example.python(Self.checkResult, [url]) == "160x120 sepia=True")
        #expect(results[brokenJob]?["type"] as? String == "job-failed", "a file that is not a PNG is reported to the uploader: \(results)")
    }

    @Test("image-filter in headless Chromium: the page uploads, the runner's push shows the filtered image without polling; the screenshot goes to docs/images/")
    func imageFilterInBrowser() async throws {
        let example = try await ImageFilter.start()
        defer { example.stop() }
        let sample = try example.sample()
        let browser = try await Browser.start()
        defer { Task { await browser.quit() } }
        try await browser.open(example.url + "/")
        func text(_ id: String) async throws -> String {
            (try await browser.evaluate("return document.getElementById('\(id)').textContent") as? String) ?? ""
        }
        func waitUntil(_ what: String, _ condition: () async throws -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(60)
            while try await !condition() {
                guard ContinuousClock.now < deadline else {
                    throw TestFailure("the page did not reach: \(what); status \((try? await text("status")) ?? ""); runner: \(example.runner.text)")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        try await waitUntil("connected") { try await text("state") == "open" }
        try await browser.choose(file: sample.path, for: "#file")
        try await waitUntil("done") { try await text("status") == "done" }
        try await waitUntil("the filtered image shown") {
            (try await browser.evaluate("return document.getElementById('result').naturalWidth") as? NSNumber)?.intValue == 160
        }
        let source = try #require(try await browser.evaluate("return document.getElementById('result').src") as? String)
        #expect(try example.python(Self.checkResult, [source]) == "160x120 sepia=True")
        try await browser.screenshot(to: repositoryRoot().appendingPathComponent("docs/images/image-filter.png"))
    }
}

extension ExampleTests {
    /// The live-comments server started with the documented command against a dev node's log.
    struct LiveComments {
        let node: DevNode
        let server: HeraldProcess
        let url: String

        static func start() async throws -> LiveComments {
            let command = try ExampleTests.command(startingWith: "python3 examples/live-comments/server.py")
            let node = try await DevNode.start()
            let arguments = command.replacingOccurrences(of: "herald.log", with: node.log.path)
                .split(separator: " ").dropFirst().map(String.init)
                + ["--port", "0", "--herald-public", "http://127.0.0.1:\(node.port)"]
            let server = try HeraldProcess(executable: try requiredPython(for: "the live-comments example"), arguments.map {
                $0.hasPrefix("examples/") ? repositoryRoot().appendingPathComponent($0).path : $0
            })
            let url = try await server.waitFor(#"live-comments example on (http://127\.0\.0\.1:\d+)/"#, within: .seconds(30))
            return LiveComments(node: node, server: server, url: url)
        }

        var port: Int { Int(url.split(separator: ":").last!)! }

        func stop() {
            server.kill()
            node.stop()
        }
    }

    @Test("live-comments: the demo sign-in signs a token the node accepts, refuses a bad name, and the node it runs against serves the video namespace to anonymous viewers as configured")
    func liveCommentsServer() async throws {
        let example = try await LiveComments.start()
        defer { example.stop() }
        let signIn = try await api(example.port, "GET", "/token?name=ana", key: nil)
        #expect(signIn.status == 200 && signIn.json["user"] as? String == "ana")
        let token = try #require(signIn.json["token"] as? String)
        for bad in ["", "a%20b", String(repeating: "x", count: 33), "%3Cscript%3E"] {
            let refused = try await api(example.port, "GET", "/token?name=\(bad)", key: nil)
            #expect(refused.status == 400 && refused.body.contains("a name is"), "\(bad): \(refused.status)")
        }
        #expect(try await api(example.port, "GET", "/?video=%3Cx%3E", key: nil).status == 400)
        let page = try await api(example.port, "GET", "/?video=trailer", key: nil)
        #expect(page.body.contains("http://127.0.0.1:\(example.node.port)/herald.js") && page.body.contains(#"const channel = "video:trailer""#))

        let client = HeraldClient(host: "127.0.0.1", port: example.node.port, group: MultiThreadedEventLoopGroup.singleton)
        let viewer = try await TestConnection.open(try await client.connectAnonymously(channels: ["video:trailer"]))
        defer { viewer.session.close() }
        let ana = try await TestConnection.open(try await client.connect(token: token, channels: ["video:trailer"]))
        defer { ana.session.close() }
        ana.session.publish(json: #"{"text":"hello"}"#, toChannel: "video:trailer", id: "c-1")
        let comment = try await viewer.nextMessage(within: .seconds(30))
        #expect(comment.stream == "c:video:trailer" && comment.user == "ana" && comment.data == #"{"text":"hello"}"#)
        viewer.session.publish(json: #"{"text":"anonymous"}"#, toChannel: "video:trailer", id: "c-2")
        guard case .publishFailed(let id, let code, _) = try await viewer.next(within: .seconds(30)) else {
            throw TestFailure("an anonymous viewer's comment was not refused")
        }
        #expect(id == "c-2" && code == "publish-not-allowed", "the namespace needs a user to post")
    }

    @Test("live-comments in headless Chromium: a signed-in page posts, an anonymous page shows it live under the poster's name, and a page opened later shows it from history; the screenshot goes to docs/images/")
    func liveCommentsInBrowser() async throws {
        let example = try await LiveComments.start()
        defer { example.stop() }
        let writer = try await Browser.start()
        defer { Task { await writer.quit() } }
        let reader = try await Browser.start()
        defer { Task { await reader.quit() } }

        func text(_ browser: Browser, _ id: String) async throws -> String {
            (try await browser.evaluate("return document.getElementById('\(id)').textContent") as? String) ?? ""
        }
        /// The comments a page shows, in its order: user, text, and how it arrived (history or live).
        func comments(_ browser: Browser) async throws -> [[String]] {
            let rows = try await browser.evaluate("""
                return [...document.querySelectorAll('#comments li[data-offset]')].map((li) =>
                  [li.querySelector('.user').textContent, li.querySelector('.text').textContent, li.dataset.from])
                """)
            return (rows as? [[String]]) ?? []
        }
        func waitUntil(_ what: String, _ condition: () async throws -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(60)
            while try await !condition() {
                guard ContinuousClock.now < deadline else {
                    throw TestFailure("the pages did not reach: \(what); writer \((try? await comments(writer)) ?? []), reader \((try? await comments(reader)) ?? []), problem \((try? await text(writer, "problem")) ?? ""), writer state \((try? await text(writer, "state")) ?? "") \((try? await text(writer, "loaded")) ?? ""), reader state \((try? await text(reader, "state")) ?? "") \((try? await text(reader, "loaded")) ?? "")")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }

        try await reader.open(example.url + "/")
        try await writer.open(example.url + "/")
        for page in [reader, writer] {
            try await waitUntil("connected without a token, history read") {
                let state = try await text(page, "state")
                let loaded = try await text(page, "loaded")
                return state == "open" && loaded == "0 from history"
            }
        }
        #expect(try await reader.evaluate("return getComputedStyle(document.getElementById('post')).display") as? String == "none", "no posting without signing in")

        _ = try await writer.evaluate("document.getElementById('name').value = 'ana'; document.getElementById('sign-in').requestSubmit()")
        try await waitUntil("signed in") {
            let who = try await text(writer, "who")
            let state = try await text(writer, "state")
            let post = try await writer.evaluate("return getComputedStyle(document.getElementById('post')).display") as? String
            let signIn = try await writer.evaluate("return getComputedStyle(document.getElementById('sign-in')).display") as? String
            return who == "signed in as ana" && state == "open" && post != "none" && signIn == "none"
        }
        _ = try await writer.evaluate("document.getElementById('text').value = 'first!'; document.getElementById('post').requestSubmit()")
        try await waitUntil("the comment shown live on the anonymous page") { try await comments(reader) == [["ana", "first!", "live"]] }
        try await waitUntil("the comment shown on the writer's page") { try await comments(writer).map { Array($0.prefix(2)) } == [["ana", "first!"]] }

        try await reader.open(example.url + "/")
        try await waitUntil("a page opened later shows the comment from history") {
            let loaded = try await text(reader, "loaded")
            let shown = try await comments(reader)
            return loaded == "1 from history" && shown == [["ana", "first!", "history"]]
        }
        try await reader.screenshot(to: repositoryRoot().appendingPathComponent("docs/images/live-comments.png"))
    }
}

extension Browser {
    /// Chooses a file in the page's file input, as a user does (WebDriver's element send keys).
    func choose(file path: String, for selector: String) async throws {
        let body = try JSONSerialization.data(withJSONObject: ["using": "css selector", "value": selector])
        let found = try await api(driverPort, "POST", "/session/\(session)/element", body: String(decoding: body, as: UTF8.self), key: nil)
        guard let element = (found.json["value"] as? [String: Any])?.values.first as? String else {
            throw TestFailure("no element \(selector): \(found.body)")
        }
        let keys = try JSONSerialization.data(withJSONObject: ["text": path])
        let sent = try await api(driverPort, "POST", "/session/\(session)/element/\(element)/value", body: String(decoding: keys, as: UTF8.self), key: nil)
        guard sent.status == 200 else { throw TestFailure("choosing \(path) failed: \(sent.body)") }
    }
}
