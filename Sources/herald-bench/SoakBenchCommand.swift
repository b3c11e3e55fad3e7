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

/// Several hundred well-behaved devices receive pushes (through the API and produced straight to
/// Kafka) for minutes while hostile clients run beside them: never-reading resumes, ping floods, slow
/// readers, publish floods, tokenless and garbage handshakes, giant and over-rate push batches. Reports
/// whether the devices missed anything (every acknowledged push exactly once, in order), their delivery
/// latency, what the hostile ones were answered, the node's own counters, and its memory and CPU.
struct SoakBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soak",
        abstract: "Well-behaved devices receive pushes while hostile clients run: nothing missed, bounded latency, node RSS and CPU over time."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Option(help: "Seconds of pushing and hostility.") var seconds = 180
    @Option(help: "Kafka bootstrap servers of the node's cluster (direct produces go there).") var kafkaBrokers: String?
    @Option(help: "The events topic.") var eventsTopic = "herald.events"
    @Option(help: "The API's port.") var apiPort = 8081
    @Option(help: "The well-behaved API key. Env: HERALD_API_KEY.") var apiKey: String?
    @Option(help: "A second API key, for the hostile batches (its own push budget).") var hostileApiKey: String?
    @Option(help: "Pushes per second through the API, each to one device.") var pushRate = 50
    @Option(help: "Records per second produced straight to Kafka, each to one device.") var produceRate = 50
    @Option(help: "Payload bytes per push.") var payloadBytes = 200
    @Option(help: "Seconds a never-reading client floods pings at most before it reads again and looks how it was closed (well past the node's slow-consumer window).")
    var holdSeconds = 30
    @Option(help: "The node's per-request record cap (HERALD_MAX_PUSH_RECORDS): giant batches are made larger.") var maxPushRecords = 10_000
    @Option(help: "Hostile handshakes (no token, garbage tokens) per second.") var handshakeRate = 200
    @Flag(help: "The devices and their pushes alone, for a baseline.") var noHostiles = false

    /// What the run's tasks share: the devices' connections, and the hog streams' last offsets.
    final class Shared: Sendable {
        let connections = Mutex<[WebSocketClientConnection]>([])
        let hogOffsets = Mutex<[String: Int64]>([:])
    }

    func run() async throws {
        let secret = try fleetOptions.secret
        guard let key = apiKey ?? ProcessInfo.processInfo.environment["HERALD_API_KEY"] else {
            throw ValidationError("--api-key or HERALD_API_KEY is required")
        }
        guard let kafkaBrokers else { throw ValidationError("--kafka-brokers is required") }
        let hostileKey = hostileApiKey ?? key
        let json = fleetOptions.json
        let (host, port, apiPort, devices) = (fleetOptions.host, fleetOptions.port, apiPort, fleetOptions.connections)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let issuer = try await TokenIssuer(hmacSecret: secret)
        let ledger = SoakLedger(devices: devices)
        let tally = SoakTally()
        let start = ContinuousClock.now
        let sampler = NodeSampler(
            pid: fleetOptions.nodePid, connection: try await HTTPLoadConnection.connect(host: host, port: apiPort, group: group), apiKey: key
        )
        let before = await sampler.sample(since: start)

        // The devices, one user each, spread over source addresses 127.0.0.2…; kept open throughout.
        let shared = Shared()
        let sources = max(1, min(fleetOptions.sourceAddresses, 150))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for index in 0..<devices {
                if index >= fleetOptions.concurrency { try await tasks.next() }
                tasks.addTask {
                    let token = try await issuer.token(user: "soak-\(index)", device: "d", expiresAt: Date().addingTimeInterval(6 * 3_600))
                    while true {
                        do {
                            let connection = try await WebSocketClientConnection.connect(
                                host: host, port: port, path: "/v1/ws", headers: [("Authorization", "Bearer \(token)")], group: group,
                                sourceAddress: "127.0.0.\(2 + index % sources)", observer: { ledger.observe(device: index, $0) }
                            )
                            shared.connections.withLock { $0.append(connection) }
                            return
                        } catch let refused as HandshakeRejected where refused.status == 429 || refused.status == 503 {
                            tally.add("device-handshake.\(refused.status)")
                            try await Task.sleep(for: .seconds(Double(refused.header("Retry-After").flatMap(Int.init) ?? 1)))
                        }
                    }
                }
            }
            try await tasks.waitForAll()
        }
        if !json { progressLine("\(devices) devices connected\n") }
        while ledger.epoch == nil, ContinuousClock.now - start < .seconds(10) { try await Task.sleep(for: .milliseconds(20)) }

        var logger = Logger(label: "herald.bench")
        logger.logLevel = .error
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: kafkaBrokers, clientID: "herald-bench-soak")),
            logger: logger
        )
        let eventsTopic = self.eventsTopic
        // The never-reading clients' streams get 5 MB of history first (a resume of it is more than the
        // node's socket buffer takes), paced so that the embedded Kafka's small retention never runs
        // ahead of the node's consumer.
        let hogPayload = ByteBuffer(string: #"{"hog":""# + String(repeating: "h", count: 2_000) + #""}"#)
        func hogRecords(_ users: [String], each count: Int) -> [KafkaOutgoingRecord] {
            users.flatMap { user in
                let envelope = HeraldRecord(stream: .user(user))
                return (0..<count).map { _ in
                    KafkaOutgoingRecord(
                        topic: eventsTopic, key: Array(envelope.key.utf8), value: hogPayload,
                        headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
                    )
                }
            }
        }
        let neverReadHogs = ["hog-0", "hog-1"]
        for _ in 0..<10 {
            let results = await producer.send(hogRecords(neverReadHogs, each: 250))
            for (index, user) in neverReadHogs.enumerated() {
                if case .success(let landed) = results[index * 250 + 249] { shared.hogOffsets.withLock { $0[user] = landed.offset } }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        if !json { progressLine("hog streams filled\n") }

        let pushStart = ContinuousClock.now
        ledger.startClock()
        let deadline = pushStart + .seconds(seconds)
        let hostiles = SoakHostiles(
            host: host, port: port, apiPort: apiPort, hostileKey: hostileKey, issuer: issuer, group: group, tally: tally,
            deadline: deadline, hold: .seconds(holdSeconds), epoch: { ledger.epoch },
            latestOffset: { user in shared.hogOffsets.withLock { $0[user] } }
        )
        let padding = String(repeating: "p", count: max(0, payloadBytes - 40))
        let run = UUID().uuidString.prefix(8)
        let (pushRate, produceRate, handshakeRate, maxPushRecords, noHostiles) = (pushRate, produceRate, handshakeRate, maxPushRecords, noHostiles)
        let failures = SoakTally()

        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await sampler.run(from: start, until: deadline) }
            // API pushes, over four keep-alive connections, paced to the rate.
            for lane in 0..<4 {
                tasks.addTask {
                    guard let connection = try? await HTTPLoadConnection.connect(host: host, port: apiPort, group: group) else {
                        failures.add("push.connect")
                        return
                    }
                    defer { connection.close() }
                    let interval = Duration.seconds(4.0 / Double(max(1, pushRate)))
                    var next = ContinuousClock.now
                    var sequence = 0
                    while ContinuousClock.now < deadline {
                        sequence += 1
                        let device = Int.random(in: 0..<devices)
                        let id = "h-\(run)-\(lane)-\(sequence)"
                        let body = #"{"to":{"users":["soak-\#(device)"]},"id":"\#(id)","data":{"t":\#(DispatchTime.now().uptimeNanoseconds),"p":"\#(padding)"}}"#
                        let request = ByteBuffer(string: "POST /v1/push HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
                        do {
                            var (status, _) = try await connection.send(request)
                            // 503 (the node's fan-out is behind, or Kafka is): a well-behaved service waits
                            // the Retry-After (1 s) and sends the same push again, with its id.
                            var retries = 0
                            while status == 503, retries < 10, ContinuousClock.now < deadline + .seconds(10) {
                                retries += 1
                                tally.add("push-retry.503")
                                try? await Task.sleep(for: .seconds(1))
                                (status, _) = try await connection.send(request)
                            }
                            if status == 202 { ledger.acknowledged(device: device, id: id) } else { failures.add("push.\(status)") }
                        } catch {
                            failures.add("push.error")
                            return
                        }
                        next += interval
                        try? await Task.sleep(until: next)
                    }
                }
            }
            // Direct produces to the devices, ten times a second; and 2 KB records to the hog users the
            // never-reading clients are (20 a second each: the hot window keeps 5 MB of each for their
            // resumes) and the slow readers are (5 a second).
            tasks.addTask {
                var sequence = 0
                var tick = 0
                var next = ContinuousClock.now
                while ContinuousClock.now < deadline {
                    tick += 1
                    var records: [KafkaOutgoingRecord] = []
                    var targets: [(device: Int, id: String)] = []
                    let count = produceRate / 10 + (tick % 10 < produceRate % 10 ? 1 : 0)
                    for _ in 0..<count {
                        sequence += 1
                        let device = Int.random(in: 0..<devices)
                        let envelope = HeraldRecord(stream: .user("soak-\(device)"), id: "k-\(run)-\(sequence)")
                        records.append(KafkaOutgoingRecord(
                            topic: eventsTopic, key: Array(envelope.key.utf8),
                            value: ByteBuffer(string: #"{"t":\#(DispatchTime.now().uptimeNanoseconds),"p":"\#(padding)"}"#),
                            headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
                        ))
                        targets.append((device, envelope.id ?? ""))
                    }
                    let hogs = neverReadHogs.flatMap { [$0, $0] } + (tick % 2 == 0 ? ["hog-slow-0", "hog-slow-1"] : [])
                    records += hogs.flatMap { hogRecords([$0], each: 1) }
                    let results = await producer.send(records)
                    for (target, result) in zip(targets, results) {
                        if case .success = result { ledger.acknowledged(device: target.device, id: target.id) } else { failures.add("produce.failed") }
                    }
                    for (user, result) in zip(hogs, results.dropFirst(targets.count)) {
                        if case .success(let landed) = result { shared.hogOffsets.withLock { $0[user] = landed.offset } }
                    }
                    next += .milliseconds(100)
                    try? await Task.sleep(until: next)
                }
            }
            // A device reconnecting now and then while the floods run: a credential's handshake is
            // never refused for what the tokenless ones spent.
            tasks.addTask {
                var n = 0
                while ContinuousClock.now < deadline {
                    n += 1
                    do {
                        let token = try await issuer.token(user: "churn-\(n % 20)", expiresAt: Date().addingTimeInterval(600))
                        let connection = try await WebSocketClientConnection.connect(
                            host: host, port: port, path: "/v1/ws", headers: [("Authorization", "Bearer \(token)")], group: group,
                            sourceAddress: "127.0.0.\(2 + n % sources)"
                        )
                        tally.add("churn.101")
                        connection.close()
                    } catch let refused as HandshakeRejected {
                        tally.add("churn.\(refused.status)")
                    } catch {
                        tally.add("churn.error \(SoakHostiles.kind(error))")
                    }
                    try? await Task.sleep(for: .milliseconds(500))
                }
            }
            for index in 0..<2 where !noHostiles {
                tasks.addTask { await hostiles.neverReadingResumes(index) }
                tasks.addTask { await hostiles.slowReader(index) }
            }
            if !noHostiles {
                tasks.addTask { await hostiles.pingFlood(0) }
                tasks.addTask { await hostiles.publishFlood(0) }
                tasks.addTask { await hostiles.handshakeFlood(rate: handshakeRate) }
                tasks.addTask { await hostiles.giantBatches(recordsPerRequest: maxPushRecords) }
            }
            if !json {
                tasks.addTask {
                    while ContinuousClock.now < deadline {
                        try? await Task.sleep(for: .seconds(5))
                        let report = ledger.report()
                        let rss = sampler.all.last?.residentBytes.map { " node RSS \($0 >> 20) MB" } ?? ""
                        progressLine(String(format: "%.0f s: %d acknowledged, %d delivered%@", (ContinuousClock.now - pushStart).seconds, report.acknowledged, report.delivered, rss))
                    }
                }
            }
            await tasks.waitForAll()
        }
        let pushSeconds = (ContinuousClock.now - pushStart).seconds
        // Stragglers: everything acknowledged should arrive well within this.
        let drainLimit = ContinuousClock.now + .seconds(20)
        while !ledger.complete, ContinuousClock.now < drainLimit { try await Task.sleep(for: .milliseconds(100)) }
        await producer.shutdown()
        let report = ledger.report()
        let during = await sampler.sample(since: start)

        for connection in shared.connections.withLock({ $0 }) { connection.close() }
        // Every connection and its admission slot given back.
        var after = during
        let closeLimit = ContinuousClock.now + .seconds(20)
        repeat {
            try await Task.sleep(for: .milliseconds(200))
            after = await sampler.sample(since: start)
        } while (after.connections ?? 0) > 0 && ContinuousClock.now < closeLimit
        let gauge = try await sampler.metric("herald_connections")
        var serverCloses: [String: Int] = [:]
        for code in ["1008", "4008", "1009", "1012", "1013"] {
            serverCloses[code] = Int(try await sampler.metric("herald_connections_closed_total", ["by": "server", "code": code]))
        }
        var refusals: [String: Int] = [:]
        for reason in ["missing-token", "invalid-token", "source-rate-limited", "rate-limited", "at-capacity"] {
            refusals[reason] = Int(try await sampler.metric("herald_handshake_refusals_total", ["reason": reason]))
        }
        sampler.connection.close()
        try await group.shutdownGracefully()

        let samples = sampler.all
        let rss = samples.compactMap(\.residentBytes)
        let cpu = (after.cpuSeconds ?? 0) - (before.cpuSeconds ?? 0)
        let elapsed = samples.last.map { $0.seconds - (samples.first?.seconds ?? 0) } ?? 1
        let latencies = report.latencies
        let everyTen = stride(from: 0, to: samples.count, by: 10).compactMap { samples[$0].residentBytes.map { $0 >> 20 } }
        let tallies = tally.snapshot.merging(failures.snapshot) { a, _ in a }
        let counts = tallies.sorted { $0.key < $1.key }.map { #""\#($0.key)":\#($0.value)"# }.joined(separator: ",")
        let closes = serverCloses.sorted { $0.key < $1.key }.map { #""\#($0.key)":\#($0.value)"# }.joined(separator: ",")
        let refused = refusals.sorted { $0.key < $1.key }.map { #""\#($0.key)":\#($0.value)"# }.joined(separator: ",")
        if json {
            print(
                #"{"bench":"soak","devices":\#(devices),"seconds":\#(Int(pushSeconds)),"acknowledged":\#(report.acknowledged),"delivered":\#(report.delivered),"#
                    + #""missing":\#(report.missing),"duplicated":\#(report.duplicated),"out_of_order":\#(report.outOfOrder),"devices_closed":\#(report.closed),"#
                    + #""delivery_p50_ms":\#(Int(percentile(latencies, 0.5))),"delivery_p99_ms":\#(Int(percentile(latencies, 0.99))),"delivery_max_ms":\#(Int(latencies.last ?? 0)),"#
                    + #""delivery_p99_ms_every_10s":[\#(report.p99ByTenSeconds.map { String(Int($0)) }.joined(separator: ","))],"#
                    + #""push_failures":\#(failures.snapshot.values.reduce(0, +)),"outcomes":{\#(counts)},"server_closes":{\#(closes)},"handshake_refusals":{\#(refused)},"#
                    + #""node_connections_peak":\#(samples.compactMap(\.connections).max() ?? 0),"node_connections_after":\#(after.connections ?? -1),"node_connections_gauge_after":\#(Int(gauge)),"#
                    + #""peak_queued_bytes":\#(after.peakQueuedBytes ?? -1),"slow_consumer_closes":\#(after.slowConsumerCloses ?? -1),"#
                    + #""hot_window_mb_peak":\#((samples.compactMap(\.hotWindowBytes).max() ?? 0) >> 20),"#
                    + #""rss_mb_start":\#((rss.first ?? 0) >> 20),"rss_mb_peak":\#((rss.max() ?? 0) >> 20),"rss_mb_end":\#((rss.last ?? 0) >> 20),"rss_mb_every_10s":[\#(everyTen.map(String.init).joined(separator: ","))],"#
                    + #""cpu_seconds":\#(String(format: "%.1f", cpu)),"cpu_percent":\#(String(format: "%.0f", cpu / max(elapsed, 1) * 100))}"#
            )
        } else {
            print("")
            print("\(devices) devices, \(Int(pushSeconds)) s of pushes (\(pushRate)/s through the API, \(produceRate)/s straight to Kafka) beside hostile clients")
            print("acknowledged pushes      \(report.acknowledged), delivered \(report.delivered), missing \(report.missing), duplicated \(report.duplicated), out of order \(report.outOfOrder)")
            print(String(format: "delivery latency         p50 %.1f ms, p99 %.1f ms, max %.1f ms (push → device)", percentile(latencies, 0.5), percentile(latencies, 0.99), latencies.last ?? 0))
            print("p99 every 10 s (ms)      \(report.p99ByTenSeconds.map { String(Int($0)) }.joined(separator: " "))")
            print("devices closed           \(report.closed); push failures \(failures.snapshot)")
            print("hostile outcomes         \(tally.snapshot.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
            print("node: server closes      \(serverCloses.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
            print("node: handshake refusals \(refusals.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
            print("node: connections        peak \(samples.compactMap(\.connections).max() ?? 0), after closing \(after.connections ?? -1) (gauge \(Int(gauge)))")
            print("node: outbound           peak queued \(after.peakQueuedBytes ?? -1) bytes, slow-consumer closes \(after.slowConsumerCloses ?? -1)")
            let hotWindow = stride(from: 0, to: samples.count, by: 10).compactMap { samples[$0].hotWindowBytes.map { $0 >> 20 } }
            print("node: hot window         every 10 s (MB): \(hotWindow.map(String.init).joined(separator: " "))")
            if !rss.isEmpty {
                print("node: RSS                start \(rss.first! >> 20) MB, peak \(rss.max()! >> 20) MB, end \(rss.last! >> 20) MB; every 10 s: \(everyTen.map(String.init).joined(separator: " "))")
                print(String(format: "node: CPU                %.1f s over %.0f s (%.0f%% of one core)", cpu, elapsed, cpu / max(elapsed, 1) * 100))
            }
        }
    }
}
