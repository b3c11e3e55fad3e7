import Foundation
import Testing

/// `herald serve` refuses configurations that would silently do the wrong thing, and says why.
@Suite("Node startup: --dev never keeps a configured secret; the embedded Kafka runs only when asked for")
struct NodeStartupTests {
    static let ports = ["--port", "0", "--host", "127.0.0.1", "--api-port", "0", "--api-host", "127.0.0.1"]

    @Test("herald serve --dev with HERALD_JWT_SECRET or --jwt-secret refuses to start and says why")
    func devWithConfiguredSecret() async throws {
        for (arguments, environment) in [([String](), ["HERALD_JWT_SECRET": testSecret]), (["--jwt-secret", testSecret], [:])] {
            let node = try HeraldProcess(["serve", "--dev"] + Self.ports + arguments, environment: environment)
            defer { node.stop() }
            let status = try await node.exitStatus(within: .seconds(20))
            #expect(status != nil && status != 0, "--dev with a configured secret kept running: \(node.text.suffix(1_000))")
            #expect(node.text.contains("--dev") && node.text.contains("HERALD_JWT_SECRET"), "\(node.text.suffix(1_000))")
            #expect(!node.text.contains("WebSocket listener open"))
        }
    }

    @Test("herald serve without --kafka-brokers in a Kubernetes pod or with HERALD_PRODUCTION refuses, naming --kafka-brokers and --embedded-kafka")
    func embeddedKafkaOnlyWhenAskedFor() async throws {
        let credentials = ["HERALD_JWT_SECRET": testSecret, "HERALD_API_KEYS": testAPIKey]
        for setting in [["KUBERNETES_SERVICE_HOST": "10.96.0.1"], ["HERALD_PRODUCTION": "true"]] {
            let node = try HeraldProcess(["serve"] + Self.ports, environment: credentials.merging(setting) { _, new in new })
            defer { node.stop() }
            let status = try await node.exitStatus(within: .seconds(20))
            #expect(status != nil && status != 0, "\(setting): started without a Kafka address: \(node.text.suffix(1_000))")
            #expect(node.text.contains("--kafka-brokers") && node.text.contains("--embedded-kafka"), "\(node.text.suffix(1_000))")
            #expect(!node.text.contains("embedded Kafka started"))
        }
        // Asked for explicitly, it runs.
        let asked = try HeraldProcess(["serve", "--embedded-kafka"] + Self.ports,
                                      environment: credentials.merging(["KUBERNETES_SERVICE_HOST": "10.96.0.1"]) { _, new in new })
        defer { asked.stop() }
        _ = try await asked.waitFor(#"port=(\d+) \[\w+\] WebSocket listener open"#)
    }
}
