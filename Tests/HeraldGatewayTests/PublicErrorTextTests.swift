import Foundation
import HeraldCore
import NIOCore
import NIOPosix
import Testing

/// What an API caller or an anonymous client reads names the problem, never the node's internals.
/// The internals that would leak: librdkafka's error text and names (`Local: Message timed out`,
/// `_MSG_TIMED_OUT`), the topics, the brokers' addresses.
func internals(in text: String) -> [String] {
    var found: [String] = []
    for marker in ["Local:", "herald.events", "herald.upstream", "127.0.0.1", "rdkafka", "Kafka delivery", "Kafka timed-out"]
    where text.contains(marker) {
        found.append(marker)
    }
    if text.contains(/\(_[A-Z_]+\)/) || text.contains(/\b_[A-Z]{3,}[A-Z_]*\b/) { found.append("a librdkafka error name") }
    return found
}

@Suite("Public error texts name the problem without internals")
struct PublicErrorTextTests {
    @Test("a push while Kafka is down answers 503 without librdkafka's text, the topic or the brokers")
    func pushWhileKafkaDown() async throws {
        try await GatewayHarness.run(producerTimeoutMilliseconds: 1_500) { node in
            try node.cluster.setBrokerDown(1)
            let push = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["amy"]},"data":"x"}"#)
            #expect(push.status == 503 && push.errorCode == "kafka-unavailable", "\(push.body)")
            #expect(push.body.contains("Kafka did not acknowledge the push"), "\(push.body)")
            #expect(internals(in: push.body).isEmpty, "\(internals(in: push.body)) in \(push.body)")
            let batch = try await api(node.apiPort, "POST", "/v1/push/batch", body: #"{"messages":[{"to":{"users":["amy"]},"data":"x"}]}"#)
            #expect(batch.status == 503, "\(batch.body)")
            #expect(internals(in: batch.body).isEmpty, "\(internals(in: batch.body)) in \(batch.body)")
            try node.cluster.setBrokerUp(1)
        }
    }

    @Test("a kick while Kafka is down answers 503 without librdkafka's text")
    func kickWhileKafkaDown() async throws {
        try await GatewayHarness.run(producerTimeoutMilliseconds: 1_500) { node in
            _ = try await node.connect("kim")
            try node.cluster.setBrokerDown(1)
            let kick = try await api(node.apiPort, "DELETE", "/v1/users/kim/connections")
            #expect(kick.status == 503 && kick.errorCode == "kafka-unavailable", "\(kick.body)")
            #expect(internals(in: kick.body).isEmpty, "\(internals(in: kick.body)) in \(kick.body)")
            try node.cluster.setBrokerUp(1)
        }
    }

    @Test("/readyz while Kafka is down answers 503 naming Kafka, without librdkafka's text or the topic")
    func readinessWhileKafkaDown() async throws {
        try await GatewayHarness.run(producerTimeoutMilliseconds: 1_500) { node in
            try node.cluster.setBrokerDown(1)
            var probe = try await api(node.apiPort, "GET", "/readyz", key: nil)
            let turnBy = ContinuousClock.now + .seconds(15)
            while probe.status != 503, ContinuousClock.now < turnBy {
                try await Task.sleep(for: .milliseconds(200))
                probe = try await api(node.apiPort, "GET", "/readyz", key: nil)
            }
            #expect(probe.status == 503 && probe.errorCode == "not-ready", "\(probe.body)")
            #expect(probe.body.contains("Kafka"), "the reason names what is wrong: \(probe.body)")
            #expect(internals(in: probe.body).isEmpty, "\(internals(in: probe.body)) in \(probe.body)")
            try node.cluster.setBrokerUp(1)
        }
    }

    @Test("a publish Kafka did not take gets a publish-failed error frame without librdkafka's text")
    func publishWhileKafkaDown() async throws {
        try await GatewayHarness.run(producerTimeoutMilliseconds: 1_500) { node in
            let phone = try await node.connect("pia")
            try node.cluster.setBrokerDown(1)
            phone.session.publish(json: #"{"draft":1}"#)
            var frame: (code: String, message: String)? = nil
            while frame == nil {
                if case .error(let code, let message) = try await phone.next(within: .seconds(20)) { frame = (code, message) }
            }
            #expect(frame?.code == "publish-failed")
            let message = frame?.message ?? ""
            let leaks = internals(in: message)
            #expect(leaks.isEmpty, "\(leaks) in \(message)")
            try node.cluster.setBrokerUp(1)
        }
    }

    @Test("/dev/push on the public port while Kafka is down answers 503 without librdkafka's text")
    func devPushWhileKafkaDown() async throws {
        try await GatewayHarness.run(producerTimeoutMilliseconds: 1_500, developmentTools: true) { node in
            try node.cluster.setBrokerDown(1)
            let push = try await api(node.port, "POST", "/dev/push", body: #"{"user":"dev","text":"hi"}"#, key: nil)
            #expect(push.status == 503, "\(push.body)")
            #expect(internals(in: push.body).isEmpty, "\(internals(in: push.body)) in \(push.body)")
            try node.cluster.setBrokerUp(1)
        }
    }
}
