import HeraldCore
import NIOCore
import Synchronization

/// What every connection handler of a node shares: identity, registry, admission and the shards.
final class GatewayContext: Sendable {
    let nodeID: String
    let epoch: String
    let registry: SessionRegistry
    let admission: Admission
    let sources: SourceLimiter
    let publishLimits: PublishLimiter
    let connectionLimits: ConnectionStateMachine<ByteBuffer>.Limits
    let tokens: TokenVerifier
    let configuration: GatewayConfiguration
    let replay: ReplayService
    let upstream: UpstreamPublisher?
    let metrics: GatewayMetrics
    let outbound: OutboundStats
    let developmentTools: DevelopmentTools?
    private let shards: [ObjectIdentifier: Shard]
    private let acks = Atomic<Int>(0)

    init(nodeID: String, epoch: String, registry: SessionRegistry, admission: Admission, tokens: TokenVerifier,
         configuration: GatewayConfiguration, shards: [Shard], replay: ReplayService, upstream: UpstreamPublisher?,
         metrics: GatewayMetrics, outbound: OutboundStats, developmentTools: DevelopmentTools? = nil) {
        self.metrics = metrics
        self.outbound = outbound
        self.developmentTools = developmentTools
        self.nodeID = nodeID
        self.epoch = epoch
        self.registry = registry
        self.admission = admission
        self.connectionLimits = configuration.makeConnectionLimits()
        self.publishLimits = PublishLimiter(.init(
            messagesPerSecond: configuration.publishesPerSecondPerUser, bytesPerSecond: configuration.publishBytesPerSecondPerUser,
            maxMessageBytes: configuration.maxMessageBytes
        ))
        self.sources = SourceLimiter(.init(
            inFlight: configuration.handshakesInFlightPerSource, perSecond: configuration.handshakesPerSecondPerSource
        ))
        self.tokens = tokens
        self.configuration = configuration
        self.replay = replay
        self.upstream = upstream
        self.shards = Dictionary(uniqueKeysWithValues: shards.map { (ObjectIdentifier($0.eventLoop), $0) })
    }

    func shard(for eventLoop: any EventLoop) -> Shard {
        guard let shard = shards[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("every event loop of the gateway's group has a shard")
        }
        return shard
    }

    /// Closes every connection of `user` on this node, each on its own loop; returns how many.
    @discardableResult
    func closeConnections(of user: String, _ disconnect: Disconnect) -> Int {
        let connections = registry.connections(of: user)
        for connection in connections {
            connection.channel.eventLoop.execute { connection.close(disconnect) }
        }
        return connections.count
    }

    func countAck() {
        acks.add(1, ordering: .relaxed)
        metrics.acks.increment()
    }
    var acksReceived: Int { acks.load(ordering: .relaxed) }
}
