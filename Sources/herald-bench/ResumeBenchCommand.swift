import ArgumentParser
import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import HeraldKafka
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A reconnect storm: N devices connect, drop together, miss some messages, and reconnect at once
/// with their cursors. Reports the time until every device has recovered everything it missed, what
/// was missed or repeated (must be nothing), where the node served the resumes from, and its peak RSS.
struct ResumeBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "N devices drop together and reconnect at once with their cursors; time to all recovered, and what was missed."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Option(help: "Kafka bootstrap servers of the node's cluster (the missed messages are produced there).") var kafkaBrokers: String
    @Option(help: "The events topic.") var eventsTopic = "herald.events"
    @Option(help: "Messages to each device's user while it is away.") var messagesPerDevice = 2
    @Option(help: "Broadcasts while the devices are away.") var broadcasts = 1
    @Option(help: "Seconds the devices stay away (how old their cursors are).") var awaySeconds = 3
    @Option(help: "Handshakes in flight at once during the storm.") var stormConcurrency = 2_000
    @Option(help: "The node's internal API port, to read where it served the resumes from (GET /v1/node).") var apiPort: Int?
    @Option(help: "An API key of the node. Env: HERALD_API_KEY.") var apiKey: String?

    func run() async throws {
        let secret = try fleetOptions.secret
        let json = fleetOptions.json
        let count = fleetOptions.connections
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let issuer = try await TokenIssuer(hmacSecret: secret)
        let expiry = Date().addingTimeInterval(6 * 3_600)
        var devices: [StormDevice] = []
        for index in 0..<count {
            let token = try await issuer.token(user: "storm-\(index)", device: "d", expiresAt: expiry)
            devices.append(StormDevice(token: token, source: "127.0.0.\(2 + index % max(1, min(fleetOptions.sourceAddresses, 250)))"))
        }

        // 1. Everyone connects and learns their positions.
        _ = try await connectAll(devices, concurrency: fleetOptions.concurrency, group: group, label: "connected", json: json)
        try await waitUntil(limit: .seconds(60)) { devices.allSatisfy { $0.hasWelcome } }

        // 2. Everyone drops at once (a network outage, a node lost), and misses messages.
        for device in devices { device.drop() }
        var logger = Logger(label: "herald.bench")
        logger.logLevel = .error
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: kafkaBrokers, clientID: "herald-bench")),
            logger: logger
        )
        var records: [KafkaOutgoingRecord] = []
        var owners: [Int] = []  // device index, or -1 for a broadcast
        for round in 0..<messagesPerDevice {
            for index in 0..<count {
                records.append(Self.record(HeraldRecord(stream: .user("storm-\(index)")), topic: eventsTopic, payload: #"{"missed":\#(round)}"#))
                owners.append(index)
            }
        }
        for round in 0..<broadcasts {
            records.append(Self.record(HeraldRecord(stream: .broadcast), topic: eventsTopic, payload: #"{"broadcast":\#(round)}"#))
            owners.append(-1)
        }
        var broadcastOffsets: [Int64] = []
        for (index, result) in (await producer.send(records)).enumerated() {
            let offset = try result.get().offset
            if owners[index] >= 0 { devices[owners[index]].expectUser(offset) } else { broadcastOffsets.append(offset) }
        }
        for device in devices { device.expectBroadcasts(broadcastOffsets) }
        await producer.shutdown()
        let statsBefore = await nodeStatus(group: group)
        try await Task.sleep(for: .seconds(awaySeconds))

        // 3. The storm: everyone reconnects at once with their cursor.
        let peak = Mutex(0)
        let sampler = Task {
            while !Task.isCancelled {
                if let pid = fleetOptions.nodePid, let rss = residentBytes(pid: pid) { peak.withLock { $0 = max($0, rss) } }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        let stormStart = ContinuousClock.now
        for device in devices { device.startResume(at: stormStart) }
        let refused = try await connectAll(devices, concurrency: stormConcurrency, group: group, label: "reconnected", json: json)
        try await waitUntil(limit: .seconds(120)) { devices.allSatisfy { $0.isDone } }
        let total = ContinuousClock.now - stormStart
        sampler.cancel()
        let statsAfter = await nodeStatus(group: group)

        let times = devices.compactMap(\.recoveryTime).map { $0.seconds * 1_000 }.sorted()
        let recovered = devices.filter { $0.recovered == true }.count
        let notRecovered = devices.compactMap(\.reason).reduce(into: [String: Int]()) { $0[$1, default: 0] += 1 }
        let problems = devices.compactMap(\.problem)
        let fromWindow = (statsAfter?.window ?? 0) - (statsBefore?.window ?? 0)
        let fromKafka = (statsAfter?.kafka ?? 0) - (statsBefore?.kafka ?? 0)
        let peakRSS = peak.withLock { $0 }
        if json {
            print(#"{"bench":"resume","devices":\#(count),"missed_per_device":\#(messagesPerDevice + broadcasts),"all_recovered_ms":\#(Int(total.seconds * 1_000)),"p50_ms":\#(Int(percentile(times, 0.5))),"p99_ms":\#(Int(percentile(times, 0.99))),"recovered":\#(recovered),"not_recovered":\#(count - recovered),"devices_with_missing_or_repeated":\#(problems.count),"refusals_retried":\#(refused),"from_window":\#(fromWindow),"from_kafka":\#(fromKafka),"node_peak_rss_bytes":\#(peakRSS)}"#)
        } else {
            FileHandle.standardError.write(Data("\n".utf8))
            print("devices \(count), each missed \(messagesPerDevice) own + \(broadcasts) broadcast messages over \(awaySeconds) s")
            print(String(format: "all recovered after      %8.0f ms", total.seconds * 1_000))
            print(String(format: "per device p50 / p99     %8.0f / %.0f ms", percentile(times, 0.5), percentile(times, 0.99)))
            print("recovered                \(recovered) of \(count)\(notRecovered.isEmpty ? "" : " (not: \(notRecovered))")")
            print("missing or repeated      \(problems.count) devices\(problems.prefix(3).map { "\n  \($0)" }.joined())")
            print("refusals retried         \(refused) (503 + Retry-After)")
            if statsAfter != nil { print("served from window/Kafka \(fromWindow) / \(fromKafka)") }
            if peakRSS > 0 { print(String(format: "node peak RSS            %8.1f MB", Double(peakRSS) / 1e6)) }
        }
        for device in devices { device.drop() }
        try await group.shutdownGracefully()
    }

    static func record(_ envelope: HeraldRecord, topic: String, payload: String) -> KafkaOutgoingRecord {
        KafkaOutgoingRecord(
            topic: topic, key: Array(envelope.key.utf8), value: ByteBuffer(string: payload),
            headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
        )
    }

    /// Connects every device (with its cursor once it has one), retrying 503s after their Retry-After;
    /// returns how many refusals were retried.
    private func connectAll(_ devices: [StormDevice], concurrency: Int, group: any EventLoopGroup, label: String, json: Bool) async throws -> Int {
        let host = fleetOptions.host
        let port = fleetOptions.port
        var refusals = 0
        try await withThrowingTaskGroup(of: Int.self) { tasks in
            var next = 0
            func add() {
                let device = devices[next]
                next += 1
                tasks.addTask {
                    var retried = 0
                    while true {
                        do {
                            try await device.connect(host: host, port: port, group: group)
                            return retried
                        } catch let refused as HandshakeRejected where refused.status == 503 || refused.status == 429 {
                            retried += 1
                            try await Task.sleep(for: .seconds(Double(refused.header("Retry-After").flatMap(Int.init) ?? 1)))
                        }
                    }
                }
            }
            while next < min(concurrency, devices.count) { add() }
            var done = 0
            while let retried = try await tasks.next() {
                refusals += retried
                done += 1
                if done % 1_000 == 0, !json { progressLine("\(label) \(done)") }
                if next < devices.count { add() }
            }
        }
        return refusals
    }

    private func waitUntil(limit: Duration, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < deadline else { throw ValidationError("timed out after \(limit)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Resumes the node served from its hot window and from Kafka so far, if its API is given.
    private func nodeStatus(group: any EventLoopGroup) async -> (window: Int, kafka: Int)? {
        guard let apiPort, let key = apiKey ?? ProcessInfo.processInfo.environment["HERALD_API_KEY"] else { return nil }
        guard let connection = try? await HTTPLoadConnection.connect(host: fleetOptions.host, port: apiPort, group: group) else { return nil }
        defer { connection.close() }
        let request = "GET /v1/node HTTP/1.1\r\nHost: \(fleetOptions.host)\r\nAuthorization: Bearer \(key)\r\n\r\n"
        guard let (status, body) = try? await connection.send(ByteBuffer(string: request)), status == 200,
              let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
              let resumes = object["resumes"] as? [String: Any] else { return nil }
        return ((resumes["from_window"] as? Int) ?? 0, (resumes["from_kafka"] as? Int) ?? 0)
    }
}

/// One device of the storm: its cursor, what it is owed, and what it got after reconnecting.
/// Its state is touched from its connection's event loop and from the bench task, under a lock.
final class StormDevice: Sendable {
    private struct State {
        var connection: WebSocketClientConnection?
        var positions: [String: Int64] = [:]
        var epoch = ""
        var hasWelcome = false
        var resuming = false
        var stormStart: ContinuousClock.Instant?
        var expected: [String: [Int64]] = [:]
        var received: [String: [Int64]] = [:]
        var recovered: Bool?
        var reason: String?
        var doneAt: ContinuousClock.Instant?
    }

    let token: String
    let source: String
    private let state = Mutex(State())

    init(token: String, source: String) {
        self.token = token
        self.source = source
    }

    var hasWelcome: Bool { state.withLock { $0.hasWelcome } }
    var isDone: Bool { state.withLock { $0.doneAt != nil || $0.recovered == false } }
    var recovered: Bool? { state.withLock { $0.recovered } }
    var reason: String? { state.withLock { $0.reason } }
    var recoveryTime: Duration? { state.withLock { s in s.doneAt.flatMap { done in s.stormStart.map { done - $0 } } } }

    /// What is wrong with what it received, if anything.
    var problem: String? {
        state.withLock { s in
            for (stream, offsets) in s.expected where s.received[stream, default: []] != offsets {
                return "stream \(stream): expected \(offsets), received \(s.received[stream, default: []])"
            }
            return nil
        }
    }

    func expectUser(_ offset: Int64) { state.withLock { $0.expected["u", default: []].append(offset) } }
    func expectBroadcasts(_ offsets: [Int64]) { state.withLock { $0.expected["*"] = offsets } }

    func startResume(at start: ContinuousClock.Instant) {
        state.withLock {
            $0.resuming = true
            $0.stormStart = start
            $0.hasWelcome = false
        }
    }

    func connect(host: String, port: Int, group: any EventLoopGroup) async throws {
        let (cursor, epoch) = state.withLock { s in
            (s.resuming ? s.positions.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ",") : nil, s.epoch)
        }
        var path = "/v1/ws"
        if let cursor { path += "?cursor=\(cursor.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? cursor)&epoch=\(epoch)" }
        let connection = try await WebSocketClientConnection.connect(
            host: host, port: port, path: path, headers: [("Authorization", "Bearer \(token)")], group: group, sourceAddress: source,
            observer: { [self] event in observe(event) }
        )
        state.withLock { $0.connection = connection }
    }

    func drop() {
        let connection = state.withLock { s in
            defer { s.connection = nil }
            return s.connection
        }
        connection?.channel.close(promise: nil)
    }

    private func observe(_ event: WebSocketClientConnection.Event) {
        guard case .text(let text) = event, let parsed = ServerEvent.parse(text) else { return }
        let now = ContinuousClock.now
        state.withLock { s in
            switch parsed {
            case .welcome(let welcome):
                s.hasWelcome = true
                if s.resuming {
                    s.recovered = welcome.recovered
                    s.reason = welcome.reason
                } else {
                    s.positions = welcome.positions
                    s.epoch = welcome.epoch
                }
            case .message(let message):
                s.positions[message.stream] = message.offset
                if s.resuming { s.received[message.stream, default: []].append(message.offset) }
            case .error, .closed, .published, .publishFailed, .refreshed, .history:
                return
            }
            if s.resuming, s.recovered == true, s.doneAt == nil,
               s.expected.allSatisfy({ s.received[$0.key, default: []].count >= $0.value.count }) {
                s.doneAt = now
            }
        }
    }
}
