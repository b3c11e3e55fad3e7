import ArgumentParser
import Foundation
import HeraldCore
import HeraldKafka
import Logging
import NIOCore
import NIOPosix

/// N connections (over one or several nodes, from one or several client processes), K rounds of one
/// broadcast to all of them, timed the way a user sees it: from the moment the push is sent (an HTTP
/// POST to the API by default, or a Kafka produce with `--via kafka`) to each socket's arrival. The
/// first round is reported apart (a fresh node's first push), and the node's CPU per delivery is read
/// from /proc around each round. Arrival times use the system's monotonic clock, which every process on
/// the machine shares.
struct BroadcastBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broadcast",
        abstract: "N connections, K rounds of one broadcast to all: from the push to each socket, first round apart, node CPU per delivery."
    )

    enum Via: String, ExpressibleByArgument, Sendable { case http, kafka }

    @OptionGroup var fleetOptions: FleetOptions
    @Option(help: "How each round's broadcast is sent: http (POST /v1/push, as a business service does) or kafka (produced to the events topic).")
    var via: Via = .http
    @Option(help: "Kafka bootstrap servers of the node's cluster (for --via kafka).") var kafkaBrokers: String?
    @Option(help: "The events topic (for --via kafka).") var eventsTopic = "herald.events"
    @Option(help: "The API's port (for --via http).") var apiPort = 8081
    @Option(help: "API key (for --via http). Env: HERALD_API_KEY.") var apiKey: String?
    @Option(help: "Rounds.") var rounds = 3
    @Option(help: "Payload bytes of the broadcast message.") var payloadBytes = 100
    @Option(help: "Client processes holding the connections (each holds N / processes).") var processes = 1
    @Option(help: .hidden) var userOffset = 0
    @Flag(help: .hidden) var worker = false

    /// One process's connections: opened, then per round the arrival times of the broadcast.
    final class Fleet: Sendable {
        let fleet = ConnectionFleet()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    func run() async throws {
        if worker { return try await runWorker() }
        let sender = try await makeSender()
        let json = fleetOptions.json
        var local: Fleet? = nil
        var workers: [BenchWorker] = []
        if processes > 1 {
            workers = try BenchWorker.spawn(count: processes, total: fleetOptions.connections) { count, offset in
                fleetOptions.workerArguments("broadcast", count: count, offset: offset, processes: processes)
            }
            var ready = 0
            for worker in workers {
                ready += (try worker.readObject()["connections"] as? Int) ?? 0
                if !json { progressLine("workers ready, \(ready) connections") }
            }
        } else {
            let fleet = Fleet()
            try await open(fleet, count: fleetOptions.connections, offset: 0)
            local = fleet
        }
        if !json { FileHandle.standardError.write(Data("\n".utf8)) }
        try await Task.sleep(for: .seconds(2))
        let expected = fleetOptions.connections
        let payload = "\"" + String(repeating: "b", count: max(0, payloadBytes - 2)) + "\""
        var results: [BroadcastRound] = []
        for round in 1...rounds {
            local?.fleet.resetArrivals()
            for worker in workers { try worker.send("reset") }
            for worker in workers { _ = try worker.readObject() }
            let clientCPUBefore = try clientCPUSeconds(local: true, workers: workers)
            let nodeCPUBefore = fleetOptions.nodePid.flatMap(NodeSampler.cpuSeconds)
            let start = DispatchTime.now().uptimeNanoseconds
            try await sender.send(payload: payload, id: "bench-\(UUID().uuidString.prefix(8))-\(round)")
            var arrivals = try await local?.fleet.waitForArrivals(expected, limit: .seconds(60)) ?? []
            for worker in workers { try worker.send("collect") }
            var workerCPU = 0.0
            for worker in workers {
                let reply = try worker.readObject()
                arrivals += ((reply["arrivals"] as? [NSNumber]) ?? []).map(\.uint64Value)
                workerCPU += (reply["cpu_seconds"] as? Double) ?? 0
            }
            let nodeCPUAfter = fleetOptions.nodePid.flatMap(NodeSampler.cpuSeconds)
            let clientCPU = (NodeSampler.cpuSeconds(pid: getpid()) ?? 0) + workerCPU - clientCPUBefore
            let latencies = arrivals.map { Double($0 &- start) / 1e6 }.sorted()
            let result = BroadcastRound(
                latencies: latencies, missing: expected - latencies.count,
                nodeCPUSeconds: zip(nodeCPUBefore, nodeCPUAfter).map { $1 - $0 }, clientCPUSeconds: clientCPU
            )
            results.append(result)
            if !json { print("round \(round): \(result.line)") }
            try await Task.sleep(for: .seconds(1))
        }
        await sender.shutdown()
        let report = BroadcastReport(rounds: results, connections: expected)
        if json {
            print(report.json(processes: processes, payloadBytes: payloadBytes, via: via.rawValue))
        } else {
            print(report.text)
        }
        for worker in workers { worker.finish() }
        if let local {
            local.fleet.closeAll()
            try await local.group.shutdownGracefully()
        }
    }

    private func makeSender() async throws -> BroadcastSender {
        switch via {
        case .kafka:
            guard let kafkaBrokers else { throw ValidationError("--via kafka needs --kafka-brokers") }
            return try await BroadcastSender.kafka(brokers: kafkaBrokers, topic: eventsTopic)
        case .http:
            guard let key = apiKey ?? ProcessInfo.processInfo.environment["HERALD_API_KEY"] else {
                throw ValidationError("--via http needs --api-key or HERALD_API_KEY")
            }
            return try await BroadcastSender.http(host: fleetOptions.host, port: apiPort, key: key)
        }
    }

    /// This process's CPU seconds plus, when asked, each worker's (they answer `cpu` with theirs).
    private func clientCPUSeconds(local: Bool, workers: [BenchWorker]) throws -> Double {
        var total = NodeSampler.cpuSeconds(pid: getpid()) ?? 0
        for worker in workers {
            try worker.send("cpu")
            total += (try worker.readObject()["cpu_seconds"] as? Double) ?? 0
        }
        return total
    }

    private func open(_ fleet: Fleet, count: Int, offset: Int) async throws {
        let json = fleetOptions.json
        _ = try await fleet.fleet.open(
            count: count, host: fleetOptions.host, port: fleetOptions.port, secret: try fleetOptions.secret,
            sourceAddresses: fleetOptions.sourceAddresses, concurrency: fleetOptions.concurrency, group: fleet.group,
            ports: fleetOptions.portList, rate: fleetOptions.rate, user: { "bench-\($0 + offset)" },
            progress: { done in if !json { progressLine("connected \(done)") } }
        )
    }

    /// A worker opens its share, then answers the coordinator line by line: `reset` (forget arrivals),
    /// `cpu` (its CPU seconds so far), `collect` (its arrivals so far, after waiting for all its
    /// connections' copies or 60 s, and its CPU seconds).
    private func runWorker() async throws {
        let fleet = Fleet()
        try await open(fleet, count: fleetOptions.connections, offset: userOffset)
        BenchWorker.reply(#"{"connections":\#(fleet.fleet.count)}"#)
        while let line = readLine() {
            let cpu = NodeSampler.cpuSeconds(pid: getpid()) ?? 0
            switch line {
            case "reset":
                fleet.fleet.resetArrivals()
                BenchWorker.reply(#"{"reset":true}"#)
            case "cpu":
                BenchWorker.reply(#"{"cpu_seconds":\#(cpu)}"#)
            case "collect":
                let arrivals = try await fleet.fleet.waitForArrivals(fleet.fleet.count, limit: .seconds(60))
                let cpu = NodeSampler.cpuSeconds(pid: getpid()) ?? 0
                BenchWorker.reply(#"{"arrivals":[\#(arrivals.map(String.init).joined(separator: ","))],"cpu_seconds":\#(cpu)}"#)
            default:
                break
            }
        }
        fleet.fleet.closeAll()
        try await fleet.group.shutdownGracefully()
    }
}

private func zip(_ a: Double?, _ b: Double?) -> (Double, Double)? {
    guard let a, let b else { return nil }
    return (a, b)
}
