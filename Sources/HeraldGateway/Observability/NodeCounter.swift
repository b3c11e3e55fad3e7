import Metrics
import Synchronization

/// One count the node keeps, read by both surfaces that show it: `GET /v1/node` reads `value`, and
/// `/metrics` exports it through swift-metrics (a no-op without a bootstrap). Counting happens once,
/// here, so the two can never disagree.
final class NodeCounter: Sendable {
    private let count = Atomic<Int>(0)
    private let exported: Counter

    init(_ label: String, _ dimensions: [(String, String)] = []) {
        exported = Counter(label: label, dimensions: dimensions)
    }

    func increment(by amount: Int = 1) {
        guard amount > 0 else { return }
        count.add(amount, ordering: .relaxed)
        exported.increment(by: amount)
    }

    var value: Int { count.load(ordering: .relaxed) }
}

/// A counter with labels whose values are not all known up front (partitions, reasons), created on
/// first use; `prepare` creates a series at zero so alerts see a rise from zero.
final class NodeCounterFamily<Key: Hashable & Sendable>: Sendable {
    private let label: String
    private let dimensions: @Sendable (Key) -> [(String, String)]
    private let counters = Mutex<[Key: NodeCounter]>([:])

    init(_ label: String, dimensions: @escaping @Sendable (Key) -> [(String, String)]) {
        self.label = label
        self.dimensions = dimensions
    }

    func counter(_ key: Key) -> NodeCounter {
        counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = NodeCounter(label, dimensions(key))
            counters[key] = counter
            return counter
        }
    }

    func increment(_ key: Key, by amount: Int = 1) { counter(key).increment(by: amount) }
    func prepare(_ key: Key) { _ = counter(key) }

    var values: [Key: Int] { counters.withLock { $0.mapValues(\.value) } }
    var total: Int { values.values.reduce(0, +) }
}
