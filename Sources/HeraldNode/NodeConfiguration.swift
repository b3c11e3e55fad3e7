public import HeraldAPI
public import HeraldGateway
public import HeraldKafka
import NIOCore
public import UnixSignals

/// Everything a node is built from: `herald serve` makes one from its options, the environment and
/// the configuration file; the tests make one by hand. Nothing else configures a node.
public struct NodeConfiguration: Sendable {
    public var nodeID: String
    public var eventsTopic = "herald.events"
    public var upstreamTopic = "herald.upstream"
    /// The compacted topic of devices' committed cursors (`DeviceCursors`); nil: acks are only
    /// counted and a device without a cursor starts live.
    public var cursorsTopic: String? = nil
    /// Devices whose committed cursor the node keeps (`StoredCursors`).
    public var storedCursors = StoredCursors.defaultCapacity
    /// The cluster's view of sessions: its topic (`sessions.topic`), lease and heartbeat. A node whose
    /// sessions topic does not exist at start runs without it (presence and the limit per node).
    public var sessions = ClusterSessionsConfiguration()
    public var producer: KafkaProducerConfiguration
    /// The live consumer; its start position decides where the node's topology begins each partition.
    public var consumer: KafkaLiveConsumerConfiguration
    public var replayReader: KafkaReplayReaderConfiguration
    /// How long one admin request (metadata, watermarks) may take.
    public var adminTimeout: Duration = .seconds(3)
    public var gateway: GatewayConfiguration
    public var api: ControlPlaneConfiguration
    public var tokens: TokenConfiguration
    /// The demo page's helpers on the public port (`--dev`): tokens for any user signed with the
    /// token secret, and a push to oneself. Needs `tokens.hmacSecret`.
    public var developmentTools = false
    public var eventLoopThreads = System.coreCount
    /// The data plane's wall clock (record ages, token expiry, pings, the hot window's age).
    public var clock: WallClock = .system
    /// Signals that start the graceful shutdown; none in tests, which share one process.
    public var gracefulShutdownSignals: [UnixSignal] = []

    public init(nodeID: String, kafka: KafkaConfiguration, tokens: TokenConfiguration, apiKeys: [String]) {
        self.nodeID = nodeID
        producer = KafkaProducerConfiguration(kafka: kafka)
        consumer = KafkaLiveConsumerConfiguration(kafka: kafka, topic: eventsTopic)
        replayReader = KafkaReplayReaderConfiguration(kafka: kafka, topic: eventsTopic)
        gateway = GatewayConfiguration(nodeID: nodeID)
        api = ControlPlaneConfiguration(apiKeys: apiKeys)
        self.tokens = tokens
    }

    /// Names the events topic for every part that reads or writes it.
    public mutating func useEventsTopic(_ topic: String) {
        eventsTopic = topic
        consumer.topic = topic
        replayReader.topic = topic
    }
}
