public import HeraldCore
public import HeraldKafka
import NIOCore
import Synchronization

/// History (docs/protocol.md §5): the newest messages of one stream before an offset, read from Kafka
/// by the replay reader. Kafka reads only forwards, so this reads backwards in windows: the last
/// `window` offsets before the bound, then a window twice as large before that, and so on, keeping the
/// stream's newest messages until it has enough, reaches the log start, or meets one of its bounds
/// (count, bytes, records looked at); every bound that cut is named in the answer.
public final class StreamHistory: Sendable {
    public struct Bounds: Sendable, Hashable {
        /// Most messages one answer holds.
        public var maxMessages = 1_000
        /// Most bytes of message JSON one answer holds: within a connection's outbound cap, so that
        /// an answer is never what makes its reader a slow consumer.
        public var maxBytes = 512 * 1024
        /// Most records of the partition (every stream in it) one answer looks at.
        public var maxScannedRecords = 100_000
        /// Reads at once on this node, and never more than the reader has handles less one: more are
        /// refused as busy, so that history leaves a handle to resumes.
        public var maxConcurrentReads = 8

        public init() {}
    }

    public enum Failure: Error, Equatable {
        /// As many history reads as the node allows are under way.
        case busy(Int)
        /// Kafka could not be read.
        case unavailable(String)
    }

    private let reader: KafkaReplayReader
    private let partitionCount: Int32
    public let bounds: Bounds
    private let clock: WallClock
    private let inFlight = Atomic<Int>(0)
    private let maxReads: Int
    private let served = NodeCounter("herald_history_reads_total")

    public init(reader: KafkaReplayReader, partitionCount: Int32, bounds: Bounds, clock: WallClock = .system) {
        self.reader = reader
        self.partitionCount = partitionCount
        self.bounds = bounds
        self.clock = clock
        maxReads = max(1, min(bounds.maxConcurrentReads, reader.handleCount - 1))
    }

    /// History answers given by this node.
    public var readCount: Int { served.value }
    /// History reads under way now.
    public var readsInFlight: Int { inFlight.load(ordering: .relaxed) }

    /// The page of `stream` that `query` asks for; `name` is how the messages name the stream (`u` for
    /// a connection's own user, `u:ID` on the internal API). `maxMessages`, a channel namespace's own
    /// count bound, applies when it is below the node's.
    public func page(of stream: HeraldStream, named name: String, query: HistoryQuery, maxMessages: Int? = nil) async -> Result<HistoryPage, Failure> {
        let running = inFlight.wrappingAdd(1, ordering: .relaxed).newValue
        defer { inFlight.subtract(1, ordering: .relaxed) }
        guard running <= maxReads else { return .failure(.busy(maxReads)) }
        do {
            let page = try await read(stream, name: name, query: query, maxMessages: min(bounds.maxMessages, maxMessages ?? .max))
            served.increment()
            return .success(page)
        } catch {
            return .failure(.unavailable(error.message))
        }
    }

    private func read(_ stream: HeraldStream, name: String, query: HistoryQuery, maxMessages: Int) async throws(KafkaError) -> HistoryPage {
        let partition = stream.partition(partitionCount: partitionCount)
        let key = Array(stream.kafkaKey.utf8)
        let wanted = min(query.limit, maxMessages)
        var (low, high) = try await reader.watermarks(partition: partition)
        let end = min(query.before ?? high, high)
        // Newest first while collecting.
        var kept: [HistoryPage.Message] = []
        var bytes = 0
        var cut: HistoryPage.Cut? = nil
        var upper = end
        var window = Int64(max(2 * wanted, 64))
        var scanned = 0
        var overtaken = 0
        let allocator = ByteBufferAllocator()

        collecting: while upper > low, kept.count < wanted {
            guard scanned < bounds.maxScannedRecords else {
                cut = .scan
                break
            }
            let from = max(low, upper - min(window, Int64(bounds.maxScannedRecords - scanned)))
            let read: KafkaKeyedReplay
            do {
                read = try await reader.read(partition: partition, from: from, until: upper, keys: [key], retainPerKey: wanted - kept.count)
            } catch where error.code == .offsetExpired && overtaken < 3 {
                // Retention moved the log start past `from` meanwhile: read on from the new start.
                overtaken += 1
                (low, high) = try await reader.watermarks(partition: partition)
                continue
            }
            scanned += Int(upper - from)
            let records = read.records[key] ?? []
            let now = clock.nowMillis()
            for record in records.reversed() {
                guard let message = Self.message(record, of: stream, named: name, now: now, allocator: allocator) else { continue }
                if bytes + message.json.readableBytes > bounds.maxBytes {
                    cut = .bytes
                    // The next page starts with this message; one that could never fit by itself is
                    // stepped over, or paging would ask for it forever.
                    upper = kept.isEmpty ? message.offset : message.offset + 1
                    break collecting
                }
                bytes += message.json.readableBytes
                kept.append(message)
                if kept.count == wanted { break collecting }
            }
            if read.dropped[key] != nil, let oldest = records.first {
                // The read kept only the newest of its window, some of which were not messages (control
                // records, expired): the rest of the window is read again below the oldest kept.
                upper = oldest.offset
            } else {
                upper = from
                window = min(window * 2, Int64(bounds.maxScannedRecords))
            }
        }
        if kept.count == wanted, wanted < query.limit, cut == nil { cut = .count }
        let oldestKept = kept.last?.offset
        let next: Int64?
        switch cut {
        case .bytes, .scan: next = upper > low ? upper : nil
        case .count, nil: next = kept.count == wanted ? oldestKept.flatMap { $0 > low ? $0 : nil } : nil
        }
        let limit: Int? = switch cut {
        case .count: maxMessages
        case .bytes: bounds.maxBytes
        case .scan: bounds.maxScannedRecords
        case nil: nil
        }
        return HistoryPage(
            stream: name, partition: partition, messages: kept.reversed(), earliest: low, end: end, next: next,
            cut: cut, limit: limit, expired: next == nil && low > 0
        )
    }

    /// A record as a history message: nil for a control record, one of another stream that shares the
    /// key, an expired one, or one that is not a Herald record.
    private static func message(
        _ record: KafkaRecord, of stream: HeraldStream, named name: String, now: Int64, allocator: ByteBufferAllocator
    ) -> HistoryPage.Message? {
        guard let envelope = try? record.heraldEnvelope(), envelope.stream == stream, envelope.control == nil,
              !envelope.isExpired(atUnixMillis: now)
        else { return nil }
        var json = allocator.buffer(capacity: 64 + name.utf8.count + (envelope.user?.utf8.count ?? 0) + record.value.readableBytes)
        ServerMessage.writeMessage(
            into: &json, stream: name, offset: record.offset, id: envelope.id, user: envelope.user, payload: record.value,
            contentType: envelope.contentType
        )
        return HistoryPage.Message(offset: record.offset, json: json)
    }
}
