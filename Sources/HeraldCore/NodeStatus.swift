/// A node's own state as `GET /v1/node` answers it (docs/openapi.yaml, `NodeStatus`): connections,
/// resumes by outcome and source, the hot window, acks and the outbound budget.
public struct NodeStatus: Codable, Sendable, Equatable {
    public var node: String
    public var connections: Int
    public var draining: Bool
    public var resumes: Resumes
    public var hotWindow: HotWindow
    public var acks: Int
    public var outbound: Outbound

    public struct Resumes: Codable, Sendable, Equatable {
        public var recovered: Int
        public var fromWindow: Int
        public var fromKafka: Int
        public var inFlight: Int
        public var kafkaReads: Int
        /// Records those reads took from Kafka, and reads stopped early because nobody waited any more.
        public var recordsScanned: Int
        public var readsCancelled: Int
        public var unavailable: Int
        /// By `RecoveryFailure` raw value; every reason is present.
        public var notRecovered: [String: Int]

        public init(
            recovered: Int, fromWindow: Int, fromKafka: Int, inFlight: Int, kafkaReads: Int, recordsScanned: Int = 0, readsCancelled: Int = 0,
            unavailable: Int, notRecovered: [String: Int]
        ) {
            self.recovered = recovered
            self.fromWindow = fromWindow
            self.fromKafka = fromKafka
            self.inFlight = inFlight
            self.kafkaReads = kafkaReads
            self.recordsScanned = recordsScanned
            self.readsCancelled = readsCancelled
            self.unavailable = unavailable
            self.notRecovered = notRecovered
        }

        enum CodingKeys: String, CodingKey {
            case recovered, unavailable
            case fromWindow = "from_window"
            case fromKafka = "from_kafka"
            case inFlight = "in_flight"
            case kafkaReads = "kafka_reads"
            case recordsScanned = "records_scanned"
            case readsCancelled = "reads_cancelled"
            case notRecovered = "not_recovered"
        }
    }

    public struct HotWindow: Codable, Sendable, Equatable {
        public var records: Int
        public var bytes: Int

        public init(records: Int, bytes: Int) {
            self.records = records
            self.bytes = bytes
        }
    }

    public struct Outbound: Codable, Sendable, Equatable {
        public var budgetBytes: Int
        public var peakQueuedBytes: Int
        public var slowConsumerCloses: Int

        public init(budgetBytes: Int, peakQueuedBytes: Int, slowConsumerCloses: Int) {
            self.budgetBytes = budgetBytes
            self.peakQueuedBytes = peakQueuedBytes
            self.slowConsumerCloses = slowConsumerCloses
        }

        enum CodingKeys: String, CodingKey {
            case budgetBytes = "budget_bytes"
            case peakQueuedBytes = "peak_queued_bytes"
            case slowConsumerCloses = "slow_consumer_closes"
        }
    }

    public init(node: String, connections: Int, draining: Bool, resumes: Resumes, hotWindow: HotWindow, acks: Int, outbound: Outbound) {
        self.node = node
        self.connections = connections
        self.draining = draining
        self.resumes = resumes
        self.hotWindow = hotWindow
        self.acks = acks
        self.outbound = outbound
    }

    enum CodingKeys: String, CodingKey {
        case node, connections, draining, resumes, acks, outbound
        case hotWindow = "hot_window"
    }
}
