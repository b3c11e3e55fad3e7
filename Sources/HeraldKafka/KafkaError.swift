internal import CKafka

/// Every failure HeraldKafka reports: a code a caller can switch on, a message a person can act on,
/// and librdkafka's own error name when it came from there.
public struct KafkaError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A configuration property was refused by librdkafka.
        public static let configuration = Code("configuration")
        /// librdkafka could not create a client handle.
        public static let clientCreation = Code("client-creation")
        /// The record could not be queued (e.g. the local queue is full, the record is too large).
        public static let enqueue = Code("enqueue")
        /// The record was queued but Kafka did not acknowledge it: it may not be treated as written.
        public static let delivery = Code("delivery")
        /// A requested offset is older than the log start: Kafka no longer keeps it.
        public static let offsetExpired = Code("offset-expired")
        /// A requested offset lies beyond the end of the log.
        public static let offsetAhead = Code("offset-ahead")
        /// A replay would return more records than its limit allows.
        public static let tooMany = Code("too-many")
        /// The topic or partition does not exist.
        public static let unknownTopicOrPartition = Code("unknown-topic-or-partition")
        /// A blocking call did not finish in the time given.
        public static let timedOut = Code("timed-out")
        /// The client is shutting down or already shut down.
        public static let shutdown = Code("shutdown")
        /// An admin request failed.
        public static let admin = Code("admin")
        /// The mock cluster could not be started or driven.
        public static let mockCluster = Code("mock-cluster")
        /// The caller stopped the operation: nobody waits for its result any more.
        public static let cancelled = Code("cancelled")
        /// A consumer or fetch error reported by librdkafka.
        public static let consumer = Code("consumer")
    }

    public let code: Code
    public let message: String
    /// librdkafka's `rd_kafka_resp_err_t` value, when the error came from librdkafka.
    public let rdKafkaCode: Int32?

    public init(_ code: Code, _ message: String, rdKafkaCode: Int32? = nil) {
        self.code = code
        self.message = message
        self.rdKafkaCode = rdKafkaCode
    }

    init(_ code: Code, _ context: String, _ err: rd_kafka_resp_err_t) {
        let name = String(cString: rd_kafka_err2name(err))
        let text = String(cString: rd_kafka_err2str(err))
        self.init(code, "\(context): \(text) (\(name))", rdKafkaCode: err.rawValue)
    }

    /// Whether retrying the same request later may succeed (the broker is away, a queue is full).
    public var isRetriable: Bool {
        guard let rdKafkaCode else { return code == .timedOut }
        let err = rd_kafka_resp_err_t(rawValue: rdKafkaCode)
        switch err {
        case RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
             RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
             RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
             RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
            return true
        default:
            return false
        }
    }

    public var description: String { "Kafka \(code): \(message)" }
}
