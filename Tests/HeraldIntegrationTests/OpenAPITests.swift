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
        #expect(documented.count == 10)
        try await GatewayHarness.run { node in
            let paths = Set(documented.map { String($0.split(separator: " ")[1]) })
            for path in paths {
                let concrete = path.replacingOccurrences(of: "{id}", with: "someone").replacingOccurrences(of: "{stream}", with: "c:news")
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

    @Test("every operation has a unique operationId and a declared tag, and the push operations show an answer")
    func operationNamesAndExamples() throws {
        let python = try pythonWith(module: "yaml")
        let script = #"""
        import sys, yaml
        doc = yaml.safe_load(open(sys.argv[1]))
        declared = {t["name"] for t in doc.get("tags", [])}
        seen = set()
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if method == "parameters":
                    continue
                oid = op.get("operationId")
                assert oid and oid not in seen, f"{method} {path}: operationId {oid!r} missing or repeated"
                assert oid[0].islower() and oid.isalnum(), f"{oid}: lowerCamelCase, for generated clients"
                seen.add(oid)
                assert op.get("tags") and set(op["tags"]) <= declared, f"{method} {path}: tags {op.get('tags')} not declared"
        for path in ("/v1/push", "/v1/push/batch"):
            accepted = doc["paths"][path]["post"]["responses"]["202"]["content"]["application/json"]
            assert "example" in accepted, f"{path}: no 202 example"
        print(f"{len(seen)} operations named")
        """#
        let (status, output) = try runPython(python, ["-c", script, Self.document.path])
        #expect(status == 0 && output.contains("10 operations named"), "\(output)")
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
