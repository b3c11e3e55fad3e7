import Foundation
import HeraldClient
import HeraldCore
import HeraldKafka
import NIOCore
import NIOPosix
import Testing

/// One simulated device: what it was sent since its first connect, per stream, as it received it.
final class SimulatedDevice {
    let user: String
    let name: String
    var connection: TestConnection?
    /// The positions of its first welcome: it is owed every acknowledged message after them.
    var first: [String: Int64] = [:]
    var cursor: [String: Int64] = [:]
    var epoch = ""
    var received: [String: [Int64]] = [:]
    var resumes = 0
    var resumesOnSecondNode = 0

    init(user: String, name: String) {
        self.user = user
        self.name = name
    }

    func record(_ event: ServerEvent) throws {
        switch event {
        case .message(let message):
            received[message.stream, default: []].append(message.offset)
            cursor[message.stream] = message.offset
        case .error(let code, let message), .publishFailed(_, let code, let message):
            throw TestFailure("\(user)/\(name) got an error frame: \(code) \(message)")
        case .welcome, .closed, .published, .history:
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
        connection.session.close()
        while true {
            let event = try await connection.next(within: .seconds(15))
            if case .closed = event { break }
            try record(event)
        }
        self.connection = nil
    }

    /// Connects (resuming from its cursor once it has one) and checks the welcome: a resume must be
    /// recovered, with the cursor as its positions. Returns whether it resumed.
    @discardableResult
    func connect(port: Int, token: String, group: any EventLoopGroup, context: String) async throws -> Bool {
        let client = HeraldClient(host: "127.0.0.1", port: port, group: group)
        let resuming = !cursor.isEmpty
        let session = try await client.connect(
            token: token, channels: ["news"], cursor: resuming ? cursorText : nil, epoch: resuming ? epoch : nil
        )
        let connection = try await TestConnection.open(session)
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
    @Test("seeded random pushes (API and straight to Kafka), disconnects and resumes, some through a second node process")
    func randomizedNoLoss() async throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["HERALD_TEST_SEED"] ?? "") ?? 20_261_129
        var random = SplitMix64(state: seed)
        // A small hot window on the first node, so that its resumes come from memory and from Kafka.
        try await GatewayHarness.run(configure: { $0.hotWindowBytes = 8 * 1024 }) { node in
            // The second node is a real `herald serve` process on the same Kafka, so its own hot
            // window starts empty: resumes there read older positions from Kafka.
            let second = try HeraldProcess(
                ["serve", "--kafka-brokers", node.cluster.bootstrapServers, "--port", "0", "--host", "127.0.0.1",
                 "--api-port", "0", "--api-host", "127.0.0.1", "--node-id", "second-node"],
                environment: ["HERALD_JWT_SECRET": testSecret, "HERALD_API_KEYS": testAPIKey]
            )
            defer { second.stop() }
            let secondPort = Int(try await second.waitFor(#"port=(\d+) \[\w+\] WebSocket listener open"#))!

            let users = (0..<6).map { "user\($0)" }
            let devices = users.flatMap { user in ["phone", "laptop", "browser"].map { SimulatedDevice(user: user, name: $0) } }
            var acknowledged: [String: [Int64]] = [:]  // "u:USER", "*", "c:news" → offsets

            func connect(_ device: SimulatedDevice, port: Int) async throws {
                let token = try await node.token(device.user, device: device.name, channels: ["news"])
                if try await device.connect(port: port, token: token, group: node.group, context: "seed \(seed)"), port == secondPort {
                    device.resumesOnSecondNode += 1
                }
            }

            func push() async throws {
                let payload = #"{"r":\#(random.next() % 1_000_000)}"#
                let target = Int.random(in: 0..<10, using: &random)
                let user = users.randomElement(using: &random)!
                if Bool.random(using: &random) {
                    // Through the HTTP API.
                    let to = target < 7 ? #"{"users":["\#(user)"]}"# : target < 9 ? #"{"channels":["news"]}"# : #"{"all":true}"#
                    let response = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":\#(to),"data":\#(payload)}"#)
                    guard response.status == 202, let results = response.json["results"] as? [[String: Any]] else {
                        throw TestFailure("push failed: \(response.status) \(response.body)")
                    }
                    for result in results {
                        let stream = result["stream"] as! String
                        let key = stream == "u" ? "u:" + (result["key"] as! String) : stream
                        acknowledged[key, default: []].append((result["offset"] as! NSNumber).int64Value)
                    }
                } else {
                    // Straight to Kafka, as a business service with its own producer would.
                    let stream: HeraldStream = target < 7 ? .user(user) : target < 9 ? .channel("news") : .broadcast
                    let delivery = try await node.produce(HeraldRecord(stream: stream), payload)
                    let key = if case .user(let name) = stream { "u:" + name } else { stream.wireName }
                    acknowledged[key, default: []].append(delivery.offset)
                }
            }

            for device in devices { try await connect(device, port: node.port) }
            for step in 0..<220 {
                let roll = Int.random(in: 0..<100, using: &random)
                if roll < 60 {
                    try await push()
                } else if roll < 80 {
                    if let device = devices.filter({ $0.connection != nil }).randomElement(using: &random) {
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
            #expect(resumes >= 20 && onSecond >= 5, "seed \(seed): the run exercised resumes (\(resumes), \(onSecond) on the second node)")
            #expect(checked > 300, "seed \(seed): \(checked) deliveries checked")
            print("no-loss seed \(seed): \(checked) deliveries checked, \(resumes) resumes (\(onSecond) on the second node), " +
                  "first node served \(node.gateway.replayStats.servedFromWindow) from its window and \(node.gateway.replayStats.servedFromKafka) from Kafka")
        }
    }
}
