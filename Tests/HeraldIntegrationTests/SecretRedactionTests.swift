import Foundation
import Testing

/// Kafka credentials reach `herald serve` through `--kafka-properties`, a properties file or the
/// configuration file; none of them may come back out in what the node prints.
@Suite("Kafka credentials never appear in the node's log")
struct SecretRedactionTests {
    @Test("a sasl.password holding a comma in --kafka-properties is refused without echoing any part of it")
    func commaInPasswordNotEchoed() async throws {
        let tail = "tail-of-the-sasl-password"
        let node = try HeraldProcess(
            ["serve", "--kafka-brokers", "127.0.0.1:1", "--kafka-properties", "sasl.password=head,\(tail)"],
            environment: ["HERALD_JWT_SECRET": testSecret, "HERALD_API_KEYS": testAPIKey]
        )
        defer { node.stop() }
        let status = try await node.exitStatus(within: .seconds(20))
        #expect(status != nil && status != 0, "the malformed list is refused: \(node.text)")
        #expect(node.text.contains("is not key=value"), "the refusal names the problem: \(node.text)")
        #expect(!node.text.contains(tail), "the refusal echoes part of the password: \(node.text)")
        #expect(!node.text.contains("head,"), "\(node.text)")
    }

    @Test("herald serve with a sasl.password from a properties file, the config file and --kafka-properties logs none of them, with librdkafka's debug lines on")
    func passwordsRedactedInLogs() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-secrets-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "2", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let filePassword = "file-sasl-password-0451"
        let configSecret = "config-ssl-key-password-0452"
        let listPassword = "list-oauthbearer-config-0453"
        let properties = folder.appendingPathComponent("kafka.properties")
        // `debug` makes librdkafka log its configuration, its security setup and every request.
        try """
            sasl.username=herald
            sasl.password=\(filePassword)
            debug=conf,security,generic,broker
            """.write(to: properties, atomically: true, encoding: .utf8)
        let config = folder.appendingPathComponent("herald.json")
        try #"{"kafka-properties": {"ssl.key.password": "\#(configSecret)"}}"#.write(to: config, atomically: true, encoding: .utf8)
        let node = try HeraldProcess(
            ["serve", "--kafka-brokers", bootstrap, "--port", "0", "--host", "127.0.0.1", "--api-port", "0", "--api-host", "127.0.0.1",
             "--node-id", "secret-node", "--log-level", "debug", "--config", config.path, "--kafka-properties-file", properties.path,
             "--kafka-properties", "sasl.oauthbearer.config=\(listPassword)"],
            environment: ["HERALD_JWT_SECRET": testSecret, "HERALD_API_KEYS": testAPIKey]
        )
        defer { node.stop() }
        _ = try await node.waitFor(#"WebSocket listener open"#)
        // librdkafka's lines arrive through its log callback: wait until some have.
        _ = try await node.waitFor(#"kafka\.facility"#, within: .seconds(20))
        try await Task.sleep(for: .seconds(1))
        node.stop()
        let log = node.text
        for secret in [filePassword, configSecret, listPassword] {
            #expect(!log.contains(secret), "the log shows \(secret)")
        }
    }
}
