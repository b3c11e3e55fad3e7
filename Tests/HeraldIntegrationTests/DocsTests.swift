import Foundation
import Testing

@Suite("Documentation: every link stays inside the repository or is an absolute URL")
struct DocsTests {
    /// The Markdown a reader of the repository sees: README files and docs/.
    static func documents() throws -> [URL] {
        let root = repositoryRoot()
        var found = ["README.md", "k8s/README.md", "ops/README.md"].map { root.appendingPathComponent($0) }
        let docs = root.appendingPathComponent("docs")
        for name in try FileManager.default.contentsOfDirectory(atPath: docs.path).sorted() where name.hasSuffix(".md") {
            found.append(docs.appendingPathComponent(name))
        }
        return found.filter { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens.
    static func anchors(of markdown: String) -> Set<String> {
        var result = Set<String>()
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) where line.hasPrefix("#") {
            let title = line.drop(while: { $0 == "#" }).trimmingCharacters(in: .whitespaces).lowercased()
            let kept = title.unicodeScalars.filter { CharacterSet.alphanumerics.contains($0) || $0 == " " || $0 == "-" || $0 == "_" }
            result.insert(String(String.UnicodeScalarView(kept)).replacingOccurrences(of: " ", with: "-"))
        }
        return result
    }

    /// Where `target` (a link or a quoted path) in `document` points, or a complaint.
    static func problem(with target: String, in document: URL) -> String? {
        if target.hasPrefix("https://") || target.hasPrefix("http://") || target.hasPrefix("mailto:") { return nil }
        let root = repositoryRoot().standardizedFileURL.path
        let parts = target.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)
        let path = String(parts[0])
        let file = path.isEmpty ? document : document.deletingLastPathComponent().appendingPathComponent(path).standardizedFileURL
        guard file.path.hasPrefix(root + "/") || file.path == root else { return "\(target) leaves the repository" }
        guard FileManager.default.fileExists(atPath: file.path) else { return "\(target) does not exist" }
        if parts.count == 2, file.pathExtension == "md" {
            let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
            if !anchors(of: text).contains(String(parts[1])) { return "\(target): no heading #\(parts[1])" }
        }
        return nil
    }

    @Test("every Markdown link in README.md, docs/, k8s/ and ops/ resolves inside the repository or is an absolute URL")
    func linksResolve() throws {
        var problems: [String] = []
        var checked = 0
        for document in try Self.documents() {
            let text = try String(contentsOf: document, encoding: .utf8)
            for match in text.matches(of: /\]\(([^)\s]+)\)/) {
                checked += 1
                if let problem = Self.problem(with: String(match.1), in: document) {
                    problems.append("\(document.lastPathComponent): \(problem)")
                }
            }
        }
        #expect(problems.isEmpty, "\(problems)")
        #expect(checked > 0)
    }

    @Test("no document names a path outside the repository, such as ../shared/spec/PROTOCOL.md")
    func noPathLeavesTheRepository() throws {
        var problems: [String] = []
        for document in try Self.documents() {
            let text = try String(contentsOf: document, encoding: .utf8)
            // Paths in backquotes: repository paths are relative to the root, `../x` to the document.
            for match in text.matches(of: /`(\.\.\/[^`\s]+)`/) {
                let target = String(match.1)
                // kustomize's `../../base` and the like are paths inside the repository too.
                if let problem = Self.problem(with: target, in: document) {
                    problems.append("\(document.lastPathComponent): \(problem)")
                }
            }
            for match in text.matches(of: /`((?:docs|ops|k8s|clients|scripts|Sources|Tests)\/[A-Za-z0-9_.\/-]+\.(?:md|yaml|yml|json|js|ts|swift|html))`/) {
                let path = repositoryRoot().appendingPathComponent(String(match.1)).path
                if !FileManager.default.fileExists(atPath: path) {
                    problems.append("\(document.lastPathComponent): `\(match.1)` does not exist")
                }
            }
        }
        #expect(problems.isEmpty, "\(problems)")
    }
}
