import Synchronization

/// Outcomes counted by name (`never-read.4008`, `batch.413`, …): what the hostile clients were answered.
final class SoakTally: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func add(_ name: String, _ count: Int = 1) {
        counts.withLock { $0[name, default: 0] += count }
    }

    var snapshot: [String: Int] { counts.withLock { $0 } }
}
