import Foundation
import Testing

/// No container engine runs here, so the image is checked by what it is made of: the runtime stage of
/// `ops/Containerfile` must install every shared library the binary loads outside the Swift runtime
/// (which `--static-swift-stdlib` links in), counting what those packages depend on and what the base
/// image (bookworm-slim: apt, dpkg, coreutils, bash and their dependencies) already has.
@Suite("The container image's runtime stage has every library the binary needs")
struct ContainerfileTests {
    /// The packages the runtime stage (the last FROM) installs with apt-get.
    static func runtimePackages() throws -> [String] {
        let text = try String(contentsOf: repositoryRoot().appendingPathComponent("ops/Containerfile"), encoding: .utf8)
        let runtime = try #require(text.components(separatedBy: "\nFROM ").last)
        let joined = runtime.replacingOccurrences(of: "\\\n", with: " ")
        var packages: [String] = []
        for line in joined.split(separator: "\n") where line.hasPrefix("RUN ") {
            for command in line.components(separatedBy: "&&") where command.contains("apt-get install") {
                packages += command.split(separator: " ").map(String.init).filter { !$0.hasPrefix("-") && !["apt-get", "install", "RUN"].contains($0) && !$0.isEmpty }
            }
        }
        return packages
    }

    @Test("ldd of herald: every library outside the Swift runtime comes from the runtime stage's packages, their dependencies or the base image")
    func runtimeLibrariesPresent() throws {
        guard let ldd = which("ldd"), let dpkg = which("dpkg"), let aptCache = which("apt-cache") else {
            throw TestFailure("ldd, dpkg and apt-cache are needed (Debian's libc-bin, dpkg and apt)")
        }
        let packages = try Self.runtimePackages()
        #expect(packages.contains("librdkafka1"), "\(packages)")
        let (lddStatus, lddOutput) = try run(ldd, [try heraldExecutable().path])
        #expect(lddStatus == 0, "\(lddOutput)")
        #expect(!lddOutput.contains("not found"), "\(lddOutput)")
        // libX.so => /path (0x…): the Swift runtime's own libraries are linked statically in the image.
        let swiftRuntime = URL(fileURLWithPath: try #require(which("swift"))).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().path
        var libraries: [String] = []
        for match in lddOutput.matches(of: /\S+ => (\/\S+) \(/) {
            let path = URL(fileURLWithPath: String(match.1)).resolvingSymlinksInPath().path
            if !path.hasPrefix(swiftRuntime) { libraries.append(path) }
        }
        #expect(libraries.contains { $0.contains("librdkafka") })
        // `herald push` speaks HTTP over NIO: no FoundationNetworking, so no libcurl (and no libcurl4 in the image).
        #expect(!libraries.contains { $0.contains("libcurl") }, "herald links libcurl (FoundationNetworking?): \(libraries)")
        #expect(!packages.contains("libcurl4"), "\(packages)")

        let dependencyArguments = ["depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
                                   "--no-replaces", "--no-enhances"]
        func closure(_ roots: [String]) throws -> Set<String> {
            let (status, output) = try run(aptCache, dependencyArguments + roots)
            guard status == 0 else { throw TestFailure("apt-cache depends failed: \(output.prefix(500))") }
            return Set(output.split(separator: "\n").filter { !$0.hasPrefix(" ") && !$0.hasPrefix("<") }.map {
                String($0.split(separator: ":").first ?? $0)
            })
        }
        let base = try closure(["apt", "dpkg", "coreutils", "bash", "base-files", "libc-bin"])
        let image = try closure(packages).union(base)
        // Debian 12 has a merged /usr, but dpkg knows many libraries by their /lib path.
        func owner(_ library: String) throws -> String? {
            let spellings = [library, library.hasPrefix("/usr/lib/") ? String(library.dropFirst(4)) : "/usr" + library]
            for path in spellings {
                let (status, output) = try run(dpkg, ["-S", path])
                if status == 0, let package = output.split(separator: ":").first { return String(package) }
            }
            return nil
        }
        for library in libraries {
            let found = try owner(library)
            #expect(found != nil, "\(library) belongs to no Debian package")
            let package = found ?? ""
            let installed = image.contains(package)
            #expect(installed, "\(library) is in \(package), which the runtime stage does not install (it has \(packages))")
        }
    }
}
