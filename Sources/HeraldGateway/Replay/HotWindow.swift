import HeraldCore
import NIOCore
import Synchronization

/// The recent records of every partition, kept as the frames already encoded for live delivery, so
/// that most resumes (a phone that lost signal for a minute, a node restart) are served from memory
/// with no Kafka read and no re-encoding.
///
/// Every node reads every partition, so every node can keep this. The dispatcher appends a batch
/// before any shard delivers it: a connection's position is never past what the window holds. The
/// window is bounded by age and by bytes; per partition it knows the first offset from which it holds
/// everything (`start`), so a resume from before that goes to Kafka instead.
final class HotWindow: Sendable {
    struct Entry: Sendable {
        var offset: Int64
        var frame: ByteBuffer
        var exclude: UInt64?
        var expiresAt: Int64?
    }

    enum Lookup: Equatable {
        /// The stream's records after the cursor, in offset order (possibly none).
        case found([ByteBuffer])
        /// The window no longer (or never) held every record after the cursor.
        case notCovered
        case tooMany
    }

    /// Bookkeeping per entry beyond its frame bytes (entry, index slot, age record), for the byte bound.
    static let entryOverhead = 128

    private struct Aged {
        var partition: Int32
        var stream: HeraldStream
        var addedAt: Int64
        var bytes: Int
    }

    private struct Partition {
        /// Every record of the partition from this offset on is here (or was never a message).
        var start: Int64
        var streams: [HeraldStream: CircularBuffer<Entry>] = [:]
    }

    private struct State {
        var partitions: [Int32: Partition]
        var order = CircularBuffer<Aged>()
        var bytes = 0
    }

    let maxAgeMillis: Int64
    let maxBytes: Int
    private let state: Mutex<State>

    /// `startOffsets`: where the live consumer starts each partition; the window covers from there.
    init(startOffsets: [Int32: Int64], maxAgeMillis: Int64, maxBytes: Int) {
        self.maxAgeMillis = maxAgeMillis
        self.maxBytes = maxBytes
        state = Mutex(State(partitions: startOffsets.mapValues { Partition(start: $0) }))
    }

    func append(_ batch: DeliveryBatch) {
        state.withLock { state in
            for delivery in batch.deliveries {
                guard case .frame(let frame) = delivery.action else { continue }
                // What the frame really holds: NIO rounds a buffer's storage up to a power of two.
                let bytes = frame.capacity + Self.entryOverhead
                let entry = Entry(offset: delivery.offset, frame: frame, exclude: delivery.exclude, expiresAt: delivery.expiresAt)
                state.partitions[delivery.partition, default: Partition(start: delivery.offset)]
                    .streams[delivery.stream, default: CircularBuffer()].append(entry)
                state.order.append(Aged(partition: delivery.partition, stream: delivery.stream, addedAt: batch.now, bytes: bytes))
                state.bytes += bytes
            }
            Self.evict(&state, now: batch.now, maxAgeMillis: maxAgeMillis, maxBytes: maxBytes)
        }
    }

    /// The partition's records before `offset` can no longer all be served from here (the live
    /// consumer skipped some, or the log was cut): a resume from before it goes to Kafka, which says
    /// what it still has.
    func restart(partition: Int32, at offset: Int64) {
        state.withLock { state in
            guard var window = state.partitions[partition] else {
                state.partitions[partition] = Partition(start: offset)
                return
            }
            state.partitions[partition] = nil  // keep the buffers uniquely referenced
            // Cut short (`offset` before the start): what is held was read from a log that no longer
            // exists, so from now on every resume of this partition asks Kafka.
            window.start = offset >= window.start ? offset : .max
            state.partitions[partition] = window
        }
    }

    /// Drops what is older than the age bound even when no records arrive.
    func evict(now: Int64) {
        state.withLock { Self.evict(&$0, now: now, maxAgeMillis: maxAgeMillis, maxBytes: maxBytes) }
    }

    /// The frames of `stream` (in `partition`) with offsets in `(after, through]`, skipping expired
    /// records and those excluding `connection`; `tooMany` past `limit`.
    func frames(of stream: HeraldStream, partition: Int32, after: Int64, through: Int64, limit: Int, now: Int64, connection: UInt64) -> Lookup {
        state.withLock { state in
            guard let window = state.partitions[partition], after + 1 >= window.start else { return .notCovered }
            guard let entries = window.streams[stream] else { return .found([]) }
            var found: [ByteBuffer] = []
            var index = entries.endIndex
            while index > entries.startIndex {
                let previous = entries.index(before: index)
                let entry = entries[previous]
                guard entry.offset > after else { break }
                index = previous
                guard entry.offset <= through, entry.exclude != connection else { continue }
                if let expiresAt = entry.expiresAt, now >= expiresAt { continue }
                found.append(entry.frame)
                if found.count > limit { return .tooMany }
            }
            found.reverse()
            return .found(found)
        }
    }

    var byteCount: Int { state.withLock { $0.bytes } }
    var entryCount: Int { state.withLock { $0.order.count } }

    private static func evict(_ state: inout State, now: Int64, maxAgeMillis: Int64, maxBytes: Int) {
        while let oldest = state.order.first, state.bytes > maxBytes || now - oldest.addedAt > maxAgeMillis {
            state.order.removeFirst()
            state.bytes -= oldest.bytes
            guard var partition = state.partitions[oldest.partition] else { continue }
            state.partitions[oldest.partition] = nil  // keep the buffers uniquely referenced
            if var entries = partition.streams.removeValue(forKey: oldest.stream), let entry = entries.popFirst() {
                partition.start = max(partition.start, entry.offset + 1)
                if !entries.isEmpty { partition.streams[oldest.stream] = entries }
            }
            state.partitions[oldest.partition] = partition
        }
    }
}
