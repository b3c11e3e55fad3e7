public import HeraldKafka
import HeraldCore
public import Logging
import NIOCore

/// Durable per-device cursors: a device's acks commit its position to the cursors topic (compacted,
/// keyed by user and device), every node follows that topic into its `StoredCursors`, and a device
/// that connects with a `device` claim and no cursor of its own resumes from its committed position,
/// on any node. One commit per connection per `commitInterval` at most, and one when it closes.
public final class DeviceCursors: Sendable {
    public let store: StoredCursors
    public let topic: String
    let commitInterval: Duration
    private let producer: KafkaProducer
    private let logger: Logger
    private let commits = NodeCounter("herald_cursor_commits_total")
    private let commitFailures = NodeCounter("herald_cursor_commit_failures_total")
    private let recordsRead = NodeCounter("herald_cursor_records_read_total")
    private let malformedRecords = NodeCounter("herald_cursor_records_malformed_total")
    private let storedResumes = NodeCounter("herald_stored_cursor_resumes_total")
    private let failureLog = LogThrottle(intervalMillis: 10_000)

    public init(
        topic: String, producer: KafkaProducer, store: StoredCursors = StoredCursors(), commitInterval: Duration = .seconds(1),
        logger: Logger
    ) {
        self.topic = topic
        self.producer = producer
        self.store = store
        self.commitInterval = commitInterval
        self.logger = logger
    }

    /// Commits where a device is current: stored here at once (a reconnect to this node finds it
    /// before Kafka answers), then produced. A failed write is counted and logged; the next ack or
    /// the connection's close commits again.
    func commit(user: String, device: String, epoch: String, cursor: ResumeCursor) {
        guard !cursor.entries.isEmpty else { return }
        let record = DeviceCursorRecord(user: user, device: device, epoch: epoch, cursor: cursor)
        store.store(record)
        let outgoing = KafkaOutgoingRecord(topic: topic, key: record.key, value: ByteBuffer(bytes: record.value), headers: [])
        Task { [producer, commits, commitFailures, failureLog, logger] in
            do {
                _ = try await producer.send(outgoing)
                commits.increment()
            } catch {
                commitFailures.increment()
                if let suppressed = failureLog.admit("commit", now: WallClock.system.nowMillis()) {
                    logger.warning("a device cursor was not committed to Kafka", metadata: [
                        "kafka.topic": "\(topic)", "error": "\(error)", "suppressed": "\(suppressed)",
                    ])
                }
            }
        }
    }

    /// The resume a device's handshake gets from its stored cursor: nil without a `device` claim or
    /// a stored cursor (the connection starts live). Channels the token no longer grants are left
    /// out (the device did not ask for them this time; nothing is refused); a cursor of another epoch
    /// is `recovered:false, reason:"epoch"`, so the device learns that it must resynchronise.
    func resumeRequest(user: String, device: String?, granted: Set<String>, nodeEpoch: String) -> HandshakeState.ResumeRequest? {
        guard let device, let entry = store.entry(user: user, device: device) else { return nil }
        storedResumes.increment()
        guard entry.epoch == nodeEpoch else { return .failed(.epoch, stored: true) }
        let entries = entry.cursor.entries.filter { entry in
            if case .channel(let name) = entry.stream { return granted.contains(name) }
            return true
        }
        guard !entries.isEmpty else { return nil }
        return .cursor(ResumeCursor(entries: entries), stored: true)
    }

    /// Reads the cursors topic into the store until the batches end (the consumer stopped) or the
    /// task is cancelled; a node starting fresh reads it from its beginning.
    public func follow(_ batches: KafkaRecordBatches) async {
        for await records in batches {
            for record in records {
                recordsRead.increment()
                guard let cursor = DeviceCursorRecord.decode(record.value.readableBytesView),
                      record.key == cursor.key else {
                    malformedRecords.increment()
                    continue
                }
                store.store(cursor)
            }
        }
    }

    /// Commits produced and acknowledged by Kafka, and those Kafka did not take.
    public var commitCount: Int { commits.value }
    public var commitFailureCount: Int { commitFailures.value }
    /// Records read from the cursors topic (this node's own commits among them).
    public var recordsReadCount: Int { recordsRead.value }
    /// Handshakes that resumed from a stored cursor (recovered or not).
    public var storedResumeCount: Int { storedResumes.value }
}
