import HeraldCore
import Metrics
import Synchronization

/// The data plane's metrics, through swift-metrics (the executable bootstraps Prometheus; without a
/// bootstrap they cost nothing). Every label value comes from a small fixed set: stream kinds, close
/// codes, refusal reasons, partitions. Nothing is labelled per user or per connection.
///
/// Hot paths count in plain integers per batch and add here once per batch. Counts that `GET /v1/node`
/// shows as well are `NodeCounter`s in the stats they belong to, not here.
final class GatewayMetrics: Sendable {
    let connectionsOpened = Counter(label: "herald_connections_opened_total")
    let framesWritten = Counter(label: "herald_frames_written_total")
    let bytesWritten = Counter(label: "herald_bytes_written_total")
    /// From a record's Kafka timestamp to the flush of the socket writes that delivered it.
    let deliveryLatency = Timer(label: "herald_delivery_latency_seconds")

    let connections = Gauge(label: "herald_connections")
    let users = Gauge(label: "herald_users")
    /// The cluster's view of sessions: connections and users it holds, nodes whose lease holds.
    let sessionViewConnections = Gauge(label: "herald_session_view_connections")
    let sessionViewUsers = Gauge(label: "herald_session_view_users")
    let sessionViewNodes = Gauge(label: "herald_session_view_nodes")
    let hotWindowBytes = Gauge(label: "herald_hot_window_bytes")
    let hotWindowRecords = Gauge(label: "herald_hot_window_records")
    let resumesInFlight = Gauge(label: "herald_resumes_in_flight")

    private let delivered: [HeraldStreamKind: Counter]
    private let dropped: [DropReason: [HeraldStreamKind: Counter]]
    private let closedByServer: [UInt16: Counter]
    private let closedByClient: [UInt16: Counter]
    private let closedByClientOther = Counter(label: "herald_connections_closed_total", dimensions: [("by", "client"), ("code", "other")])
    private let closedWithoutFrame = Counter(label: "herald_connections_closed_total", dimensions: [("by", "client"), ("code", "none")])
    private let refusals: [String: Counter]
    private let publishes: [Bool: Counter]
    private let lag = Mutex<[Int32: Gauge]>([:])
    let partitionCountChanges = Counter(label: "herald_kafka_partition_count_changes_total")
    let partitionCount = Gauge(label: "herald_kafka_partitions")

    enum DropReason: String, CaseIterable {
        /// The record's `herald-expires-at` passed before it was delivered.
        case expired
        /// The recipient was closed as a slow consumer instead.
        case slowConsumer = "slow_consumer"
        /// The recipient's token expired.
        case tokenExpired = "token_expired"
    }

    static let refusalReasons = [
        "missing-token", "invalid-token", "expired-token", "revoked-token", "origin-not-allowed", "channel-not-allowed", "cursor-not-allowed",
        "rate-limited", "source-rate-limited", "at-capacity", "draining", "not-ready", "bad-request", "not-found",
    ]

    init() {
        delivered = Dictionary(uniqueKeysWithValues: HeraldStreamKind.allCases.map {
            ($0, Counter(label: "herald_messages_delivered_total", dimensions: [("stream", $0.rawValue)]))
        })
        dropped = Dictionary(uniqueKeysWithValues: DropReason.allCases.map { reason in
            (reason, Dictionary(uniqueKeysWithValues: HeraldStreamKind.allCases.map {
                ($0, Counter(label: "herald_messages_dropped_total", dimensions: [("stream", $0.rawValue), ("reason", reason.rawValue)]))
            }))
        })
        closedByServer = Dictionary(uniqueKeysWithValues: CloseCode.allCases.map {
            ($0.rawValue, Counter(label: "herald_connections_closed_total", dimensions: [("by", "server"), ("code", String($0.rawValue))]))
        })
        closedByClient = Dictionary(uniqueKeysWithValues: CloseCode.allCases.map {
            ($0.rawValue, Counter(label: "herald_connections_closed_total", dimensions: [("by", "client"), ("code", String($0.rawValue))]))
        })
        refusals = Dictionary(uniqueKeysWithValues: Self.refusalReasons.map {
            ($0, Counter(label: "herald_handshake_refusals_total", dimensions: [("reason", $0)]))
        })
        publishes = [
            true: Counter(label: "herald_publishes_total", dimensions: [("result", "ok")]),
            false: Counter(label: "herald_publishes_total", dimensions: [("result", "failed")]),
        ]
    }

    func delivered(_ kind: HeraldStreamKind, _ count: Int) {
        if count > 0 { delivered[kind]?.increment(by: count) }
    }

    func dropped(_ kind: HeraldStreamKind, _ reason: DropReason, _ count: Int = 1) {
        if count > 0 { dropped[reason]?[kind]?.increment(by: count) }
    }

    /// A connection ended: closed by the server with `serverCode`, by the client with `clientCode`, or
    /// with no close frame at all (TCP dropped, missed pongs).
    func closed(serverCode: UInt16?, clientCode: UInt16?) {
        if let serverCode {
            closedByServer[serverCode]?.increment()
        } else if let clientCode {
            (closedByClient[clientCode] ?? closedByClientOther).increment()
        } else {
            closedWithoutFrame.increment()
        }
    }

    func refused(_ reason: String) {
        refusals[reason]?.increment()
    }

    func published(ok: Bool) {
        publishes[ok]?.increment()
    }

    func recordLag(_ lag: [Int32: Int64]) {
        self.lag.withLock { gauges in
            for (partition, value) in lag {
                let gauge = gauges[partition] ?? Gauge(label: "herald_kafka_consumer_lag", dimensions: [("partition", String(partition))])
                gauges[partition] = gauge
                gauge.record(value)
            }
        }
    }
}

extension HeraldStreamKind {
    /// A dense index for per-kind counters kept in arrays on the delivery path.
    var index: Int {
        switch self {
        case .user: 0
        case .channel: 1
        case .broadcast: 2
        }
    }
}
