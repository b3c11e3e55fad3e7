import Synchronization

/// Outcomes counted by name (`never-read.4008`, `batch.413`, …): what the hostile clients were answered.
final class SoakTally: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func add(_ name: String, _ count: Int = 1) {
        counts.withLock { $0[name, default: 0] += count }
    }

    var snapshot: [String: Int] { counts.withLock { $0 } }

    /// The outcomes of one actor (`prefix.`), without the prefix: `["4008": 3, "none": 1]`.
    func outcomes(_ prefix: String) -> [String: Int] {
        var result: [String: Int] = [:]
        for (name, count) in snapshot where name.hasPrefix(prefix + ".") {
            result[String(name.dropFirst(prefix.count + 1))] = count
        }
        return result
    }
}
