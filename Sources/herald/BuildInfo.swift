import Foundation
import HeraldKafka

/// What this binary is: `herald --version` prints it and `herald_build_info` exports it as labels,
/// so that a dashboard can tell which nodes run which build during a rollout.
enum BuildInfo {
    /// The release, bumped with each tag (the lead tags `v` + this).
    static let version = "0.1.0"

    /// The commit the binary was built from: SwiftPM has no build-time values, so images pass it as the
    /// `HERALD_BUILD_COMMIT` environment variable (ops/Containerfile sets it from its build argument).
    static var commit: String {
        let value = ProcessInfo.processInfo.environment["HERALD_BUILD_COMMIT"] ?? ""
        let valid = !value.isEmpty && value.utf8.count <= 64 && value.utf8.allSatisfy { $0 >= 0x21 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }
        return valid ? value : "unknown"
    }

    /// The compiler that built this binary, to the minor version.
    static var swiftVersion: String {
        #if compiler(>=7.0)
        return "7+"
        #elseif compiler(>=6.4)
        return "6.4"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #else
        return "6.0"
        #endif
    }

    /// One line per part, as `herald --version` prints it.
    static var text: String {
        "herald \(version) (commit \(commit), Swift \(swiftVersion), librdkafka \(KafkaLibrary.version))"
    }

    /// The `herald_build_info` gauge (always 1), in Prometheus's text format.
    static var metricText: String {
        """
        # HELP herald_build_info Which build this node runs: version, commit, Swift and librdkafka versions (always 1).
        # TYPE herald_build_info gauge
        herald_build_info{version="\(version)",commit="\(commit)",swift_version="\(swiftVersion)",librdkafka_version="\(KafkaLibrary.version)"} 1

        """
    }
}
