import Foundation
import HeraldClient
import HeraldCore
import HeraldKafka
import NIOCore
import NIOPosix
import Testing

/// A device's connection over either transport, as the checker reads it.
protocol DeviceLink: AnyObject, Sendable {
    var welcome: ServerEvent.Welcome { get }
    func pending() async -> [ServerEvent]
    func next(within limit: Duration) async throws -> ServerEvent
    /// Ends the connection from the client's side.
    func hangUp()
}

extension TestConnection: DeviceLink {
    func hangUp() { session.close() }
}

extension EventStreamConnection: DeviceLink {
    func hangUp() { close() }
}

/// One simulated device: what it was sent since its first connect, per stream, as it received it.
final class SimulatedDevice {
    let user: String
    let name: String
    /// Reads Server-Sent Events instead of a WebSocket, and resumes as a browser does: `Last-Event-ID`.
    let overEventStream: Bool
    var connection: (any DeviceLink)?
    /// The id of the last event its stream had (SSE devices).
    var lastEventID: String?
    /// The positions of its first welcome: it is owed every acknowledged message after them.
    var first: [String: Int64] = [:]
    var cursor: [String: Int64] = [:]
    var epoch = ""
    var received: [String: [Int64]] = [:]
    var resumes = 0
    var resumesOnSecondNode = 0
    /// What it acked before its storage was cleared: it reconnects with its token alone and must
    /// resume from there (the node's stored cursor).
    var ackedBeforeClearing: [String: Int64]? = nil
    var storedCursorResumes = 0
    var staleStoredCursors = 0

    init(user: String, name: String, overEventStream: Bool = false) {
        self.user = user
        self.name = name
        self.overEventStream = overEventStream
    }

    func record(_ event: ServerEvent) throws {
        switch event {
        case .message(let message):
            received[message.stream, default: []].append(message.offset)
            cursor[message.stream] = message.offset
        case .error(let code, let message), .publishFailed(_, let code, let message):
            throw TestFailure("\(user)/\(name) got an error frame: \(code) \(message)")
        case .welcome, .closed, .published, .refreshed, .history:
            break
        }
    }

    /// Reads what has arrived so far.
    func pump() async throws {
        guard let connection else { return }
        for event in await connection.pending() {
            if case .closed(let code, let reason) = event {
                throw TestFailure("\(user)/\(name) was closed by the server: \(code.map(String.init) ?? "-") \(reason)")
            }
            try record(event)
        }
    }

    /// Closes its connection and reads everything that arrived before the close.
    func disconnect() async throws {
        guard let connection else { return }
        try await pump()
        connection.hangUp()
        while true {
            let event = try await connection.next(within: .seconds(15))
            if case .closed = event { break }
            try record(event)
        }
        if let stream = connection as? EventStreamConnection {
            lastEventID = stream.lastEventID
            // The stream's last id is the device's own cursor: what it has, no more and no less.
            #expect(lastEventID == ResumeCursor(positions: cursor).eventID(epoch: epoch), "\(user)/\(name): the last event id")
        }
        self.connection = nil
    }

    /// Connects (resuming from its cursor once it has one) and checks the welcome: a resume must be
    /// recovered, with the cursor as its positions. Returns whether it resumed.
    @discardableResult
    func connect(port: Int, token: String, group: any EventLoopGroup, context: String) async throws -> Bool {
        let resuming = !cursor.isEmpty
        let connection: any DeviceLink
        if overEventStream {
            connection = try await EventStreamConnection.open(
                port: port, token: token, channels: ["news"], lastEventID: resuming ? lastEventID : nil, group: group
            )
        } else {
            let client = HeraldClient(host: "127.0.0.1", port: port, group: group)
            let session = try await client.connect(
                token: token, channels: ["news"], cursor: resuming ? cursorText : nil, epoch: resuming ? epoch : nil
            )
            connection = try await TestConnection.open(session)
        }
        let welcome = connection.welcome
        if resuming {
            guard welcome.recovered == true else {
                throw TestFailure("\(context): \(user)/\(name) not recovered: \(welcome.reason ?? "-") from \(cursorText)")
            }
            #expect(welcome.positions == cursor, "\(context): positions of a recovered resume are the cursor")
            resumes += 1
        } else {
            first = welcome.positions
            cursor = welcome.positions
        }
        epoch = welcome.epoch
        self.connection = connection
        return resuming
    }

    /// Acks everything it has, then loses its storage (a new tab, a reinstalled app): the next connect
    /// carries no cursor.
    func ackAndClearStorage() {
        // An event stream cannot send frames: only WebSocket devices ack.
        guard let connection = connection as? TestConnection else { return }
        // With nothing received there is nothing to ack, and so no stored cursor to come back to.
        guard cursor.values.contains(where: { $0 >= 0 }) else { return }
        for (stream, offset) in cursor.sorted(by: { $0.key < $1.key }) { connection.session.ack(stream: stream, offset: offset) }
        ackedBeforeClearing = cursor
    }

    /// Connects with its token alone after its storage was cleared: the welcome must be a recovered
    /// resume from the stored cursor, at what it acked. The commit reaches the nodes a moment after
    /// the close (through Kafka for another node), so a welcome at an older stored position (or
    /// none yet) is closed and the connect tried again; what it received beyond its ack is gone with
    /// its storage, and must arrive again.
    func connectFromStoredCursor(port: Int, token: String, group: any EventLoopGroup, context: String) async throws {
        guard let acked = ackedBeforeClearing else { throw TestFailure("\(user)/\(name) never acked") }
        let client = HeraldClient(host: "127.0.0.1", port: port, group: group)
        for _ in 0..<200 {
            let connection = try await TestConnection.open(try await client.connect(token: token, channels: ["news"]))
            let welcome = connection.welcome
            if welcome.recovered == true, welcome.source == "stored-cursor", welcome.positions == acked {
                for (stream, offsets) in received { received[stream] = offsets.filter { $0 <= acked[stream] ?? -1 } }
                cursor = acked
                epoch = welcome.epoch
                ackedBeforeClearing = nil
                storedCursorResumes += 1
                resumes += 1
                self.connection = connection
                return
            }
            #expect(welcome.recovered != false, "\(context): \(user)/\(name) stored cursor not recovered: \(welcome.reason ?? "-")")
            staleStoredCursors += 1
            connection.session.close()
            _ = try await connection.closeCode()
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("\(context): \(user)/\(name) never resumed from its stored cursor \(acked)")
    }

    /// Reads what has arrived; returns the close event if the connection ended.
    func pumpReportingClose() async throws -> ServerEvent? {
        guard let connection else { return nil }
        for event in await connection.pending() {
            if case .closed = event {
                self.connection = nil
                return event
            }
            try record(event)
        }
        return nil
    }

    /// Checks what it received against what was acknowledged, per stream; returns how many it checked.
    func check(against acknowledged: [String: [Int64]], context: String) -> Int {
        var checked = 0
        for (stream, key) in [("u", "u:" + user), ("*", "*"), ("c:news", "c:news")] {
            let start = first[stream] ?? -1
            let expected = (acknowledged[key] ?? []).filter { $0 > start }.sorted()
            let got = received[stream] ?? []
            #expect(got == expected, "\(context): \(user)/\(name) stream \(stream)")
            checked += expected.count
        }
        return checked
    }

    var cursorText: String {
        cursor.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ",")
    }
}

@Suite("No loss: random disconnects and resumes across two nodes against every acknowledged message")
struct NoLossTests {
    @Test("seeded random pushes (API and straight to Kafka), disconnects and resumes, some through a second node process, over WebSocket and Server-Sent Events")
    func randomizedNoLoss() async throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["HERALD_TEST_SEED"] ?? "") ?? 20_261_129
        var random = SplitMix64(state: seed)
        // A small hot window on the first node, so that its resumes come from memory and from Kafka.
        try await GatewayHarness.run(configure: { $0.hotWindowBytes = 8 * 1024 }, cursorsTopic: "herald.cursors") { node in
            // The second node is a real `herald serve` process on the same Kafka, so its own hot
            // window starts empty: resumes there read older positions from Kafka.
            let second = try HeraldProcess(
                ["serve", "--kafka-brokers", node.cluster.bootstrapServers, "--port", "0", "--host", "127.0.0.1",
                 "--api-port", "0", "--api-host", "127.0.0.1", "--node-id", "second-node"],
                environment: ["HERALD_JWT_SECRET": testSecret, "HERALD_API_KEYS": testAPIKey]
            )
            defer { second.stop() }
            let secondPort = Int(try await second.waitFor(#"port=(\d+) \[\w+\] WebSocket listener open"#))!
            let secondAPIPort = Int(try await second.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!
            var retried = (answeredFirst: 0, producedAgain: 0, kafkaCopies: 0)

            let users = (0..<6).map { "user\($0)" }
            // Each user's browser reads Server-Sent Events: both transports share every record and position.
            let devices = users.flatMap { user in
                ["phone", "laptop", "browser"].map { SimulatedDevice(user: user, name: $0, overEventStream: $0 == "browser") }
            }
            var acknowledged: [String: [Int64]] = [:]  // "u:USER", "*", "c:news" → offsets

            func connect(_ device: SimulatedDevice, port: Int) async throws {
                let token = try await node.token(device.user, device: device.name, channels: ["news"])
                if device.ackedBeforeClearing != nil {
                    try await device.connectFromStoredCursor(port: port, token: token, group: node.group, context: "seed \(seed)")
                    if port == secondPort { device.resumesOnSecondNode += 1 }
                    return
                }
                if try await device.connect(port: port, token: token, group: node.group, context: "seed \(seed)"), port == secondPort {
                    device.resumesOnSecondNode += 1
                }
            }

            func push() async throws {
                let payload = #"{"r":\#(random.next() % 1_000_000)}"#
                let target = Int.random(in: 0..<10, using: &random)
                let user = users.randomElement(using: &random)!
                if Bool.random(using: &random) {
                    // Through the HTTP API, through either node; a push with an id is sometimes retried
                    // through the other node (as behind a load balancer), which may produce it again:
                    // the devices are owed the first copy only.
                    let to = target < 7 ? #"{"users":["\#(user)"]}"# : target < 9 ? #"{"channels":["news"]}"# : #"{"all":true}"#
                    let withID = Int.random(in: 0..<3, using: &random) == 0
                    let id = withID ? #","id":"push-\#(random.next() % 1_000_000_000)""# : ""
                    let body = #"{"to":\#(to),"data":\#(payload)\#(id)}"#
                    let ports = Bool.random(using: &random) ? (node.apiPort, secondAPIPort) : (secondAPIPort, node.apiPort)
                    let response = try await api(ports.0, "POST", "/v1/push", body: body)
                    guard response.status == 202, let results = response.json["results"] as? [[String: Any]] else {
                        throw TestFailure("push failed: \(response.status) \(response.body)")
                    }
                    if withID, Bool.random(using: &random) {
                        let retry = try await api(ports.1, "POST", "/v1/push", body: body)
                        guard retry.status == 202 else { throw TestFailure("retried push failed: \(retry.status) \(retry.body)") }
                        if retry.json["results"] as? NSArray == response.json["results"] as? NSArray {
                            retried.answeredFirst += 1
                        } else {
                            retried.producedAgain += 1
                        }
                    }
                    for result in results {
                        let stream = result["stream"] as! String
                        let key = stream == "u" ? "u:" + (result["key"] as! String) : stream
                        acknowledged[key, default: []].append((result["offset"] as! NSNumber).int64Value)
                    }
                } else {
                    // Straight to Kafka, as a business service with its own producer would.
                    let stream: HeraldStream = target < 7 ? .user(user) : target < 9 ? .channel("news") : .broadcast
                    let record = HeraldRecord(stream: stream, id: "kafka-\(random.next() % 1_000_000_000)")
                    let delivery = try await node.produce(record, payload)
                    let key = if case .user(let name) = stream { "u:" + name } else { stream.wireName }
                    acknowledged[key, default: []].append(delivery.offset)
                    if Int.random(in: 0..<5, using: &random) == 0 {
                        // A producer's retry: the same herald-id again, never to be delivered.
                        try await node.produce(record, payload)
                        retried.kafkaCopies += 1
                    }
                }
            }

            for device in devices { try await connect(device, port: node.port) }
            for step in 0..<220 {
                let roll = Int.random(in: 0..<100, using: &random)
                if roll < 60 {
                    try await push()
                } else if roll < 80 {
                    if let device = devices.filter({ $0.connection != nil }).randomElement(using: &random) {
                        if !device.overEventStream, Int.random(in: 0..<3, using: &random) == 0 { device.ackAndClearStorage() }
                        try await device.disconnect()
                    }
                } else if let device = devices.filter({ $0.connection == nil }).randomElement(using: &random) {
                    try await connect(device, port: Bool.random(using: &random) ? node.port : secondPort)
                }
                if step % 10 == 0 {
                    for device in devices { try await device.pump() }
                }
                // Sometimes let the nodes run ahead, sometimes not at all: both orders must hold.
                if Int.random(in: 0..<4, using: &random) == 0 { try await Task.sleep(for: .milliseconds(Int.random(in: 1...40, using: &random))) }
            }
            for device in devices where device.connection == nil {
                try await connect(device, port: Bool.random(using: &random) ? node.port : secondPort)
            }

            // A last broadcast, then wait until every device has it: everything before it has arrived.
            let fence = try await node.produce(HeraldRecord(stream: .broadcast), #"{"fence":true}"#)
            acknowledged["*", default: []].append(fence.offset)
            let deadline = ContinuousClock.now + .seconds(30)
            while devices.contains(where: { ($0.cursor["*"] ?? -1) < fence.offset }) {
                guard ContinuousClock.now < deadline else { throw TestFailure("seed \(seed): the fence did not reach every device") }
                try await Task.sleep(for: .milliseconds(20))
                for device in devices { try await device.pump() }
            }
            try await Task.sleep(for: .milliseconds(200))
            for device in devices { try await device.pump() }

            // The checker: per device and stream, exactly the acknowledged offsets after its first
            // position, in order, once each.
            let checked = devices.map { $0.check(against: acknowledged, context: "seed \(seed)") }.reduce(0, +)
            let resumes = devices.map(\.resumes).reduce(0, +)
            let onSecond = devices.map(\.resumesOnSecondNode).reduce(0, +)
            let overStreams = devices.filter(\.overEventStream).map(\.resumes).reduce(0, +)
            #expect(overStreams >= 5, "seed \(seed): the run resumed event streams through Last-Event-ID (\(overStreams))")
            let stored = devices.map(\.storedCursorResumes).reduce(0, +)
            let stale = devices.map(\.staleStoredCursors).reduce(0, +)
            #expect(stored >= 5, "seed \(seed): the run exercised stored-cursor reconnects (\(stored))")
            #expect(retried.answeredFirst + retried.producedAgain >= 5 && retried.kafkaCopies >= 5, "seed \(seed): the run retried pushes \(retried)")
            #expect(resumes >= 20 && onSecond >= 5, "seed \(seed): the run exercised resumes (\(resumes), \(onSecond) on the second node)")
            #expect(checked > 300, "seed \(seed): \(checked) deliveries checked")
            print("no-loss seed \(seed): \(checked) deliveries checked, \(resumes) resumes (\(onSecond) on the second node, \(overStreams) over SSE), " +
                  "\(stored) from stored cursors (\(stale) welcomes before the commit arrived, tried again), retried pushes \(retried), " +
                  "first node served \(node.gateway.replayStats.servedFromWindow) from its window and \(node.gateway.replayStats.servedFromKafka) from Kafka")
        }
    }
}
