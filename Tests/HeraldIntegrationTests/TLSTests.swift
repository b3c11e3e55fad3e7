import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// TLS on both ports, with certificates openssl makes in each test: `wss://` through the Swift client
/// and Chromium, a certificate replaced on disk while the node runs, and client certificates on the
/// internal port.
@Suite("TLS on the public and internal ports", .serialized)
struct TLSTests {
    static let apiPortPattern = #"(?:Server started and listening on|listening on) [^:]*:(\d+)"#

    func token(_ user: String) async throws -> String {
        try await TokenIssuer(hmacSecret: testSecret).token(user: user, device: "tls", channels: ["news"], expiresAt: Date().addingTimeInterval(600))
    }

    /// Opens `wss://127.0.0.1:port` trusting only the test CA, and returns the connection with the
    /// certificate the node presented.
    func open(_ port: Int, _ certificates: TestCertificates, user: String, group: any EventLoopGroup) async throws -> (TestConnection, NIOSSLCertificate?) {
        let client = try HeraldClient(
            url: URL(string: "wss://127.0.0.1:\(port)")!, group: group, tls: HeraldClient.tls(trustingCAFile: certificates.caFile)
        )
        let session = try await client.connect(token: try await token(user))
        let connection = try await TestConnection.open(session)
        let presented = try await session.connection.channel.nioSSL_peerCertificate().get()
        return (connection, presented)
    }

    @Test("wss:// with a certificate made by openssl: the Swift client receives a push; a certificate replaced on disk is served to new connections without a restart while an open connection stays up; an invalid replacement keeps the previous one and is counted")
    func certificateReloadedWithoutDroppingConnections() async throws {
        let certificates = try TestCertificates.make()
        defer { certificates.remove() }
        let served = try certificates.issue("server", commonName: "herald-first", serial: 1001)
        let second = try certificates.issue("second", commonName: "herald-second", serial: 1002)
        let node = try await NodeProcesses.start(nodeArguments: ["--tls-cert-file", served.certificate, "--tls-key-file", served.key])
        defer { node.stop() }
        let apiPort = Int(try await node.node.waitFor(Self.apiPortPattern))!
        let group = MultiThreadedEventLoopGroup.singleton
        let firstCertificate = try NIOSSLCertificate.fromPEMFile(served.certificate)
        let secondCertificate = try NIOSSLCertificate.fromPEMFile(second.certificate)

        let (kept, keptPresented) = try await open(node.port, certificates, user: "tina", group: group)
        #expect(keptPresented == firstCertificate.first)
        #expect(try await api(apiPort, "POST", "/v1/push", body: #"{"to":{"users":["tina"]},"data":{"n":1}}"#).status == 202)
        #expect(try await kept.nextMessage(within: .seconds(15)).data == #"{"n":1}"#)

        // A client that does not trust the test CA is refused by its own TLS check.
        let untrusting = try HeraldClient(url: URL(string: "wss://127.0.0.1:\(node.port)")!, group: group)
        await #expect(throws: (any Error).self) { _ = try await untrusting.connect(token: try await token("tina")) }

        try certificates.replace(served, with: second)
        let deadline = ContinuousClock.now + .seconds(20)
        var presented: NIOSSLCertificate? = nil
        while presented != secondCertificate.first {
            guard ContinuousClock.now < deadline else { throw TestFailure("new connections still get the first certificate 20 s after it was replaced") }
            try await Task.sleep(for: .milliseconds(500))
            let (probe, certificate) = try await open(node.port, certificates, user: "uma", group: group)
            presented = certificate
            probe.session.close()
        }
        // The connection opened before the replacement is still open, on its first certificate.
        #expect(try await api(apiPort, "POST", "/v1/push", body: #"{"to":{"users":["tina"]},"data":{"n":2}}"#).status == 202)
        #expect(try await kept.nextMessage(within: .seconds(15)).data == #"{"n":2}"#)
        #expect(try await kept.session.connection.channel.nioSSL_peerCertificate().get() == firstCertificate.first)

        // A replacement that is not a certificate: logged, counted, and the second pair stays in use.
        try "not a certificate\n".write(toFile: served.certificate + ".new", atomically: false, encoding: .utf8)
        #expect(rename(served.certificate + ".new", served.certificate) == 0)
        let failureDeadline = ContinuousClock.now + .seconds(20)
        while !(try await api(apiPort, "GET", "/metrics").body.contains(#"herald_tls_reload_failures_total{port="public"} 1"#)) {
            guard ContinuousClock.now < failureDeadline else {
                throw TestFailure("no reload failure counted: \(try await api(apiPort, "GET", "/metrics").body.split(separator: "\n").filter { $0.contains("tls") })")
            }
            try await Task.sleep(for: .milliseconds(500))
            let (probe, certificate) = try await open(node.port, certificates, user: "uma", group: group)
            #expect(certificate == secondCertificate.first)
            probe.session.close()
        }
        #expect(node.node.text.contains("TLS certificate not reloaded; the previous one stays in use"))
        let (after, afterPresented) = try await open(node.port, certificates, user: "vic", group: group)
        #expect(afterPresented == secondCertificate.first)
        after.session.close()
        kept.session.close()
    }

    @Test("the demo page over https: Chromium opens it from a node with a test CA's certificate, connects with wss:// to the same origin and shows a push")
    func demoPageOverHTTPS() async throws {
        let certificates = try TestCertificates.make()
        defer { certificates.remove() }
        let served = try certificates.issue("server", commonName: "localhost", serial: 2001)
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let apiPort = try freePort()
        let node = try HeraldProcess(
            ["serve", "--dev", "--kafka-brokers", bootstrap, "--port", "0", "--host", "127.0.0.1", "--api-port", String(apiPort),
             "--api-host", "127.0.0.1", "--node-id", "tls-demo"],
            environment: ["HERALD_API_KEYS": testAPIKey, "HERALD_TLS_CERT_FILE": served.certificate, "HERALD_TLS_KEY_FILE": served.key]
        )
        defer { node.stop() }
        let port = Int(try await node.waitFor(#"port=(\d+) \[\w+\] WebSocket listener open"#))!
        #expect(try await node.waitFor(#"the demo page is at (\w+)://"#) == "https")

        // The test CA is not in Chromium's store: it is told to accept this one server key instead.
        let profile = certificates.folder.appendingPathComponent("chromium-profile")
        let browser = try await Browser.start(arguments: [
            "--ignore-certificate-errors-spki-list=\(try certificates.spkiHash(served.certificate))", "--user-data-dir=\(profile.path)",
        ])
        defer { Task { await browser.quit() } }
        try await browser.open("https://localhost:\(port)/?user=alice&device=browser")
        func text(_ id: String) async throws -> String {
            (try await browser.evaluate("return document.getElementById('\(id)').textContent") as? String) ?? ""
        }
        func waitUntil(_ what: String, _ condition: () async throws -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(30)
            while try await !condition() {
                guard ContinuousClock.now < deadline else {
                    let page = (try? await browser.evaluate("return location.href + ' ' + document.body.innerText.slice(0, 400)")) ?? nil
                    throw TestFailure("the page did not reach: \(what); page: \(String(describing: page))")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        try await waitUntil("state open") { try await text("state") == "open" }
        #expect(try await browser.evaluate("return location.protocol") as? String == "https:")
        #expect(try await text("node") == "tls-demo")
        #expect(try await api(apiPort, "POST", "/v1/push", body: #"{"to":{"users":["alice"]},"data":{"over":"wss"}}"#).status == 202)
        try await waitUntil("the push on the page") {
            let cells = try await browser.evaluate("return Array.from(document.querySelectorAll('#messages tr')).map(r => r.cells[2].textContent)") as? [String]
            return cells == [#"{"over":"wss"}"#]
        }
    }

    @Test("the internal port over TLS with a required client certificate, set in a configuration file: curl with the client certificate gets 200, without one the handshake fails")
    func internalPortRequiresAClientCertificate() async throws {
        let curl = try requiredTool("curl", package: "Debian's curl")
        let certificates = try TestCertificates.make()
        defer { certificates.remove() }
        let server = try certificates.issue("api", commonName: "herald-api", serial: 3001)
        let client = try certificates.issue("client", commonName: "pusher", serial: 3002, client: true)
        // Through the configuration file's keys, as the flags' names.
        let settings = try JSONSerialization.data(withJSONObject: [
            "api-tls-cert-file": server.certificate, "api-tls-key-file": server.key, "api-tls-client-ca-file": certificates.caFile,
        ])
        let file = certificates.folder.appendingPathComponent("herald.json")
        try settings.write(to: file)
        let node = try await NodeProcesses.start(nodeArguments: ["--config", file.path])
        defer { node.stop() }
        let apiPort = Int(try await node.node.waitFor(Self.apiPortPattern))!
        func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: curl)
            process.arguments = ["--silent", "--show-error", "--max-time", "10"] + arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        let url = "https://127.0.0.1:\(apiPort)"
        let with = try run(["--cacert", certificates.caFile, "--cert", client.certificate, "--key", client.key, "\(url)/healthz"])
        #expect(with.status == 0)
        #expect(with.output == #"{"status":"ok"}"#)
        let pushed = try run([
            "--cacert", certificates.caFile, "--cert", client.certificate, "--key", client.key, "-o", "/dev/null", "-w", "%{http_code}",
            "-H", "Authorization: Bearer \(testAPIKey)", "-H", "Content-Type: application/json",
            "--data", #"{"to":{"users":["walt"]},"data":{"n":1}}"#, "\(url)/v1/push",
        ])
        #expect(pushed.output == "202")
        // `herald push` over the same https port (NIO and NIOSSL, no libcurl): with the certificate it
        // pushes, without it the handshake fails and the command says so.
        func herald(_ arguments: [String]) throws -> (status: Int32, output: String) {
            try HeraldNodeTestSupport.run(try heraldExecutable().path, ["push", "--api", url, "--api-key", testAPIKey, "--api-ca-file", certificates.caFile] + arguments)
        }
        let cli = try herald(["--api-client-cert-file", client.certificate, "--api-client-key-file", client.key, "--user", "walt", #"{"n":2}"#])
        #expect(cli.status == 0 && cli.output.contains(#""stream":"u""#), "\(cli.output)")
        let cliWithout = try herald(["--user", "walt", #"{"n":3}"#])
        #expect(cliWithout.status != 0 && cliWithout.output.contains("did not reach"), "\(cliWithout.output)")
        let without = try run(["--cacert", certificates.caFile, "\(url)/healthz"])
        #expect(without.status != 0, "no client certificate, yet: \(without.output)")
        #expect(!without.output.contains(#""status":"ok""#))
        let plain = try run(["http://127.0.0.1:\(apiPort)/healthz"])
        #expect(plain.status != 0 || !plain.output.contains(#""status":"ok""#), "plain HTTP was answered: \(plain.output)")
        // A client certificate from another CA is refused too.
        let stranger = try TestCertificates.make()
        defer { stranger.remove() }
        let foreign = try stranger.issue("client", commonName: "stranger", serial: 4001, client: true)
        let refused = try run(["--cacert", certificates.caFile, "--cert", foreign.certificate, "--key", foreign.key, "\(url)/healthz"])
        #expect(refused.status != 0, "a certificate from another CA, yet: \(refused.output)")
    }

    @Test("a certificate without its key, or a key that is not the certificate's, stops the node at start with a message naming the file")
    func badPairRefusedAtStart() async throws {
        let certificates = try TestCertificates.make()
        defer { certificates.remove() }
        let first = try certificates.issue("first", commonName: "a", serial: 5001)
        let other = try certificates.issue("other", commonName: "b", serial: 5002)
        let alone = try HeraldProcess(["serve", "--dev", "--tls-cert-file", first.certificate, "--port", "0", "--api-port", "0", "--host", "127.0.0.1", "--api-host", "127.0.0.1"])
        #expect(try await alone.exitStatus(within: .seconds(20)) != 0)
        #expect(alone.text.contains("--tls-cert-file needs --tls-key-file"), "\(alone.text)")
        let mismatched = try HeraldProcess([
            "serve", "--dev", "--tls-cert-file", first.certificate, "--tls-key-file", other.key, "--port", "0", "--api-port", "0",
            "--host", "127.0.0.1", "--api-host", "127.0.0.1",
        ])
        #expect(try await mismatched.exitStatus(within: .seconds(20)) != 0)
        #expect(mismatched.text.contains("does not match the certificate in \(first.certificate)"), "\(mismatched.text)")
    }

    @Test("docs/tls.md's commands, run as written: openssl makes the CA and the certificates, the node serves https:// and wss://, and curl reaches the internal port with the client certificate and not without it")
    func documentedCommands() async throws {
        let curl = try requiredTool("curl", package: "Debian's curl")
        _ = try requiredTool("openssl", package: "Debian's openssl")
        let text = try String(contentsOf: repositoryRoot().appendingPathComponent("docs/tls.md"), encoding: .utf8)
        let section = try #require(text.components(separatedBy: "## Trying it locally").last?.components(separatedBy: "\n## ").first)
        let blocks = section.components(separatedBy: "```sh\n").dropFirst().map { $0.components(separatedBy: "```").first ?? "" }
        #expect(blocks.count == 2, "the two blocks of 'Trying it locally'")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-tls-docs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func shell(_ line: String) throws -> (status: Int32, output: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = ["-c", line]
            process.currentDirectoryURL = folder
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        var ran = 0
        for block in blocks {
            var node: HeraldProcess? = nil
            defer { node?.stop() }
            var apiPort = 0
            for line in block.replacingOccurrences(of: "\\\n", with: " ").split(separator: "\n").map(String.init) {
                let parts = line.components(separatedBy: "   # ")
                let command = parts[0].trimmingCharacters(in: .whitespaces)
                ran += 1
                if command.hasPrefix("herald serve") {
                    // The documented node, on free ports; its file arguments are the files made above.
                    let arguments = command.split(separator: " ").dropFirst().map { word in
                        FileManager.default.fileExists(atPath: folder.appendingPathComponent(String(word)).path)
                            ? folder.appendingPathComponent(String(word)).path : String(word)
                    }
                    let started = try HeraldProcess(arguments + ["--port", "0", "--api-port", "0", "--host", "127.0.0.1", "--api-host", "127.0.0.1"])
                    node = started
                    let port = Int(try await started.waitFor(#"port=(\d+) \[\w+\] WebSocket listener open"#))!
                    apiPort = Int(try await started.waitFor(Self.apiPortPattern))!
                    if command.contains("--tls-cert-file") {
                        let page = try shell("\(curl) --silent --show-error --cacert ca.pem https://127.0.0.1:\(port)/")
                        #expect(page.status == 0 && page.output.contains("<html"), "the demo page over https: \(page.output.prefix(300))")
                        #expect(try await started.waitFor(#"example: (wss)://"#) == "wss")
                        let token = try await started.waitFor(#"example: wss://\S+&token=(\S+)"#)
                        let client = try HeraldClient(
                            url: URL(string: "wss://127.0.0.1:\(port)")!, group: MultiThreadedEventLoopGroup.singleton,
                            tls: HeraldClient.tls(trustingCAFile: folder.appendingPathComponent("ca.pem").path)
                        )
                        let connection = try await TestConnection.open(try await client.connect(token: token, channels: ["news"]))
                        connection.session.close()
                    }
                } else if command.hasPrefix("curl") {
                    let result = try shell(command.replacingOccurrences(of: "127.0.0.1:8081", with: "127.0.0.1:\(apiPort)"))
                    if parts.count > 1, parts[1].hasPrefix("{") {
                        // stdout and curl's progress meter on stderr, in one pipe: the body is the output's end.
                        #expect(result.status == 0 && result.output.hasSuffix(parts[1].trimmingCharacters(in: .whitespaces)), "\(command): \(result.output)")
                    } else {
                        #expect(result.status != 0, "\(command) should fail: \(result.output)")
                    }
                } else {
                    let result = try shell(command)
                    #expect(result.status == 0, "\(command): \(result.output)")
                }
            }
        }
        #expect(ran == 11)
    }
}
