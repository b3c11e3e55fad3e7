import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import HeraldKafka
import NIOCore
import NIOPosix
import Testing

/// A counter's value in a node's `/metrics` (0 when the series is not there yet).
func metric(_ name: String, apiPort: Int) async throws -> Double {
    let body = try await api(apiPort, "GET", "/metrics", key: nil).body
    return body.split(separator: "\n").filter { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
        .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
}

/// Waits until `condition` holds, or fails naming `what`.
func eventually(_ what: String, within limit: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("not within \(limit): \(what)") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// Reads a connection's messages until one has the id `fence`; returns them all (the fence too).
func messages(of connection: TestConnection, until fence: String) async throws -> [ServerEvent.Message] {
    var got: [ServerEvent.Message] = []
    while got.last?.id != fence {
        let event = try await connection.next(within: .seconds(15))
        switch event {
        case .message(let message): got.append(message)
        case .closed(let code, let reason): throw TestFailure("closed before the fence: \(code.map(String.init) ?? "-") \(reason)")
        default: continue
        }
    }
    return got
}

@Suite("Exactly once per device by message id, and durable device cursors, across node processes on one Kafka")
struct DeviceCursorTests {
    @Test("a push retried with the same id through two different nodes reaches each device once, live and after a resume")
    func retriedPushOncePerDevice() async throws {
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        // B keeps almost nothing in its hot window: its resumes read Kafka, where both copies are.
        let a = try await ClusterNode.start("node-a", bootstrap: bootstrap, environment: [:])
        let b = try await ClusterNode.start("node-b", bootstrap: bootstrap, environment: ["HERALD_HOT_WINDOW_BYTES": "1024"])
        defer { [a, b].forEach { $0.process.stop() } }
        let group = MultiThreadedEventLoopGroup.singleton
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        func connect(_ device: String, to node: ClusterNode, cursor: String? = nil, epoch: String? = nil) async throws -> TestConnection {
            let token = try await issuer.token(user: "alice", device: device, expiresAt: Date().addingTimeInterval(600))
            return try await TestConnection.open(try await HeraldClient(host: "127.0.0.1", port: node.port, group: group).connect(
                token: token, cursor: cursor, epoch: epoch
            ))
        }
        let phone = try await connect("phone", to: a)
        let laptop = try await connect("laptop", to: b)
        // Two devices that are away while the pushes happen, and resume afterwards on either node.
        let tabletStart = try await connect("tablet", to: a)
        let watchStart = try await connect("watch", to: b)
        let epoch = tabletStart.welcome.epoch
        let tabletCursor = "u:\(tabletStart.welcome.positions["u"]!)"
        let watchCursor = "u:\(watchStart.welcome.positions["u"]!)"
        tabletStart.session.close()
        watchStart.session.close()
        _ = try await tabletStart.closeCode()
        _ = try await watchStart.closeCode()

        func push(_ id: String, through node: ClusterNode) async throws -> APIResponse {
            try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["alice"]},"data":{"n":"\#(id)"},"id":"\#(id)"}"#)
        }
        // 1. Through A, then, once both nodes delivered it, retried through B: B answers the first answer.
        let first = try await push("order-1", through: a)
        #expect(first.status == 202, "\(first.body)")
        #expect(try await phone.nextMessage().id == "order-1")
        #expect(try await laptop.nextMessage().id == "order-1")
        let retried = try await push("order-1", through: b)
        #expect(retried.status == 202, "\(retried.body)")
        #expect(retried.json["results"] as? NSArray == first.json["results"] as? NSArray, "the retry through B gets the first answer: \(retried.body) vs \(first.body)")
        // 2. Through A and B at once: both may produce; each device still shows it once.
        async let left = push("order-2", through: a)
        async let right = push("order-2", through: b)
        let answers = try await [left, right]
        #expect(answers.allSatisfy { $0.status == 202 }, "\(answers.map(\.body))")
        // 3. A producer's retry straight to Kafka: two copies, certainly.
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: bootstrap)), logger: testLogger
        )
        for _ in 0..<2 {
            let record = HeraldRecord(stream: .user("alice"), id: "order-3")
            _ = try await producer.send(KafkaOutgoingRecord(
                topic: "herald.events", key: Array(record.key.utf8), value: ByteBuffer(string: #"{"n":"order-3"}"#),
                headers: record.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
            ))
        }
        await producer.shutdown()
        #expect(try await push("fence", through: a).status == 202)

        let expected = ["order-1", "order-2", "order-3", "fence"]
        for (name, connection) in [("phone on A", phone), ("laptop on B", laptop)] {
            let ids = try await messages(of: connection, until: "fence").compactMap(\.id)
            #expect(ids == ["order-2", "order-3", "fence"], "\(name) live, after order-1: \(ids)")
        }
        for (name, node, cursor) in [("tablet", a, tabletCursor), ("watch", b, watchCursor)] {
            for resumeOn in [node, node.name == a.name ? b : a] {
                let resumed = try await connect(name, to: resumeOn, cursor: cursor, epoch: epoch)
                #expect(resumed.welcome.recovered == true, "\(name) on \(resumeOn.name): \(resumed.welcome)")
                let ids = try await messages(of: resumed, until: "fence").map { $0.id ?? "" }
                #expect(ids == expected, "\(name) resumed on \(resumeOn.name): \(ids)")
                resumed.session.close()
                _ = try await resumed.closeCode()
            }
        }
        let dropped = try await metric("herald_messages_deduplicated_total", apiPort: a.apiPort)
            + metric("herald_messages_deduplicated_total", apiPort: b.apiPort)
        #expect(dropped >= 2, "each node dropped at least order-3's second copy: \(dropped)")
    }

    @Test("a device acks, its storage is cleared, it reconnects to another node with only its token, and receives exactly what it had not acked, once, in order; a node started later knows the position too")
    func storedCursorOnAnotherNode() async throws {
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let a = try await ClusterNode.start("node-a", bootstrap: bootstrap, environment: [:])
        let b = try await ClusterNode.start("node-b", bootstrap: bootstrap, environment: [:])
        defer { [a, b].forEach { $0.process.stop() } }
        let group = MultiThreadedEventLoopGroup.singleton
        let issuer = try await TokenIssuer(hmacSecret: testSecret)
        func connect(_ device: String?, to node: ClusterNode) async throws -> TestConnection {
            let token = try await issuer.token(user: "bob", device: device, expiresAt: Date().addingTimeInterval(600))
            return try await TestConnection.open(try await HeraldClient(host: "127.0.0.1", port: node.port, group: group).connect(token: token))
        }
        func push(_ n: Int) async throws -> Int64 {
            let response = try await api(a.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["bob"]},"data":{"n":\#(n)}}"#)
            guard response.status == 202, let results = response.json["results"] as? [[String: Any]],
                  let offset = (results.first?["offset"] as? NSNumber)?.int64Value else { throw TestFailure("push: \(response.body)") }
            return offset
        }

        // Never acked: a device with a `device` claim starts live, like one without.
        let fresh = try await connect("phone", to: a)
        #expect(fresh.welcome.recovered == nil && fresh.welcome.source == nil, "\(fresh.welcome)")
        var offsets: [Int64] = []
        for n in 0..<6 { offsets.append(try await push(n)) }
        for offset in offsets { #expect(try await fresh.nextMessage().offset == offset) }
        // It read all six and acked the first three (as the clients do, throttled); then its storage is
        // cleared (a new tab): it keeps nothing, not even the epoch.
        fresh.session.ack(stream: "u", offset: offsets[2])
        try await eventually("node A committed the ack to Kafka") {
            try await metric("herald_cursor_commits_total", apiPort: a.apiPort) >= 1
        }
        try await eventually("node B read the commit") {
            try await metric("herald_cursor_records_read_total", apiPort: b.apiPort) >= 1
        }
        fresh.session.close()
        _ = try await fresh.closeCode()

        let back = try await connect("phone", to: b)
        #expect(back.welcome.recovered == true, "\(back.welcome)")
        #expect(back.welcome.source == "stored-cursor", "\(back.welcome)")
        #expect(back.welcome.positions["u"] == offsets[2], "\(back.welcome)")
        var got: [Int64] = []
        for _ in 0..<3 { got.append(try await back.nextMessage().offset) }
        #expect(got == Array(offsets[3...]), "exactly what it had not acked, in order")
        let live = try await push(6)
        #expect(try await back.nextMessage().offset == live, "then live, with nothing repeated")
        #expect(await back.pending().isEmpty)

        // Without a `device` claim there is nothing to resume: live, as before.
        let anonymousDevice = try await connect(nil, to: b)
        #expect(anonymousDevice.welcome.recovered == nil, "\(anonymousDevice.welcome)")
        // Another device of the same user has its own position (none).
        let other = try await connect("laptop", to: b)
        #expect(other.welcome.recovered == nil, "\(other.welcome)")
        #expect(try await metric("herald_stored_cursor_resumes_total", apiPort: b.apiPort) == 1)
        back.session.close()
        _ = try await back.closeCode()

        // A node started after all this reads the cursors topic from its beginning: the device, still
        // without storage, resumes there from the same position (its session on B acked nothing more).
        let c = try await ClusterNode.start("node-c", bootstrap: bootstrap, environment: [:])
        defer { c.process.stop() }
        try await eventually("node C read the cursors topic") {
            try await metric("herald_cursor_records_read_total", apiPort: c.apiPort) >= 1
        }
        let onC = try await connect("phone", to: c)
        #expect(onC.welcome.recovered == true && onC.welcome.source == "stored-cursor", "\(onC.welcome)")
        #expect(onC.welcome.positions["u"] == offsets[2], "\(onC.welcome)")
        var again: [Int64] = []
        for _ in 0..<4 { again.append(try await onC.nextMessage().offset) }
        #expect(again == Array(offsets[3...]) + [live], "from Kafka on a node that was not there")
    }
}
