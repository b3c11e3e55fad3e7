import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import HeraldKafka
import NIOCore
import NIOPosix
import Synchronization
import Testing

@Suite("Three nodes on one Kafka: a drain and a crash lose nothing")
struct ClusterTests {
    @Test("devices spread over three nodes; one node drains on SIGTERM, another is killed; every device gets every message once, in order")
    func drainAndCrash() async throws {
        let drainSeconds = 4.0
        let drainDelay = 0.5
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let environment = ["HERALD_DRAIN_SECONDS": String(drainSeconds), "HERALD_DRAIN_DELAY_SECONDS": String(drainDelay)]
        let a = try await ClusterNode.start("node-a", bootstrap: bootstrap, environment: environment)
        let b = try await ClusterNode.start("node-b", bootstrap: bootstrap, environment: environment)
        let c = try await ClusterNode.start("node-c", bootstrap: bootstrap, environment: environment)
        defer { [a, b, c].forEach { $0.process.stop() } }

        let group = MultiThreadedEventLoopGroup.singleton
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        func token(_ user: String, _ device: String) async throws -> String {
            try await issuer.token(user: user, device: device, channels: ["news"], expiresAt: Date().addingTimeInterval(600))
        }

        // Each user's three devices on three different nodes.
        let users = (0..<4).map { "member\($0)" }
        let devices = users.flatMap { user in ["phone", "laptop", "browser"].map { SimulatedDevice(user: user, name: $0) } }
        let nodes = [a, b, c]
        for (index, device) in devices.enumerated() {
            try await device.connect(port: nodes[index % 3].port, token: try await token(device.user, device.name), group: group, context: "start")
        }
        // Idle connections on the node that will drain, to see how its closes are spread.
        let closeTimes = Mutex<[ContinuousClock.Instant]>([])
        var watchers: [WebSocketClientConnection] = []
        for index in 0..<150 {
            let watcherToken = try await issuer.token(user: "watcher\(index)", expiresAt: Date().addingTimeInterval(600))
            watchers.append(try await WebSocketClientConnection.connect(
                host: "127.0.0.1", port: a.port, path: "/v1/ws", headers: [("Authorization", "Bearer \(watcherToken)")], group: group,
                observer: { event in
                    if case .closed(let code, _) = event, code == CloseCode.restarting.rawValue {
                        let now = ContinuousClock.now
                        closeTimes.withLock { $0.append(now) }
                    }
                }
            ))
        }

        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: bootstrap)), logger: testLogger
        )
        var acknowledged: [String: [Int64]] = [:]
        var random = SplitMix64(state: 7)
        var live: [ClusterNode] = nodes
        var codes: [String: Int] = [:]
        var sigterm: ContinuousClock.Instant? = nil
        var readinessAfterSigterm: Int? = nil
        let drainExit = Mutex<(status: Int32, seconds: Double)?>(nil)

        for step in 0..<330 {
            // Push: mostly to users, some to the channel and to everyone, straight to Kafka.
            let roll = Int.random(in: 0..<10, using: &random)
            let stream: HeraldStream = roll < 7 ? .user(users.randomElement(using: &random)!) : roll < 9 ? .channel("news") : .broadcast
            let record = HeraldRecord(stream: stream)
            let offset = try await producer.send(KafkaOutgoingRecord(
                topic: "herald.events", key: Array(record.key.utf8), value: ByteBuffer(string: #"{"step":\#(step)}"#),
                headers: record.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
            )).offset
            let key = if case .user(let name) = stream { "u:" + name } else { stream.wireName }
            acknowledged[key, default: []].append(offset)

            if step == 60 {
                // SIGTERM mid-stream: the node drains.
                sigterm = .now
                a.process.process.terminate()
                readinessAfterSigterm = (try? await api(a.apiPort, "GET", "/readyz", key: nil))?.status
                live.removeAll { $0.name == a.name }
                let signalled = ContinuousClock.now
                let process = a.process.process
                Thread.detachNewThread {
                    process.waitUntilExit()
                    let seconds = (ContinuousClock.now - signalled).inSeconds
                    drainExit.withLock { $0 = (process.terminationStatus, seconds) }
                }
            }
            if step == 230 {
                // SIGKILL mid-stream: no drain at all.
                kill(b.process.process.processIdentifier, SIGKILL)
                live.removeAll { $0.name == b.name }
            }
            // Devices read what arrived; a closed one reconnects to a node still up, with its cursor.
            for device in devices {
                guard let closed = try await device.pumpReportingClose() else { continue }
                if case .closed(let code, _) = closed { codes[code.map(String.init) ?? "none", default: 0] += 1 }
                let target = live.randomElement(using: &random)!
                try await device.connect(port: target.port, token: try await token(device.user, device.name), group: group, context: "step \(step)")
            }
            try await Task.sleep(for: .milliseconds(15))
        }
        // A last broadcast; everything before it has arrived once every device has it.
        let fence = HeraldRecord(stream: .broadcast)
        let fenceOffset = try await producer.send(KafkaOutgoingRecord(
            topic: "herald.events", key: Array(fence.key.utf8), value: ByteBuffer(string: "{}"),
            headers: fence.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
        )).offset
        acknowledged["*", default: []].append(fenceOffset)
        let deadline = ContinuousClock.now + .seconds(30)
        while devices.contains(where: { ($0.cursor["*"] ?? -1) < fenceOffset }) {
            guard ContinuousClock.now < deadline else { throw TestFailure("the fence did not reach every device") }
            for device in devices where try await device.pumpReportingClose() != nil {
                try await device.connect(port: c.port, token: try await token(device.user, device.name), group: group, context: "fence")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        await producer.shutdown()

        let checked = devices.map { $0.check(against: acknowledged, context: "cluster") }.reduce(0, +)
        #expect(checked > 500, "\(checked) deliveries checked")
        #expect(codes["1012"] ?? 0 >= 4, "the drained node's devices saw 1012: \(codes)")
        #expect(codes["none"] ?? 0 >= 4, "the killed node's devices lost TCP without a close frame: \(codes)")
        #expect(readinessAfterSigterm == 503, "readiness turns 503 at once on SIGTERM")

        // The drain: exit 0 within the window plus the producer's flush; closes spread over the window.
        let exit = try #require(drainExit.withLock { $0 })
        #expect(exit.status == 0, "node A's last output: \(a.process.text.suffix(3_000))")
        #expect(exit.seconds < drainSeconds + 5, "exited \(exit.seconds) s after SIGTERM")
        let start = try #require(sigterm)
        let offsets = closeTimes.withLock { $0 }.map { ($0 - start).inSeconds }.sorted()
        #expect(offsets.count == watchers.count, "every watcher got 1012")
        let bucket = 0.25
        var histogram = [Int](repeating: 0, count: Int((drainSeconds + 1) / bucket))
        for offset in offsets { histogram[min(histogram.count - 1, Int(offset / bucket))] += 1 }
        print("drain close times (s after SIGTERM, \(Int(bucket * 1000)) ms buckets): " +
              histogram.enumerated().map { String(format: "%.2f:%d", Double($0.offset) * bucket, $0.element) }.joined(separator: " "))
        #expect((offsets.first ?? 0) >= drainDelay - 0.05, "no close before the listener closed")
        #expect((offsets.last ?? 0) - (offsets.first ?? 0) >= (drainSeconds - drainDelay - 1) * 0.6, "closes spread over the window")
        #expect(histogram.max() ?? 0 <= watchers.count / 4, "no 250 ms slice takes more than a quarter of the closes: \(histogram)")
        print("cluster: \(checked) deliveries checked; client closes by code \(codes); node A exited \(exit.status) after \(String(format: "%.2f", exit.seconds)) s")
    }
}

extension Duration {
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
