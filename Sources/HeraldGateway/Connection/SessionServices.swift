import HeraldCore
import NIOCore

/// What a `SessionHandler` needs beyond its connection, and nothing else: the node's identity for
/// the welcome, the shard of each loop, the registry, replays, the upstream path for `publish`, and
/// the counters it adds to.
final class SessionServices: Sendable {
    struct Settings: Sendable {
        var maxMessageBytes: Int
        var replayDeadline: Duration
        var clientMessagesPerSecond: Double
        var maxQueuedPublishes: Int
    }

    /// `publish` goes upstream through `publisher`, within the per-user `limits`.
    struct Publishing: Sendable {
        var publisher: UpstreamPublisher
        var limits: PublishLimiter
    }

    let nodeID: String
    let epoch: String
    let settings: Settings
    let registry: SessionRegistry
    let replay: ReplayService
    let history: StreamHistory?
    let publishing: Publishing?
    let metrics: GatewayMetrics
    let clock: WallClock
    /// Where devices' acks are committed and their stored cursors found; nil without a cursors topic.
    let cursors: DeviceCursors?
    /// Who may follow and publish into which channel (`subscribe`, a channel `publish`, a refresh).
    let namespaces: ChannelNamespaces
    /// Verifies a `refresh`'s new token as a handshake's is verified.
    let tokens: TokenVerifier
    /// The cluster's view of sessions, told of each open and close; nil without the sessions topic.
    let cluster: ClusterSessions?
    private let acks = NodeCounter("herald_acks_total")
    /// The node's Server-Sent Events connections, for the dispatcher's encoding.
    let serverSentEvents = ServerSentEventsDemand()
    private let shards: [ObjectIdentifier: Shard]

    init(
        nodeID: String, epoch: String, settings: Settings, registry: SessionRegistry, replay: ReplayService,
        history: StreamHistory? = nil, publishing: Publishing?, metrics: GatewayMetrics, clock: WallClock, shards: [Shard],
        namespaces: ChannelNamespaces, tokens: TokenVerifier, cursors: DeviceCursors? = nil, cluster: ClusterSessions? = nil
    ) {
        self.cursors = cursors
        self.namespaces = namespaces
        self.tokens = tokens
        self.cluster = cluster
        self.nodeID = nodeID
        self.epoch = epoch
        self.settings = settings
        self.registry = registry
        self.replay = replay
        self.history = history
        self.publishing = publishing
        self.metrics = metrics
        self.clock = clock
        self.shards = Dictionary(uniqueKeysWithValues: shards.map { (ObjectIdentifier($0.eventLoop), $0) })
    }

    func shard(for eventLoop: any EventLoop) -> Shard {
        guard let shard = shards[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("every event loop of the gateway's group has a shard")
        }
        return shard
    }

    func countAck() { acks.increment() }
    var acksReceived: Int { acks.value }
}
