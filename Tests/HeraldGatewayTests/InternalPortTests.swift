import Foundation
import HeraldKafka
import NIOCore
import NIOPosix
import Testing

@Suite("The internal port: idle sockets time out; readiness answers from the node's state")
struct InternalPortTests {
    @Test("a socket that never sends a request on the internal port is closed within the idle timeout")
    func idleSocketIsClosed() async throws {
        let nodes = try await NodeProcesses.start(environment: ["HERALD_API_IDLE_TIMEOUT": "1"])
        defer { nodes.stop() }
        let apiPort = Int(try await nodes.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: apiPort).get()
        let connected = ContinuousClock.now
        // If the server never closes it, the test does, after 6 s.
        let giveUp = channel.eventLoop.scheduleTask(in: .seconds(6)) { channel.close(promise: nil) }
        try? await channel.closeFuture.get()
        giveUp.cancel()
        let open = ContinuousClock.now - connected
        #expect(open < .seconds(5), "a silent socket was open \(open) with a 1 s idle timeout")
    }

    @Test("/readyz answers from the node's state: fifty probes do not make fifty Kafka queries")
    func readinessFromState() async throws {
        try await GatewayHarness.run { node in
            let before = node.readinessChecks
            for _ in 0..<50 {
                let status = try await api(node.apiPort, "GET", "/readyz", key: nil).status
                #expect(status == 200)
            }
            let checks = node.readinessChecks - before
            #expect(checks <= 5, "\(checks) readiness checks for 50 probes")
        }
    }

    @Test("a node that answers /readyz 200 has a producer that knows the events and upstream topics and a consumer on every partition (ready means ready)")
    func readyMeansTheFirstPushNeedNotWait() async throws {
        try await GatewayHarness.run { node in
            let status = try await api(node.apiPort, "GET", "/readyz", key: nil).status
            #expect(status == 200)
            // A producer that knows no topic yet is answered with every topic of the cluster.
            try node.cluster.createTopic(KafkaTopicSpec(name: "unrelated.topic", partitions: 1))
            let known = try await node.producer.knownTopics()
            #expect(Set(known) == [node.topic, upstreamTopic], "\(known)")
            #expect(node.node.consumer.assignedPartitions.count > 0)
        }
    }
}
