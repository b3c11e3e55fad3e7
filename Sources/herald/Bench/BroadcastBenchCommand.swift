import ArgumentParser
import Foundation
import HeraldCore
import HeraldKafka
import Logging
import NIOCore
import NIOPosix

/// N connections, K rounds of one broadcast to all of them: per round the time from the push to the
/// last delivery, percentiles across connections, deliveries per second, and missing deliveries.
struct BroadcastBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broadcast",
        abstract: "N connections, K rounds of one broadcast to all; time to the last delivery and deliveries per second."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Option(help: "Kafka bootstrap servers of the node's cluster (the broadcast is produced there).") var kafkaBrokers: String
    @Option(help: "The events topic.") var eventsTopic = "herald.events"
    @Option(help: "Rounds.") var rounds = 3
    @Option(help: "Payload bytes of the broadcast message.") var payloadBytes = 100

    func run() async throws {
        let secret = try fleetOptions.secret
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let fleet = ConnectionFleet()
        let json = fleetOptions.json
        _ = try await fleet.open(
            count: fleetOptions.connections, host: fleetOptions.host, port: fleetOptions.port, secret: secret,
            sourceAddresses: fleetOptions.sourceAddresses, concurrency: fleetOptions.concurrency, group: group,
            ports: fleetOptions.portList, rate: fleetOptions.rate,
            progress: { done in if !json { progressLine("connected \(done)") } }
        )
        if !json { FileHandle.standardError.write(Data("\n".utf8)) }
        try await Task.sleep(for: .seconds(2))
        var logger = Logger(label: "herald.bench")
        logger.logLevel = .error
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: kafkaBrokers, clientID: "herald-bench")),
            logger: logger
        )
        let expected = fleet.count
        let payload = "\"" + String(repeating: "b", count: max(0, payloadBytes - 2)) + "\""
        var results: [(last: Double, p50: Double, p99: Double, rate: Double, missing: Int)] = []
        for round in 1...rounds {
            fleet.resetArrivals()
            let record = HeraldRecord(stream: .broadcast, id: "bench-\(round)")
            let start = ContinuousClock.now
            _ = try await producer.send(KafkaOutgoingRecord(
                topic: eventsTopic, key: Array(record.key.utf8), value: ByteBuffer(string: payload),
                headers: record.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
            ))
            let arrivals = try await fleet.waitForArrivals(expected, limit: .seconds(60))
            let latencies = arrivals.map { ($0 - start).seconds * 1_000 }.sorted()
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
            print(#"{"bench":"broadcast","connections":\#(expected),"rounds":\#(rounds),"payload_bytes":\#(payloadBytes),"median_last_ms":\#(Int(last)),"median_p99_ms":\#(Int(p99)),"median_deliveries_per_second":\#(Int(rate)),"missing":\#(missing)}"#)
        } else {
            print(String(format: "median of %d rounds to %d connections: last delivery %.0f ms, p99 %.0f ms, %.0f deliveries/s, missing %d",
                         rounds, expected, last, p99, rate, missing))
        }
        fleet.closeAll()
        try await group.shutdownGracefully()
    }
}
