import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import HeraldKafka
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// One client connection: its session id from the welcome and how it was closed.
final class SessionDevice: Sendable {
    let connection: WebSocketClientConnection
    private let state = DeviceState()

    init(port: Int, token: String) async throws {
        let state = self.state
        connection = try await WebSocketClientConnection.connect(
            host: "127.0.0.1", port: port, path: "/v1/ws", headers: [("Authorization", "Bearer \(token)")],
            group: MultiThreadedEventLoopGroup.singleton,
            observer: { event in
                switch event {
                case .text(let text):
                    guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                          object["type"] as? String == "welcome", let session = object["session"] as? String else { return }
                    state.value.withLock { $0.session = session }
                case .closed(let code, _):
                    state.value.withLock { $0.close = .some(code) }
                default:
                    break
                }
            }
        )
        let deadline = ContinuousClock.now + .seconds(10)
        while self.session == nil {
            guard ContinuousClock.now < deadline else { throw TestFailure("no welcome") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    var session: String? { state.value.withLock { $0.session } }
    /// nil while open; the close code (nil inside: no close frame) once closed.
    var closeCode: UInt16?? { state.value.withLock { $0.close } }
}

/// What a `SessionDevice`'s observer learns, shared with it.
private final class DeviceState: Sendable {
    let value = Mutex<(session: String?, close: UInt16??)>((nil, nil))
}

/// The cluster's view of sessions across three `herald serve` processes on one `herald kafka`.
@Suite("Cluster sessions: presence from any node, leases, the per-user limit across nodes")
struct ClusterSessionsTests {
    /// Short, so the test waits seconds, not the production 15.
    static let leaseSeconds = 6.0
    static let environment = ["HERALD_SESSION_LEASE_SECONDS": String(leaseSeconds), "HERALD_SESSION_HEARTBEAT_SECONDS": "1"]

    static func token(_ user: String, _ device: String) async throws -> String {
        try await TokenIssuer(hmacSecret: testSecret).token(user: user, device: device, expiresAt: Date().addingTimeInterval(600))
    }

    /// The user's connections as a node's API lists them: (node, session, device).
    static func connections(_ user: String, on node: ClusterNode) async throws -> [(node: String, session: String, device: String?)] {
        let response = try await api(node.apiPort, "GET", "/v1/users/\(user)/connections")
        guard response.status == 200 else { throw TestFailure("connections of \(user) on \(node.name): \(response.status) \(response.body)") }
        return (response.json["connections"] as? [[String: Any]] ?? []).map {
            ($0["node"] as? String ?? "", $0["session"] as? String ?? "", $0["device"] as? String)
        }
    }

    /// Waits until `condition` holds for what the node lists; returns how long it took.
    @discardableResult
    static func waitFor(
        _ user: String, on node: ClusterNode, within limit: Duration = .seconds(20), _ what: String,
        _ condition: ([(node: String, session: String, device: String?)]) -> Bool
    ) async throws -> Duration {
        let start = ContinuousClock.now
        var last: [(node: String, session: String, device: String?)] = []
        while ContinuousClock.now - start < limit {
            last = try await connections(user, on: node)
            if condition(last) { return ContinuousClock.now - start }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("\(node.name): \(what) not within \(limit); it lists \(last)")
    }

    /// Every record of a topic of the embedded Kafka (4 partitions), partition by partition.
    static func records(of topic: String, bootstrap: String) async throws -> [KafkaRecord] {
        let kafka = KafkaConfiguration(bootstrapServers: bootstrap)
        let admin = try KafkaAdmin(kafka: kafka, logger: testLogger, timeout: .seconds(5))
        let reader = try KafkaReplayReader(configuration: KafkaReplayReaderConfiguration(kafka: kafka, topic: topic), logger: testLogger)
        var found: [KafkaRecord] = []
        for partition in Int32(0)..<4 {
            let marks = try await admin.watermarks(topic: topic, partition: partition)
            guard marks.high > marks.low else { continue }
            found += try await reader.read(partition: partition, from: marks.low, until: marks.high).records
        }
        await reader.close()
        await admin.close()
        return found
    }

    /// The presence records on the upstream topic, in order: (user, online, cause, the node that wrote it).
    static func presenceRecords(bootstrap: String) async throws -> [(user: String, online: Bool, cause: String, node: String)] {
        let kafka = KafkaConfiguration(bootstrapServers: bootstrap)
        let admin = try KafkaAdmin(kafka: kafka, logger: testLogger, timeout: .seconds(5))
        let reader = try KafkaReplayReader(configuration: KafkaReplayReaderConfiguration(kafka: kafka, topic: "herald.upstream"), logger: testLogger)
        var found: [(user: String, online: Bool, cause: String, node: String)] = []
        for partition in Int32(0)..<4 {
            let marks = try await admin.watermarks(topic: "herald.upstream", partition: partition)
            guard marks.high > marks.low else { continue }
            for record in try await reader.read(partition: partition, from: marks.low, until: marks.high).records
            where record.headers.contains(where: { $0.name == HeraldHeader.kind && $0.value == Array("presence".utf8) }) {
                let object = try JSONSerialization.jsonObject(with: Data(record.value.readableBytesView)) as? [String: Any] ?? [:]
                let node = record.headers.first { $0.name == HeraldHeader.node }?.value.map { String(decoding: $0, as: UTF8.self) } ?? "?"
                found.append((object["user"] as? String ?? "", object["online"] as? Bool ?? false, object["cause"] as? String ?? "", node))
            }
        }
        await reader.close()
        await admin.close()
        return found
    }

    @Test("a user on all three nodes is listed whole by each; a killed node's connections leave within the lease, a stopped node's at once; presence changes reach the upstream topic once each; a new node rebuilds the same view")
    func presenceAcrossNodes() async throws {
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let a = try await ClusterNode.start("node-a", bootstrap: bootstrap, environment: Self.environment)
        let b = try await ClusterNode.start("node-b", bootstrap: bootstrap, environment: Self.environment)
        let c = try await ClusterNode.start("node-c", bootstrap: bootstrap, environment: Self.environment)
        defer { [a, b, c].forEach { $0.process.stop() } }

        let phone = try await SessionDevice(port: a.port, token: try await Self.token("roamer", "phone"))
        let laptop = try await SessionDevice(port: b.port, token: try await Self.token("roamer", "laptop"))
        let tablet = try await SessionDevice(port: c.port, token: try await Self.token("roamer", "tablet"))
        let expected = Set([("node-a", phone.session!, "phone"), ("node-b", laptop.session!, "laptop"), ("node-c", tablet.session!, "tablet")].map { "\($0.0)/\($0.1)/\($0.2)" })
        for node in [a, b, c] {
            try await Self.waitFor("roamer", on: node, "all three connections") { list in
                Set(list.map { "\($0.node)/\($0.session)/\($0.device ?? "-")" }) == expected
            }
            let presence = try await api(node.apiPort, "GET", "/v1/presence?users=roamer,nobody,roamer")
            #expect(presence.status == 200, "\(presence.body)")
            #expect(presence.json["scope"] as? String == "cluster")
            let users = (presence.json["users"] as? [[String: Any]] ?? []).map { "\($0["user"] as? String ?? ""):\($0["online"] as? Bool ?? false)" }
            #expect(users == ["roamer:true", "nobody:false"], "asked once each, in order: \(presence.body)")
        }

        // SIGKILL: no goodbye; the lease ends node b's part.
        kill(b.process.process.processIdentifier, SIGKILL)
        for node in [a, c] {
            let took = try await Self.waitFor("roamer", on: node, "node b's connection gone") { !$0.contains { $0.node == "node-b" } }
            #expect(took < .seconds(Self.leaseSeconds + 2), "\(node.name) forgot node b after \(took), lease \(Self.leaseSeconds) s")
        }
        #expect(try await Self.connections("roamer", on: a).count == 2)

        // SIGTERM: the node says it is gone as its drain begins, long before a lease could end.
        c.process.terminate()
        let took = try await Self.waitFor("roamer", on: a, "node c's connection gone") { !$0.contains { $0.node == "node-c" } }
        #expect(took < .seconds(Self.leaseSeconds - 2), "a stopped node leaves at once, not after the lease: \(took)")
        #expect(try await c.process.exitStatus(within: .seconds(15)) == 0)

        // A node started now reads the topic from its start and holds the same view.
        let d = try await ClusterNode.start("node-d", bootstrap: bootstrap, environment: Self.environment)
        defer { d.process.stop() }
        try await Self.waitFor("roamer", on: d, "the rebuilt view") { list in
            list.map { "\($0.node)/\($0.session)" } == ["node-a/\(phone.session!)"]
        }

        // The last connection leaves: roamer is offline, said once.
        phone.connection.close()
        try await Self.waitFor("roamer", on: d, "roamer offline") { $0.isEmpty }
        let presence = try await api(d.apiPort, "GET", "/v1/presence?users=roamer")
        #expect((presence.json["users"] as? [[String: Any]])?.first?["online"] as? Bool == false)
        var records: [(user: String, online: Bool, cause: String, node: String)] = []
        let deadline = ContinuousClock.now + .seconds(10)
        repeat {
            records = try await Self.presenceRecords(bootstrap: bootstrap).filter { $0.user == "roamer" }
            if records.count >= 2 { break }
            try await Task.sleep(for: .milliseconds(200))
        } while ContinuousClock.now < deadline
        try await Task.sleep(for: .seconds(1))
        records = try await Self.presenceRecords(bootstrap: bootstrap).filter { $0.user == "roamer" }
        #expect(records.map { "\($0.online):\($0.cause)" } == ["true:connected", "false:disconnected"], "\(records.map { "\($0.online):\($0.cause)@\($0.node)" })")
        _ = (laptop, tablet)
    }

    @Test("the 11th connection of one user, opened on another node, closes the oldest anywhere with 4001, and only it; a new node agrees on the rest")
    func limitAcrossNodes() async throws {
        let kafka = try HeraldProcess(["kafka", "--embedded-partitions", "4", "--log-level", "warning"])
        defer { kafka.stop() }
        let bootstrap = try await kafka.waitFor(#"(127\.0\.0\.1:\d+)"#)
        let a = try await ClusterNode.start("node-a", bootstrap: bootstrap, environment: Self.environment)
        let b = try await ClusterNode.start("node-b", bootstrap: bootstrap, environment: Self.environment)
        let c = try await ClusterNode.start("node-c", bootstrap: bootstrap, environment: Self.environment)
        defer { [a, b, c].forEach { $0.process.stop() } }
        let nodes = [a, b, c]

        // The oldest first, on node a, and seen by the cluster before the others open.
        var devices = [try await SessionDevice(port: a.port, token: try await Self.token("heavy", "d0"))]
        try await Self.waitFor("heavy", on: c, "the first connection") { $0.count == 1 }
        for index in 1..<10 {
            devices.append(try await SessionDevice(port: nodes[index % 3].port, token: try await Self.token("heavy", "d\(index)")))
        }
        try await Self.waitFor("heavy", on: a, "ten connections") { $0.count == 10 }
        #expect(devices.allSatisfy { $0.closeCode == nil }, "ten is within the limit")

        // The 11th, on node c: node a closes its oldest.
        let eleventh = try await SessionDevice(port: c.port, token: try await Self.token("heavy", "d10"))
        let deadline = ContinuousClock.now + .seconds(15)
        while devices[0].closeCode == nil {
            guard ContinuousClock.now < deadline else { throw TestFailure("the oldest connection was not closed") }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(devices[0].closeCode == .some(CloseCode.replaced.rawValue), "4001 for the oldest: \(String(describing: devices[0].closeCode))")
        let sessions = Set((devices.dropFirst() + [eleventh]).map { $0.session! })
        for node in nodes {
            try await Self.waitFor("heavy", on: node, "the ten newest") { Set($0.map(\.session)) == sessions }
        }
        // A second later, still only that one is closed.
        try await Task.sleep(for: .seconds(1))
        #expect(devices.dropFirst().allSatisfy { $0.closeCode == nil } && eleventh.closeCode == nil, "only the oldest goes")
        let metrics = try await api(a.apiPort, "GET", "/metrics", key: nil).body
        func sample(_ name: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
                .flatMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        }
        #expect(sample("herald_session_cross_node_closes_total") == 1, "node a counts the close made for node c's connection")
        #expect(sample("herald_session_limit_closes_total") == 1)
        #expect(sample("herald_session_view_connections") != nil, "the view's size is exported")

        let d = try await ClusterNode.start("node-d", bootstrap: bootstrap, environment: Self.environment)
        defer { d.process.stop() }
        try await Self.waitFor("heavy", on: d, "the same ten") { Set($0.map(\.session)) == sessions }
        #expect(try await Self.connections("heavy", on: d).map(\.session) == (try await Self.connections("heavy", on: a)).map(\.session),
                "the same view, in the same order")
    }

    @Test("Kafka records per connect and per disconnect, counted: one sessions record each, one presence record per user going online or offline")
    func recordsPerConnection() async throws {
        let processes = try await NodeProcesses.start(environment: Self.environment)
        defer { processes.stop() }
        let apiPort = Int(try await processes.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!
        let node = ClusterNode(name: "proc-node", process: processes.node, port: processes.port, apiPort: apiPort)
        let users = (0..<25).map { "counted\($0)" }
        var devices: [SessionDevice] = []
        for user in users {
            for device in ["phone", "laptop"] {
                devices.append(try await SessionDevice(port: processes.port, token: try await Self.token(user, device)))
            }
        }
        try await Self.waitFor(users[24], on: node, "the last user's two connections") { $0.count == 2 }
        for device in devices { device.connection.close() }
        try await Self.waitFor(users[24], on: node, "the last user offline") { $0.isEmpty }
        try await Task.sleep(for: .seconds(1))
        func kind(_ record: KafkaRecord) -> String {
            record.headers.first { $0.name == HeraldHeader.kind }?.value.map { String(decoding: $0, as: UTF8.self) } ?? "?"
        }
        let sessions = try await Self.records(of: "herald.sessions", bootstrap: processes.bootstrap)
        let byKind = Dictionary(grouping: sessions, by: kind).mapValues(\.count)
        #expect(byKind["session-opened"] == devices.count && byKind["session-closed"] == devices.count, "\(byKind)")
        // Each node publishes its presence changes in order, one send after the other: on a loaded
        // machine the last ones land seconds after the view changed.
        var presence: [KafkaRecord] = []
        let patience = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < patience {
            presence = try await Self.records(of: "herald.upstream", bootstrap: processes.bootstrap).filter { kind($0) == "presence" }
            if presence.count >= 2 * users.count { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        try await Task.sleep(for: .milliseconds(500))
        presence = try await Self.records(of: "herald.upstream", bootstrap: processes.bootstrap).filter { kind($0) == "presence" }
        #expect(presence.count == 2 * users.count, "one online and one offline per user: \(presence.count)")
        let opened = sessions.filter { kind($0) == "session-opened" }
        let bytes = opened.map { record in (record.key?.count ?? 0) + record.headers.reduce(0) { $0 + $1.name.utf8.count + ($1.value?.count ?? 0) } }
        print("sessions records: \(byKind); presence records: \(presence.count) for \(users.count) users; a session-opened record carries \(bytes.min() ?? 0)-\(bytes.max() ?? 0) bytes of key and headers")
    }

    @Test("presence asks about a bounded list: none, more than 100, an empty id or another parameter is 400 naming the problem")
    func presenceBounds() async throws {
        let processes = try await NodeProcesses.start()
        defer { processes.stop() }
        let apiPort = Int(try await processes.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!
        let many = (0...100).map { "u\($0)" }.joined(separator: ",")
        for (query, message) in [
            ("", "users: is required"), ("?users=", "each user id must be 1 to 256 bytes"), ("?users=\(many)", "more than 100 users"),
            ("?user=a", "user: is not a parameter of presence"), ("?users=a,,b", "each user id must be 1 to 256 bytes"),
        ] {
            let response = try await api(apiPort, "GET", "/v1/presence\(query)")
            #expect(response.status == 400, "\(query): \(response.body)")
            #expect(response.errorMessage?.contains(message) == true, "\(query): \(response.body)")
        }
        let hundred = (0..<100).map { "u\($0)" }.joined(separator: ",")
        let ok = try await api(apiPort, "GET", "/v1/presence?users=\(hundred)")
        #expect(ok.status == 200 && (ok.json["users"] as? [Any])?.count == 100, "\(ok.status)")
        let encoded = try await api(apiPort, "GET", "/v1/presence?users=a%2Cb,c")
        #expect((encoded.json["users"] as? [[String: Any]] ?? []).map { $0["user"] as? String ?? "" } == ["a,b", "c"])
        #expect(try await api(apiPort, "POST", "/v1/presence").status == 405)
    }
}
