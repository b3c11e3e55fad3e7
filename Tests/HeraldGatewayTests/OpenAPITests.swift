import Foundation
import Testing

/// `docs/openapi.yaml` is kept true two ways: every route the control plane serves is in the
/// document (and nothing else is), and schemathesis (PyPI; `scripts/install-deps --test` installs it)
/// generates requests from the document against a live node and checks every response against it.
@Suite("docs/openapi.yaml describes the live API")
struct OpenAPITests {
    static var document: URL {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("docs/openapi.yaml")
    }

    /// `METHOD /path` for every operation the document lists.
    static func documentedOperations() throws -> Set<String> {
        let text = try String(contentsOf: document, encoding: .utf8)
        var documented: Set<String> = []
        var path: String? = nil
        var inPaths = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "paths:" { inPaths = true; continue }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if let path, let method = ["get", "post", "put", "patch", "delete"].first(where: { line == "    \($0):" }) {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        return documented
    }

    @Test("every documented operation is served, and every other method on those paths is 405")
    func pathsMatchRoutes() async throws {
        let documented = try Self.documentedOperations()
        #expect(documented.count == 8)
        try await GatewayHarness.run { node in
            let paths = Set(documented.map { String($0.split(separator: " ")[1]) })
            for path in paths {
                let concrete = path.replacingOccurrences(of: "{id}", with: "someone")
                for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                    let response = try await api(node.apiPort, method, concrete, body: method == "POST" ? "{}" : nil)
                    if path == "/metrics", method == "GET", response.status == 404 {
                        // The in-process harness runs without a metrics registry: the documented 404.
                        #expect(response.body.contains("metrics are off"), "\(response.body)")
                    } else if documented.contains("\(method) \(path)") {
                        #expect(![404, 405].contains(response.status), "\(method) \(path) is documented but answered \(response.status)")
                    } else {
                        #expect(response.status == 405 && response.headers["allow"] != nil, "\(method) \(path) is not documented but answered \(response.status)")
                    }
                }
            }
        }
    }

    @Test("schemathesis finds no 5xx and no response that disagrees with the document")
    func schemathesis() async throws {
        let python = try pythonWith(module: "schemathesis")
        let processes = try await NodeProcesses.start()
        defer { processes.stop() }
        let apiPort = try await processes.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#)

        let (status, output) = try runPython(python, [
            "-c", "import sys; sys.argv[0] = 'schemathesis'; from schemathesis.cli import schemathesis; schemathesis()",
            "run", Self.document.path, "--url", "http://127.0.0.1:\(apiPort)", "-H", "Authorization: Bearer \(testAPIKey)",
            "--checks", "all", "--max-examples", "60", "--generation-deterministic", "--no-color",
        ])
        #expect(status == 0, "schemathesis failed:\n\(output.suffix(6_000))")
        #expect(output.contains("passed"), "\(output.suffix(2_000))")
    }
}
