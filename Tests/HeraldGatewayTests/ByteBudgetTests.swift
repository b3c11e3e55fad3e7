import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import HeraldKafka
import NIOCore
import NIOPosix
import NIOWebSocket
import Testing

/// What a node process says about itself: its counters on `/metrics` and its status on `/v1/node`.
struct NodeReadings {
    let apiPort: Int

    /// The sum of a metric's samples whose labels include every `label="value"` given.
    func metric(_ name: String, _ labels: [String: String] = [:]) async throws -> Double {
        let text = try await api(apiPort, "GET", "/metrics", key: nil).body
        var sum = 0.0
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let rest = line.dropFirst(name.count)
            guard rest.first == "{" || rest.first == " " else { continue }
            guard labels.allSatisfy({ line.contains("\($0.key)=\"\($0.value)\"") }) else { continue }
            sum += Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return sum
    }

    func serverCloses(_ code: CloseCode) async throws -> Int {
        Int(try await metric("herald_connections_closed_total", ["by": "server", "code": String(code.rawValue)]))
    }

    func status() async throws -> [String: Any] {
        try await api(apiPort, "GET", "/v1/node").json
    }

    /// The most bytes the node held for one connection at once, as it counts them.
    func peakQueuedBytes() async throws -> Int {
        let outbound = try await status()["outbound"] as? [String: Any]
        guard let peak = (outbound?["peak_queued_bytes"] as? NSNumber)?.intValue else {
            throw TestFailure("GET /v1/node has no outbound.peak_queued_bytes")
        }
        return peak
    }

    /// Polls until `condition` holds or `limit` passes; a poll that fails (the node busy with a flood
    /// answered nothing) is tried again, and named if it is the last.
    func wait(within limit: Duration, _ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        var lastError: (any Error)?
        while ContinuousClock.now < deadline {
            do {
                if try await condition() { return }
                lastError = nil
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("not within \(limit): \(what)\(lastError.map { " (last poll: \($0))" } ?? "")")
    }
}

/// One node process on its own embedded Kafka, with a producer to it.
struct BudgetNode {
    let kafka: HeraldProcess
    let node: ClusterNode
    let producer: KafkaProducer
    var readings: NodeReadings { NodeReadings(apiPort: node.apiPort) }
    var client: HeraldClient { HeraldClient(host: "127.0.0.1", port: node.port, group: MultiThreadedEventLoopGroup.singleton) }

    static func run(_ arguments: [String: String], _ body: (BudgetNode) async throws -> Void) async throws {
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let node = try await ClusterNode.start("budget-node", bootstrap: bootstrap, environment: arguments)
        defer { node.process.stop() }
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: bootstrap)), logger: testLogger
        )
        do {
            try await body(BudgetNode(kafka: kafka, node: node, producer: producer))
        } catch {
            await producer.shutdown()
            throw error
        }
        await producer.shutdown()
    }

    func token(_ user: String) async throws -> String {
        try await TokenIssuer(hmacSecret: testSecret).token(user: user, expiresAt: Date().addingTimeInterval(600))
    }

    /// Produces `count` records of `bytes` each to `stream`, in one batch.
    func produce(_ stream: HeraldStream, count: Int, bytes: Int) async throws {
        let record = HeraldRecord(stream: stream)
        let payload = "\"" + String(repeating: "x", count: bytes) + "\""
        let records = (0..<count).map { _ in
            KafkaOutgoingRecord(
                topic: "herald.events", key: Array(record.key.utf8), value: ByteBuffer(string: payload),
                headers: record.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
            )
        }
        for result in await producer.send(records) { _ = try result.get() }
    }

    /// A connection whose socket's receive buffer is fixed small, so that when it stops reading the
    /// node's own queue fills within a few megabytes (Linux autotunes loopback buffers to 32 MiB).
    func connect(_ user: String, cursor: String? = nil, epoch: String? = nil) async throws -> HeraldSession {
        try await client.connect(token: try await token(user), cursor: cursor, epoch: epoch, receiveBufferBytes: 16 * 1_024)
    }
}

/// Sends pings with the largest control payload, reading nothing, until the node has closed a
/// connection with 4008 (40 s at most).
private func floodPingsUntilSlowConsumerClose(_ connection: WebSocketClientConnection, _ readings: NodeReadings) async throws {
    let payload = ByteBuffer(bytes: Array(repeating: 0x70, count: 125))
    let deadline = ContinuousClock.now + .seconds(40)
    while try await readings.serverCloses(.slowConsumer) < 1 {
        guard ContinuousClock.now < deadline else { throw TestFailure("the ping flood was not closed with 4008 within 40 s") }
        for _ in 0..<500 { connection.send(WebSocketFrame(fin: true, opcode: .ping, maskKey: .random(), data: payload)) }
        try await Task.sleep(for: .milliseconds(10))
    }
}

@Suite("One byte budget per connection: floods, bursts and stalled readers")
struct ByteBudgetTests {
    static let budget = 65_536

    @Test("a client that floods pings and never reads keeps what the node queues for it within its budget and is closed with 4008")
    func pingFloodNeverReading() async throws {
        try await BudgetNode.run(["HERALD_OUTBOUND_CAP": String(Self.budget), "HERALD_SLOW_CONSUMER_SECONDS": "1"]) { node in
            let session = try await node.connect("flooder")
            try await session.connection.setReading(false)
            let readings = node.readings
            try await floodPingsUntilSlowConsumerClose(session.connection, readings)
            let peak = try await readings.peakQueuedBytes()
            // The socket's buffer stops at the budget; past it one pong waits, and the write that crossed
            // the high water mark may overshoot it by a frame.
            #expect(peak <= Self.budget + 1_024, "the node held \(peak) bytes for a client with a budget of \(Self.budget)")
            #expect(peak >= Self.budget / 2, "the flood did fill the socket (\(peak) bytes), so the bound was exercised")
        }
    }

    @Test("a client that resumes a large replay, floods pings and never reads is closed with 4008 with its queue bounded by the replay")
    func pingFloodDuringResume() async throws {
        let replayMaxBytes = 4 << 20
        try await BudgetNode.run([
            "HERALD_OUTBOUND_CAP": String(Self.budget), "HERALD_SLOW_CONSUMER_SECONDS": "1", "HERALD_REPLAY_MAX_BYTES": String(replayMaxBytes),
        ]) { node in
            // A device that stays connected sees the records arrive, so the node has them before the resume.
            let first = try await TestConnection.open(try await node.client.connect(token: try await node.token("resumer")))
            try await node.produce(.user("resumer"), count: 3_000, bytes: 1_000)
            for _ in 0..<3_000 { _ = try await first.nextMessage() }
            let session = try await node.connect("resumer", cursor: "u:-1", epoch: first.welcome.epoch)
            try await session.connection.setReading(false)
            let readings = node.readings
            try await floodPingsUntilSlowConsumerClose(session.connection, readings)
            let peak = try await readings.peakQueuedBytes()
            // What a replay may queue is bounded by the replay byte limit; the socket by the budget.
            #expect(peak <= replayMaxBytes + Self.budget + 1_024, "the node held \(peak) bytes: the replay, the budget and one pong at most")
            #expect(peak > 3_000_000, "the replay (about 3.2 MB) did wait in the node, so the bound was exercised")
        }
    }

    @Test("a burst of large broadcasts to readers that keep up closes nobody, and a reader that stopped is still closed with 4008")
    func burstToReaders() async throws {
        try await BudgetNode.run(["HERALD_OUTBOUND_CAP": String(Self.budget), "HERALD_SLOW_CONSUMER_SECONDS": "2"]) { node in
            var readers: [TestConnection] = []
            for index in 0..<8 { readers.append(try await TestConnection.open(try await node.client.connect(token: try await node.token("reader\(index)")))) }
            let burst = 40
            try await node.produce(.broadcast, count: burst, bytes: 60_000)
            for (index, reader) in readers.enumerated() {
                for n in 0..<burst {
                    let event = try await reader.next(within: .seconds(20))
                    guard case .message = event else { throw TestFailure("reader \(index) got \(event) instead of broadcast \(n)") }
                }
            }
            #expect(try await node.readings.serverCloses(.slowConsumer) == 0, "nobody who reads is a slow consumer")

            let stopped = try await TestConnection.open(try await node.connect("stopped"))
            try await stopped.session.connection.setReading(false)
            // Far more than the stopped reader's kernel buffers take (its receive buffer is 16 KiB), so
            // that the node's queue for it fills; in steps the readers take before the next, so that the
            // node never falls behind what the embedded Kafka keeps (about 5 MiB per partition), which
            // would rightly close everyone with 1012.
            // 7.2 MB: beyond the 4 MiB the node's own send buffer may autotune to.
            for _ in 0..<12 {
                try await node.produce(.broadcast, count: 10, bytes: 60_000)
                for reader in readers {
                    for _ in 0..<10 { _ = try await reader.nextMessage(within: .seconds(30)) }
                }
            }
            try await node.readings.wait(within: .seconds(20), "the stopped reader closed with 4008") {
                try await node.readings.serverCloses(.slowConsumer) == 1
            }
        }
    }

    @Test("a replay larger than the byte bound answers recovered:false with too-many, then live")
    func replayOverByteBound() async throws {
        try await BudgetNode.run(["HERALD_REPLAY_MAX_BYTES": "20000"]) { node in
            let first = try await TestConnection.open(try await node.client.connect(token: try await node.token("big")))
            let epoch = first.welcome.epoch
            try await node.produce(.user("big"), count: 30, bytes: 1_000)
            for _ in 0..<30 { _ = try await first.nextMessage() }
            let back = try await TestConnection.open(try await node.client.connect(token: try await node.token("big"), cursor: "u:-1", epoch: epoch))
            #expect(back.welcome.recovered == false)
            #expect(back.welcome.reason == "too-many")
            try await node.produce(.user("big"), count: 1, bytes: 10)
            let live = try await back.nextMessage()
            #expect(live.offset == 30, "nothing replayed, then live")
        }
    }
}
