public import HeraldCore
import HeraldKafka
import NIOCore
import Synchronization

/// One stream of a resume: replay the records after `after` up to `through` (the position the
/// connection's shard had reached when it registered the stream; later records arrive live).
struct StreamReplay: Sendable {
    var stream: HeraldStream
    var partition: Int32
    var after: Int64
    var through: Int64
}

/// What a resume came to.
enum ReplayOutcome: Sendable {
    /// Per requested stream, in request order, the frames to send before anything live.
    case recovered([[ByteBuffer]])
    case failed(RecoveryFailure)
    /// Kafka could not be read; the connection is closed with 1013 so the client retries with its cursor.
    case unavailable(String)
    /// The resume's task was cancelled (its connection closed, or its deadline passed): nobody waits.
    case cancelled
}

/// Replays what a reconnecting device missed: from the node's hot window when it still holds every
/// record after the cursor, else from Kafka through shared reads. All streams recover or none does:
/// the contract has no partial replay.
final class ReplayService: Sendable {
    let window: HotWindow
    let limit: Int
    /// Most bytes of frames one resume replays: a replay is also bounded in what it makes the
    /// connection queue.
    let maxBytes: Int
    let stats: ReplayStats
    /// Message ids the live path saw per stream: a replay drops the copies it dropped.
    let repeats: RepeatedMessages
    private let kafka: SharedKafkaReads?

    init(
        window: HotWindow, reader: KafkaReplayReader?, limit: Int, maxBytes: Int, stats: ReplayStats, clock: WallClock = .system,
        repeats: RepeatedMessages = RepeatedMessages()
    ) {
        self.window = window
        self.repeats = repeats
        self.limit = limit
        self.maxBytes = maxBytes
        self.stats = stats
        self.kafka = reader.map {
            SharedKafkaReads(
                reader: $0, limit: limit,
                onRead: { requests in
                    stats.kafkaReads.increment()
                    stats.kafkaRequests.increment(by: requests)
                },
                onScanned: { stats.scanned.increment(by: $0) },
                onCancelledRead: { stats.cancelledReads.increment() },
                clock: clock
            )
        }
    }

    func replay(_ requests: [StreamReplay], connection: UInt64, now: Int64) async -> ReplayOutcome {
        stats.inFlight.add(1, ordering: .relaxed)
        defer { stats.inFlight.subtract(1, ordering: .relaxed) }
        let (outcome, readKafka) = await resolve(requests, connection: connection, now: now)
        stats.count(outcome, readKafka: readKafka)
        return outcome
    }

    /// A resume refused before any replay (malformed cursor, another epoch).
    func notRecovered(_ reason: RecoveryFailure) {
        stats.count(reason)
    }

    /// The outcome, and whether Kafka was read for it.
    private func resolve(_ requests: [StreamReplay], connection: UInt64, now: Int64) async -> (ReplayOutcome, Bool) {
        var frames = [[ByteBuffer]](repeating: [], count: requests.count)
        var fromKafka: [Int] = []
        var total = 0
        for (index, request) in requests.enumerated() {
            if request.after >= request.through {
                // The client is at or past this node's position (it was on a node further ahead). It is
                // only wrong if it is past the end of the log itself.
                guard request.after > request.through else { continue }
                guard let kafka else { return (.failed(.ahead), false) }
                switch await kafka.end(of: request.partition) {
                case .success(let end) where request.after >= end: return (.failed(.ahead), false)
                case .success: continue
                case .failure(let failure): return (Self.outcome(failure), false)
                }
            }
            switch window.frames(
                of: request.stream, partition: request.partition, after: request.after, through: request.through,
                limit: limit, now: now, connection: connection
            ) {
            case .found(let found):
                frames[index] = found
                total += found.count
            case .tooMany:
                return (.failed(.tooMany), false)
            case .notCovered:
                fromKafka.append(index)
            }
        }
        if total > limit || Self.bytes(frames) > maxBytes { return (.failed(.tooMany), false) }
        guard !fromKafka.isEmpty else { return (.recovered(frames), false) }
        guard let kafka else { return (.failed(.expired), false) }
        let results = await withTaskGroup(of: (Int, Result<[Delivery], SharedKafkaReads.Failure>).self) { group in
            for index in fromKafka {
                let request = requests[index]
                group.addTask {
                    let key = Array(request.stream.kafkaKey.utf8)
                    return (index, await kafka.records(partition: request.partition, key: key, after: request.after, through: request.through))
                }
            }
            return await group.reduce(into: [(Int, Result<[Delivery], SharedKafkaReads.Failure>)]()) { $0.append($1) }
        }
        for (index, result) in results {
            switch result {
            case .failure(let failure):
                return (Self.outcome(failure), false)
            case .success(let deliveries):
                let stream = requests[index].stream
                var ids: Set<String> = []
                for delivery in deliveries {
                    // Same key, but maybe another kind of stream (a user and a channel may share a name);
                    // control records are not messages. The frame is the one the shared read encoded.
                    guard delivery.stream == stream, case .frame(let frame) = delivery.action else { continue }
                    // A retried copy of a message (a push through another node, a sync publish): dropped
                    // as the live path dropped it, or as a repeat within this replay when this node
                    // never saw the original.
                    if let id = delivery.messageID {
                        guard ids.insert(id).inserted, !repeats.isKnownRepeat(stream, id: id, offset: delivery.offset) else { continue }
                    }
                    guard delivery.exclude != connection else { continue }
                    frames[index].append(frame)
                }
                total += frames[index].count
            }
        }
        if total > limit || Self.bytes(frames) > maxBytes { return (.failed(.tooMany), true) }
        return (.recovered(frames), true)
    }

    private static func bytes(_ frames: [[ByteBuffer]]) -> Int {
        frames.reduce(0) { sum, stream in stream.reduce(sum) { $0 + $1.readableBytes } }
    }

    private static func outcome(_ failure: SharedKafkaReads.Failure) -> ReplayOutcome {
        switch failure {
        case .recovery(let reason): .failed(reason)
        case .unavailable(let message): .unavailable(message)
        case .cancelled: .cancelled
        }
    }
}

/// How resumes went on this node: the counts behind `GET /v1/node`'s `resumes` and the
/// `herald_resumes_total` family alike.
public final class ReplayStats: Sendable {
    struct Outcome: Hashable, Sendable {
        var result: String
        var reason: String
        var source: String
    }

    let inFlight = Atomic<Int>(0)
    private let resumes = NodeCounterFamily<Outcome>("herald_resumes_total") {
        [("result", $0.result), ("reason", $0.reason), ("source", $0.source)]
    }
    let kafkaReads = NodeCounter("herald_replay_kafka_reads_total")
    let kafkaRequests = NodeCounter("herald_replay_kafka_requests_total")
    /// Records replay reads took from Kafka (every key of the partition, not only the requested ones),
    /// and reads stopped because no connection waited for them any more.
    let scanned = NodeCounter("herald_replay_records_scanned_total")
    let cancelledReads = NodeCounter("herald_replay_reads_cancelled_total")
    let replayedMessages = NodeCounter("herald_replayed_messages_total")

    private static let fromWindow = Outcome(result: "recovered", reason: "none", source: "window")
    private static let fromKafka = Outcome(result: "recovered", reason: "none", source: "kafka")
    private static let unavailable = Outcome(result: "unavailable", reason: "kafka", source: "none")
    private static func failed(_ reason: RecoveryFailure) -> Outcome { Outcome(result: "not_recovered", reason: reason.rawValue, source: "none") }

    public init() {
        // The series exist from the start, so dashboards and alerts see zeros rather than nothing.
        for outcome in [Self.fromWindow, Self.fromKafka, Self.unavailable] + RecoveryFailure.allCases.map(Self.failed) {
            resumes.prepare(outcome)
        }
    }

    func count(_ outcome: ReplayOutcome, readKafka: Bool) {
        switch outcome {
        case .recovered(let frames):
            resumes.increment(readKafka ? Self.fromKafka : Self.fromWindow)
            replayedMessages.increment(by: frames.reduce(0) { $0 + $1.count })
        case .failed(let reason): resumes.increment(Self.failed(reason))
        case .unavailable: resumes.increment(Self.unavailable)
        case .cancelled: break
        }
    }

    /// Failures decided before any replay (malformed cursor, another epoch).
    func count(_ reason: RecoveryFailure) { resumes.increment(Self.failed(reason)) }

    public var resumesInFlight: Int { inFlight.load(ordering: .relaxed) }
    /// Recovered resumes that needed no Kafka read (everything after the cursor was in the hot window).
    public var servedFromWindow: Int { resumes.counter(Self.fromWindow).value }
    /// Recovered resumes that read at least one stream from Kafka.
    public var servedFromKafka: Int { resumes.counter(Self.fromKafka).value }
    public var recoveredCount: Int { servedFromWindow + servedFromKafka }
    public var unavailable: Int { resumes.counter(Self.unavailable).value }
    /// Kafka reads made for resumes: concurrent resumes on one partition share one.
    public var kafkaReadCount: Int { kafkaReads.value }
    /// Records the replay reads took from Kafka, of every key in the partitions they read.
    public var recordsScanned: Int { scanned.value }
    /// Replay reads stopped before their end because every connection waiting on them had gone.
    public var readsCancelled: Int { cancelledReads.value }
    public var failuresByReason: [RecoveryFailure: Int] {
        Dictionary(uniqueKeysWithValues: RecoveryFailure.allCases.map { ($0, resumes.counter(Self.failed($0)).value) })
    }
}
