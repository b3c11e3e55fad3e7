import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import NIOPosix
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

    @Test("herald serve that delivered pushes to connected devices exits 0 on SIGTERM: every part stops in its turn")
    func cleanExitAfterDeliveries() async throws {
        let processes = try await NodeProcesses.start(nodeArguments: ["--drain-seconds", "2", "--drain-delay-seconds", "0"])
        defer { processes.stop() }
        let apiPort = Int(try await processes.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        let client = HeraldClient(host: "127.0.0.1", port: processes.port, group: MultiThreadedEventLoopGroup.singleton)
        var devices: [TestConnection] = []
        for index in 0..<4 {
            let token = try await issuer.token(user: "stopping-\(index)", expiresAt: Date().addingTimeInterval(600))
            devices.append(try await TestConnection.open(try await client.connect(token: token)))
        }
        for index in 0..<4 {
            let response = try await api(apiPort, "POST", "/v1/push", body: #"{"to":{"users":["stopping-\#(index)"]},"data":{"n":\#(index)}}"#)
            #expect(response.status == 202)
            _ = try await devices[index].nextMessage()
        }
        processes.node.terminate()
        for device in devices { #expect(try await device.closeCode() == CloseCode.restarting.rawValue) }
        let status = try await processes.node.exitStatus(within: .seconds(20))
        #expect(status == 0, "herald serve exited \(status.map(String.init) ?? "not at all") after SIGTERM: \(processes.node.text.suffix(2_000))")
    }
}
