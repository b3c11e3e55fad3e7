import ArgumentParser
import Foundation
import NIOPosix

/// Opens N idle connections to a node and reports the connect rate and the node's resident memory
/// per connection (its RSS growth divided by N).
struct ConnectionsBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connections",
        abstract: "Open N idle connections; report connect rate and the node's RSS per connection."
    )

    @OptionGroup var fleetOptions: FleetOptions
    @Option(help: "Seconds to hold the connections before measuring.") var settle = 5

    func run() async throws {
        let secret = try fleetOptions.secret
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let fleet = ConnectionFleet()
        let before = fleetOptions.nodePid.flatMap(residentBytes(pid:))
        let elapsed = try await fleet.open(
            count: fleetOptions.connections, host: fleetOptions.host, port: fleetOptions.port, secret: secret,
            sourceAddresses: fleetOptions.sourceAddresses, concurrency: fleetOptions.concurrency, group: group,
            progress: { done in if !fleetOptionsJSON { progressLine("connected \(done)") } }
        )
        try await Task.sleep(for: .seconds(settle))
        let after = fleetOptions.nodePid.flatMap(residentBytes(pid:))
        let open = fleet.count - fleet.closedCount
        let rate = Double(fleet.count) / elapsed.seconds
        let perConnection = before.flatMap { b in after.map { a in Double(a - b) / Double(max(open, 1)) } }
        if fleetOptions.json {
            let rss = perConnection.map { String(Int($0)) } ?? "null"
            print(#"{"bench":"connections","connections":\#(fleetOptions.connections),"open":\#(open),"connect_per_second":\#(Int(rate)),"node_rss_before":\#(before ?? 0),"node_rss_after":\#(after ?? 0),"node_rss_bytes_per_connection":\#(rss)}"#)
        } else {
            FileHandle.standardError.write(Data("\n".utf8))
            print("connections requested \(fleetOptions.connections), open after \(settle) s: \(open)")
            print(String(format: "connect rate             %8.0f /s", rate))
            if let before, let after, let perConnection {
                print(String(format: "node RSS                 %8.1f MB -> %.1f MB", Double(before) / 1e6, Double(after) / 1e6))
                print(String(format: "node RSS per connection  %8.0f bytes", perConnection))
            }
        }
        fleet.closeAll()
        try await group.shutdownGracefully()
    }

    private var fleetOptionsJSON: Bool { fleetOptions.json }
}
