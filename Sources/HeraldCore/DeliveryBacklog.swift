import Synchronization

/// The pushes this node's API had acknowledged that this node has not yet handed to its sockets: how
/// old the oldest is. Kafka would absorb any gap between what the API accepts and what the fan-out
/// delivers, but only as lag nobody sees; with a bound on this age the API answers 503 with
/// Retry-After instead, so a caller slows down before deliveries fall seconds behind.
///
/// Acknowledgements are appended in the order they arrive, with their time; a partition's entries
/// leave once the dispatcher has passed their offsets. The front entry of a partition is therefore
/// the oldest undelivered one there (a delivered entry behind it is younger and leaves with it).
public final class DeliveryBacklog: Sendable {
    private struct Entry {
        var offset: Int64
        var acknowledgedAt: Int64
    }

    private struct Partition {
        var entries: [Entry] = []
        var head = 0
        var delivered: Int64 = 0

        var oldest: Int64? { head < entries.count ? entries[head].acknowledgedAt : nil }

        mutating func pass(_ next: Int64) {
            delivered = max(delivered, next)
            while head < entries.count, entries[head].offset < delivered { head += 1 }
            if head == entries.count {
                entries.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 1_024, head * 2 > entries.count {
                entries.removeFirst(head)
                head = 0
            }
        }
    }

    /// Undelivered acknowledgements older than this refuse new pushes; 0 turns the bound off.
    public let maxAgeMillis: Int64
    private let partitions = Mutex<[Int32: Partition]>([:])

    public init(maxAgeMillis: Int64) {
        self.maxAgeMillis = maxAgeMillis
    }

    /// Records Kafka's acknowledgements of pushes (partition and offset each) at `now` (Unix ms).
    /// An offset the dispatcher already passed (it delivered before the API heard back) is not kept.
    public func acknowledged(_ records: [(partition: Int32, offset: Int64)], now: Int64) {
        guard maxAgeMillis > 0, !records.isEmpty else { return }
        partitions.withLock { partitions in
            for record in records {
                var partition = partitions[record.partition] ?? Partition()
                if record.offset >= partition.delivered {
                    partition.entries.append(Entry(offset: record.offset, acknowledgedAt: now))
                }
                partitions[record.partition] = partition
            }
        }
    }

    /// The dispatcher handed every offset before `next` of each partition to the shards.
    public func delivered(through nextOffsets: [Int32: Int64]) {
        guard maxAgeMillis > 0, !nextOffsets.isEmpty else { return }
        partitions.withLock { partitions in
            for (partition, next) in nextOffsets { partitions[partition, default: Partition()].pass(next) }
        }
    }

    /// How long the oldest acknowledged push has waited for this node's fan-out, in ms (0 when none waits).
    public func oldestAgeMillis(now: Int64) -> Int64 {
        let oldest = partitions.withLock { partitions in partitions.values.compactMap(\.oldest).min() }
        return oldest.map { max(0, now - $0) } ?? 0
    }

    /// Whether a new push should be refused now: the oldest acknowledged push has waited past the bound.
    public func isBehind(now: Int64) -> Bool {
        maxAgeMillis > 0 && oldestAgeMillis(now: now) > maxAgeMillis
    }

    /// Acknowledged pushes not yet delivered, across partitions.
    public var waitingCount: Int {
        partitions.withLock { partitions in partitions.values.reduce(0) { $0 + $1.entries.count - $1.head } }
    }
}
