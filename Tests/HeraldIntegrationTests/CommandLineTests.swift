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

    /// A scratch folder for configuration files.
    static func folder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-config-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    @Test("a configuration file sets what flags and the environment do not; the environment wins over it, a flag over both; secrets come from files")
    func configurationFilePrecedence() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "2", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let filePort = try freePort()
        let flagPort = try freePort()
        let apiPort = try freePort()
        try (testSecret + "\n").write(to: folder.appendingPathComponent("jwt-secret"), atomically: true, encoding: .utf8)
        try "# mounted from a Secret\n\(testAPIKey)\n".write(to: folder.appendingPathComponent("api-keys"), atomically: true, encoding: .utf8)
        let config = """
            {"kafka-brokers": "\(bootstrap)", "port": \(filePort), "host": "127.0.0.1", "api-port": \(apiPort), "api-host": "127.0.0.1",
             "node-id": "from-file", "jwt-secret-file": "\(folder.appendingPathComponent("jwt-secret").path)",
             "api-keys-file": "\(folder.appendingPathComponent("api-keys").path)", "metrics": true,
             "kafka-properties": {"client.rack": "rack,with,commas"}, "drain-seconds": 1, "drain-delay-seconds": 0,
             "namespaces": {"video": {"subscribe": "anonymous", "publish": true, "history": 50}}, "anonymous-max-connections": 5}
            """
        try config.write(to: folder.appendingPathComponent("herald.json"), atomically: true, encoding: .utf8)
        let node = try HeraldProcess(
            ["serve", "--config", folder.appendingPathComponent("herald.json").path, "--port", String(flagPort)],
            environment: ["HERALD_NODE_ID": "from-env", "HERALD_JWT_SECRET": "", "HERALD_API_KEYS": ""]
        )
        defer { node.stop() }
        let port = Int(try await node.waitFor(#"port=(\d+) \[\w+\] WebSocket listener open"#))!
        #expect(port == flagPort, "the flag wins over the file's port")
        // The API port and the keys came from the file only; the node id from the environment.
        let status = try await api(apiPort, "GET", "/v1/node", key: testAPIKey)
        #expect(status.status == 200, "\(status.body)")
        #expect(status.json["node"] as? String == "from-env")
        // The token secret came from its file: a token signed with it opens a connection.
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        let token = try await issuer.token(user: "configured", expiresAt: Date().addingTimeInterval(600))
        let client = HeraldClient(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton)
        let connection = try await TestConnection.open(try await client.connect(token: token))
        #expect(connection.welcome.node == "from-env")
        connection.session.close()
        // The namespaces came from the file's object form: a connection without a token follows video:1.
        let anonymous = try await TestConnection.open(try await client.connectAnonymously(channels: ["video:1"]))
        #expect(anonymous.welcome.positions.keys.sorted() == ["c:video:1"])
        anonymous.session.close()
    }

    @Test("namespaces that cannot be meant, as a flag, a variable or a file's object, stop herald serve with a message naming the problem")
    func namespaceErrors() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let herald = try heraldExecutable().path
        let serve = [herald, "serve", "--kafka-brokers", "127.0.0.1:1", "--jwt-secret", testSecret, "--api-keys", testAPIKey]
        let (flagStatus, flagOutput) = try run("/usr/bin/env", serve + ["--namespaces", "video subscribe=everyone"])
        #expect(flagStatus != 0 && flagOutput.contains("subscribe must be anonymous, token, grant or pattern"), "\(flagOutput)")
        let (envStatus, envOutput) = try run("/usr/bin/env", ["HERALD_NAMESPACES=video history=99999; chat"] + serve)
        #expect(envStatus != 0 && envOutput.contains("HERALD_NAMESPACES") && envOutput.contains("history must be"), "\(envOutput)")
        let file = folder.appendingPathComponent("herald.json")
        for (text, expected) in [
            (#"{"namespaces": {"video": {"colour": "red"}}}"#, #"unknown setting "colour""#),
            (#"{"namespaces": {"video": {"subscribe": ["anonymous"]}}}"#, "namespaces.video.subscribe must be a word"),
            (#"{"namespaces": {"video": "anonymous"}}"#, "namespaces.video must be an object"),
            (#"{"anonymous-accept-rate": 0}"#, "anonymous accept rate"),
        ] {
            try text.write(to: file, atomically: true, encoding: .utf8)
            let (status, output) = try run("/usr/bin/env", serve + ["--config", file.path])
            #expect(status != 0 && output.contains(expected), "\(text): \(output)")
        }
    }

    @Test("--kafka-properties-file passes a value with commas to librdkafka whole; --kafka-properties could not")
    func kafkaPropertiesFile() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("kafka.properties")
        // An invalid value on purpose: librdkafka's refusal quotes the value it was given.
        try "# librdkafka properties\n\nclient.rack = rack-1\ncompression.codec=gzip,lz4\n".write(to: file, atomically: true, encoding: .utf8)
        let (status, output) = try run(try heraldExecutable().path, ["topics", "--kafka-brokers", "127.0.0.1:1", "--kafka-properties-file", file.path])
        #expect(status != 0)
        #expect(output.contains(#"compression.codec"#) && output.contains(#""gzip,lz4""#), "\(output)")
        // The same on the list form splits at the comma.
        let (listStatus, listOutput) = try run(try heraldExecutable().path, ["topics", "--kafka-brokers", "127.0.0.1:1", "--kafka-properties", "compression.codec=gzip,lz4"])
        #expect(listStatus != 0 && listOutput.contains("Kafka property 2 of 2 is not key=value"), "\(listOutput)")
        // A line that is not key=value is named.
        try "client.rack=a\nnot a property\n".write(to: file, atomically: true, encoding: .utf8)
        let (badStatus, badOutput) = try run(try heraldExecutable().path, ["topics", "--kafka-brokers", "127.0.0.1:1", "--kafka-properties-file", file.path])
        #expect(badStatus != 0 && badOutput.contains("line 2 is not key=value"), "\(badOutput)")
    }

    @Test("a configuration file with an unknown key, a wrong type or bad JSON is refused with a message naming the problem")
    func configurationFileErrors() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("herald.json")
        for (text, expected) in [
            (#"{"kafka-broker": "127.0.0.1:9092"}"#, #"unknown key "kafka-broker""#),
            (#"{"port": {"value": 1}}"#, "port must be a string, a number or a boolean"),
            (#"{"metrics": "yes"}"#, "metrics must be true or false"),
            (#"["port", 1]"#, "must be a JSON object"),
            (#"{"port": 80"#, "is not JSON"),
        ] {
            try text.write(to: file, atomically: true, encoding: .utf8)
            let (status, output) = try run(try heraldExecutable().path, ["topics", "--config", file.path])
            #expect(status != 0 && output.contains(expected), "\(text): \(output)")
        }
        let (status, output) = try run(try heraldExecutable().path, ["topics", "--config", folder.appendingPathComponent("missing.json").path])
        #expect(status != 0 && output.contains("cannot read the configuration file"), "\(output)")
    }

    @Test("every HERALD_* setting of herald serve can be a key of the configuration file")
    func configurationFileKnowsEverySetting() throws {
        let sources = repositoryRoot().appendingPathComponent("Sources/herald")
        var variables: Set<String> = []
        for name in try FileManager.default.contentsOfDirectory(atPath: sources.path) where name.hasSuffix(".swift") {
            let text = try String(contentsOf: sources.appendingPathComponent(name), encoding: .utf8)
            variables.formUnion(text.matches(of: /"(HERALD_[A-Z0-9_]+)"/).map { String($0.1) })
        }
        // Not settings of a node: the file itself, the image's commit, and herald push's client side.
        variables.subtract([
            "HERALD_CONFIG", "HERALD_BUILD_COMMIT", "HERALD_API_KEY", "HERALD_API_URL", "HERALD_API_CA_FILE", "HERALD_API_CLIENT_CERT_FILE",
            "HERALD_API_CLIENT_KEY_FILE",
        ])
        #expect(variables.count > 40)
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("herald.json")
        for variable in variables.sorted() {
            let key = variable.dropFirst("HERALD_".count).lowercased().replacingOccurrences(of: "_", with: "-")
            try #"{"\#(key)": "x"}"#.write(to: file, atomically: true, encoding: .utf8)
            let (_, output) = try run(try heraldExecutable().path, ["topics", "--config", file.path])
            #expect(!output.contains("unknown key"), "\(variable): \(output)")
        }
    }
}
