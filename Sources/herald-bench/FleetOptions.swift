import ArgumentParser
import Foundation

/// Where the node under test is and how to reach it with many connections.
struct FleetOptions: ParsableArguments {
    @Option(help: "The node's WebSocket host.") var host = "127.0.0.1"
    @Option(help: "The node's WebSocket port.") var port = 8080
    @Option(help: "Several nodes' WebSocket ports, comma-separated: connections are spread over them (overrides --port).")
    var ports: String?
    @Option(help: "Handshakes started per second at most (0: as fast as --concurrency allows).") var rate: Double = 0
    @Option(help: "Connections to open.") var connections = 10_000
    @Option(help: "The node's HS256 token secret. Env: HERALD_JWT_SECRET.") var jwtSecret: String?
    @Option(help: "Loopback source addresses to spread connections over (127.0.0.2…).") var sourceAddresses = 16
    @Option(help: "Handshakes in flight at once.") var concurrency = 256
    @Option(help: "The node's process id, to read its resident memory from /proc.") var nodePid: Int32?
    @Flag(help: "One JSON line instead of a table.") var json = false

    /// The arguments of a worker process that opens `count` of the connections (users from `offset`)
    /// for `command` (`connections`, `broadcast`), with this run's targets, spread and rate share.
    func workerArguments(_ command: String, count: Int, offset: Int, processes: Int) -> [String] {
        var arguments = [command, "--worker", "--json", "--connections", String(count), "--user-offset", String(offset),
                         "--host", host, "--port", String(port), "--concurrency", String(concurrency),
                         "--source-addresses", String(sourceAddresses), "--rate", String(rate / Double(processes))]
        if let ports { arguments += ["--ports", ports] }
        if let jwtSecret { arguments += ["--jwt-secret", jwtSecret] }
        return arguments
    }

    var portList: [Int] {
        (ports ?? "").split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    var secret: String {
        get throws {
            guard let secret = jwtSecret ?? ProcessInfo.processInfo.environment["HERALD_JWT_SECRET"] else {
                throw ValidationError("--jwt-secret or HERALD_JWT_SECRET is required to mint the connections' tokens")
            }
            return secret
        }
    }
}

func progressLine(_ text: String) {
    FileHandle.standardError.write(Data("\r\(text)".utf8))
}
