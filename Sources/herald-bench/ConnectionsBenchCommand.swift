import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

/// Opens N idle connections to one or several nodes, at a set rate, from several client processes
/// when N is more than one process may hold (the open-file limit), and reports the connect rate,
/// failures, and each node's resident memory per connection from its own `/metrics`.
struct ConnectionsBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connections",
        abstract: "Open N idle connections (over nodes and client processes); report connect rate and the nodes' RSS per connection."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Option(help: "Seconds to hold the connections before measuring.") var settle = 5
    @Option(help: "Client processes to open the connections from (each holds N / processes).") var processes = 1
    @Option(help: "The nodes' API ports, comma-separated, to read RSS and connections from their /metrics.") var metricsPorts: String?
    @Option(help: .hidden) var userOffset = 0
    @Flag(help: .hidden) var worker = false

    func run() async throws {
        if processes > 1 && !worker { return try await runCoordinator() }
        let secret = try fleetOptions.secret
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let fleet = ConnectionFleet()
        let json = fleetOptions.json
        let before = await nodeMemory()
        let offset = userOffset
        let elapsed = try await fleet.open(
            count: fleetOptions.connections, host: fleetOptions.host, port: fleetOptions.port, secret: secret,
            sourceAddresses: fleetOptions.sourceAddresses, concurrency: fleetOptions.concurrency, group: group,
            ports: fleetOptions.portList, rate: fleetOptions.rate, user: { "bench-\($0 + offset)" },
            progress: { done in if !json { progressLine("connected \(done)") } }
        )
        let rate = Double(fleet.count) / elapsed.seconds
        if worker {
            // Report, then hold the connections until the coordinator closes our standard input.
            // Unbuffered: the coordinator waits for this line.
            BenchWorker.reply(#"{"worker":"opened","connections":\#(fleet.count),"connect_per_second":\#(Int(rate))}"#)
            while let _ = readLine() {}
            fleet.closeAll()
            try await group.shutdownGracefully()
            return
        }
        try await Task.sleep(for: .seconds(settle))
        let after = await nodeMemory()
        report(open: fleet.count - fleet.closedCount, rate: rate, before: before, after: after)
        fleet.closeAll()
        try await group.shutdownGracefully()
    }

    /// Starts `processes` workers (this executable again), each opening its share, and measures once
    /// all of them hold their connections.
    private func runCoordinator() async throws {
        let before = await nodeMemory()
        let start = ContinuousClock.now
        let workers = try BenchWorker.spawn(count: processes, total: fleetOptions.connections) { count, offset in
            fleetOptions.workerArguments("connections", count: count, offset: offset, processes: processes)
        }
        var open = 0
        for worker in workers {
            // Each worker writes one line once its connections are open.
            open += (try worker.readObject()["connections"] as? Int) ?? 0
            if !fleetOptions.json { progressLine("workers ready, \(open) connections") }
        }
        let rate = Double(open) / (ContinuousClock.now - start).seconds
        try await Task.sleep(for: .seconds(settle))
        let after = await nodeMemory()
        report(open: open, rate: rate, before: before, after: after)
        workers.forEach { $0.finish() }
    }

    private func report(open: Int, rate: Double, before: [NodeMemory], after: [NodeMemory]) {
        let failures = fleetOptions.connections - open
        let nodes = zip(before, after).map { b, a in
            (port: a.port, connections: a.connections, perConnection: Double(a.rss - b.rss) / Double(max(a.connections - b.connections, 1)), rss: a.rss)
        }
        // Without --metrics-ports, the node's RSS from /proc (one node on this machine).
        let local = fleetOptions.nodePid.flatMap(residentBytes(pid:))
        if fleetOptions.json {
            let perNode = nodes.map { #"{"api_port":\#($0.port),"connections":\#($0.connections),"rss_bytes":\#($0.rss),"rss_bytes_per_connection":\#(Int($0.perConnection))}"# }
            print(#"{"bench":"connections","requested":\#(fleetOptions.connections),"open":\#(open),"failures":\#(failures),"processes":\#(processes),"connect_per_second":\#(Int(rate)),"nodes":[\#(perNode.joined(separator: ","))],"node_rss_bytes":\#(local ?? 0)}"#)
        } else {
            FileHandle.standardError.write(Data("\n".utf8))
            print("connections requested \(fleetOptions.connections) from \(processes) process(es), open after \(settle) s: \(open), failed \(failures)")
            print(String(format: "connect rate             %8.0f /s", rate))
            for node in nodes {
                print(String(format: "node :%d  %6d connections, RSS %.1f MB, %.0f bytes per connection", node.port, node.connections, Double(node.rss) / 1e6, node.perConnection))
            }
            if nodes.isEmpty, let local { print(String(format: "node RSS                 %8.1f MB", Double(local) / 1e6)) }
        }
    }

    struct NodeMemory {
        var port: Int
        var rss: Int
        var connections: Int
    }

    /// Each node's resident memory and connection count, from its own /metrics.
    private func nodeMemory() async -> [NodeMemory] {
        let ports = (metricsPorts ?? "").split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !ports.isEmpty else { return [] }
        let group = MultiThreadedEventLoopGroup.singleton
        var result: [NodeMemory] = []
        for port in ports {
            guard let connection = try? await HTTPLoadConnection.connect(host: fleetOptions.host, port: port, group: group),
                  let (status, body) = try? await connection.send(ByteBuffer(string: "GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n")),
                  status == 200 else { continue }
            connection.close()
            func value(_ name: String) -> Double {
                for line in body.split(separator: "\n") where line.hasPrefix(name + " ") {
                    return Double(line.split(separator: " ").last ?? "") ?? 0
                }
                return 0
            }
            result.append(NodeMemory(port: port, rss: Int(value("process_resident_memory_bytes")), connections: Int(value("herald_connections"))))
        }
        return result
    }
}
