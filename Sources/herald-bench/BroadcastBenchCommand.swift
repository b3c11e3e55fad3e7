import ArgumentParser
import Foundation
import HeraldCore
import HeraldKafka
import Logging
import NIOCore
import NIOPosix

/// N connections (over one or several nodes, from one or several client processes), K rounds of one
/// broadcast to all of them: per round the time from the push to the last delivery, percentiles
/// across connections, deliveries per second, and missing deliveries. Arrival times use the system's
/// monotonic clock, which every process on the machine shares.
struct BroadcastBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broadcast",
        abstract: "N connections, K rounds of one broadcast to all; time to the last delivery and deliveries per second."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Option(help: "Kafka bootstrap servers of the node's cluster (the broadcast is produced there).") var kafkaBrokers: String?
    @Option(help: "The events topic.") var eventsTopic = "herald.events"
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
        guard let kafkaBrokers else { throw ValidationError("--kafka-brokers is required") }
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
        var logger = Logger(label: "herald.bench")
        logger.logLevel = .error
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: kafkaBrokers, clientID: "herald-bench")),
            logger: logger
        )
        let expected = fleetOptions.connections
        let payload = "\"" + String(repeating: "b", count: max(0, payloadBytes - 2)) + "\""
        var results: [(last: Double, p50: Double, p99: Double, rate: Double, missing: Int)] = []
        for round in 1...rounds {
            local?.fleet.resetArrivals()
            for worker in workers { try worker.send("reset") }
            for worker in workers { _ = try worker.readObject() }
            let record = HeraldRecord(stream: .broadcast, id: "bench-\(round)")
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try await producer.send(KafkaOutgoingRecord(
                topic: eventsTopic, key: Array(record.key.utf8), value: ByteBuffer(string: payload),
                headers: record.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
            ))
            var arrivals = try await local?.fleet.waitForArrivals(expected, limit: .seconds(60)) ?? []
            for worker in workers { try worker.send("collect") }
            for worker in workers {
                arrivals += ((try worker.readObject()["arrivals"] as? [NSNumber]) ?? []).map(\.uint64Value)
            }
            let latencies = arrivals.map { Double($0 &- start) / 1e6 }.sorted()
            let last = latencies.last ?? 0
            let rate = last > 0 ? Double(latencies.count) / (last / 1_000) : 0
            results.append((last, percentile(latencies, 0.5), percentile(latencies, 0.99), rate, expected - latencies.count))
            if !json {
                print(String(format: "round %d: %d deliveries, last %.0f ms, p50 %.0f ms, p99 %.0f ms, %.0f deliveries/s, missing %d",
                             round, latencies.count, last, percentile(latencies, 0.5), percentile(latencies, 0.99), rate, expected - latencies.count))
            }
            try await Task.sleep(for: .seconds(1))
        }
        await producer.shutdown()
        let rate = median(results.map(\.rate))
        let last = median(results.map(\.last))
        let p99 = median(results.map(\.p99))
        let missing = results.map(\.missing).reduce(0, +)
        if json {
            print(#"{"bench":"broadcast","connections":\#(expected),"processes":\#(processes),"rounds":\#(rounds),"payload_bytes":\#(payloadBytes),"median_last_ms":\#(Int(last)),"median_p99_ms":\#(Int(p99)),"median_deliveries_per_second":\#(Int(rate)),"missing":\#(missing)}"#)
        } else {
            print(String(format: "median of %d rounds to %d connections: last delivery %.0f ms, p99 %.0f ms, %.0f deliveries/s, missing %d",
                         rounds, expected, last, p99, rate, missing))
        }
        for worker in workers { worker.finish() }
        if let local {
            local.fleet.closeAll()
            try await local.group.shutdownGracefully()
        }
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
    /// `collect` (its arrivals so far, after waiting for all its connections' copies or 60 s).
    private func runWorker() async throws {
        let fleet = Fleet()
        try await open(fleet, count: fleetOptions.connections, offset: userOffset)
        BenchWorker.reply(#"{"connections":\#(fleet.fleet.count)}"#)
        while let line = readLine() {
            switch line {
            case "reset":
                fleet.fleet.resetArrivals()
                BenchWorker.reply(#"{"reset":true}"#)
            case "collect":
                let arrivals = try await fleet.fleet.waitForArrivals(fleet.fleet.count, limit: .seconds(60))
                BenchWorker.reply(#"{"arrivals":[\#(arrivals.map(String.init).joined(separator: ","))]}"#)
            default:
                break
            }
        }
        fleet.fleet.closeAll()
        try await fleet.group.shutdownGracefully()
    }
}
