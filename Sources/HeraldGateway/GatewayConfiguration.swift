public import HeraldCore
import NIOCore

/// The data plane's settings (ARCHITECTURE.md, "Limits and defaults").
public struct GatewayConfiguration: Sendable {
    public var host = "0.0.0.0"
    public var port = 8080
    public var nodeID: String
    /// Most open WebSocket connections; further handshakes get 503.
    public var maxConnections = 1_000_000
    /// Handshakes per second; more get 503 with Retry-After.
    public var acceptsPerSecond: Double = 2_000
    public var perUserConnectionLimit = 10
    /// Handshakes one source address may have in verification at once (0: no limit).
    public var handshakesInFlightPerSource = 256
    /// Handshakes one source address may start per second (0: no limit).
    public var handshakesPerSecondPerSource: Double = 0
    /// Largest message a client may send, fragments included (close 1009 above it).
    public var maxMessageBytes = 64 * 1024
    /// The byte budget per connection: outbound bytes it may have queued (held during a replay, queued
    /// behind one or behind a full socket, and in the socket's buffer) for longer than a moment.
    public var outboundCapBytes = 1024 * 1024
    /// Queued bytes beyond which a connection is closed with 4008 at once.
    public var outboundHardLimitBytes = 8 * 1024 * 1024
    /// How long a connection may stay over its budget while its peer reads nothing before it is
    /// closed with 4008: a burst that a reader takes within it closes nothing.
    public var slowConsumerWindow: Duration = .seconds(5)
    public var pingInterval: Duration = .seconds(30)
    /// Pings in a row without a pong (or any frame) before the connection is closed.
    public var missedPongLimit: UInt8 = 2
    /// A TCP connection that has not completed its WebSocket handshake by then is closed.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Browser origins allowed to connect; empty allows any (non-browser clients send none).
    public var allowedOrigins: Set<String> = []
    /// How long and how many bytes of recent records each node keeps in memory to serve resumes.
    public var hotWindowAge: Duration = .seconds(120)
    public var hotWindowBytes = 64 * 1024 * 1024
    /// Most messages one resume replays; more is `recovered:false` with reason `too-many`.
    public var replayLimit = 10_000
    /// (stream, message id) pairs remembered to drop a retried copy of a message (`RepeatedMessages`).
    public var messageIDMemory = RepeatedMessages.defaultCapacity
    /// Most bytes of frames one resume replays; more is `recovered:false` with reason `too-many`.
    public var replayMaxBytes = 4 * 1024 * 1024
    /// A replay not read by then is given up: `recovered:false` with reason `too-many`.
    public var replayDeadline: Duration = .seconds(10)
    /// What one history answer may hold and read (`history` frames and `GET /v1/streams/{stream}/history`).
    public var history = StreamHistory.Bounds()
    /// Publishes from one connection queued while earlier ones wait for Kafka; more are refused.
    public var maxQueuedPublishes = 32
    /// Publishes one user may make through this node per second, and their bytes (0: no limit); more
    /// are refused with `slow-down`, and a connection that keeps going is closed with 1008.
    public var publishesPerSecondPerUser: Double = 20
    public var publishBytesPerSecondPerUser: Double = 256 * 1024
    /// Messages (not pings) a connection may send in any one second (0: no limit); more close it
    /// with 1008.
    public var clientMessagesPerSecond: Double = 200
    /// The graceful drain on SIGTERM, all of it: readiness fails at once, the listener closes after
    /// `drainDelay`, and the connections are closed with 1012 in batches spread over the rest.
    public var drainDuration: Duration = .seconds(20)
    public var drainDelay: Duration = .seconds(3)
    /// The channel namespaces: who may follow a channel, whether clients may publish into it, its
    /// history length (docs/protocol.md §5). None configured: every channel needs a grant by name.
    public var namespaces = ChannelNamespaces()
    /// Connections without a token (accepted only when some namespace is open to them): their own cap
    /// and accept rate, so anonymous readers cannot crowd out the users, nor the users them.
    public var anonymousMaxConnections = 10_000
    public var anonymousAcceptsPerSecond: Double = 200
    /// `--dev` only: serve `/v1/echo`, an unauthenticated echo endpoint for the Autobahn suite.
    public var echoEndpoint = false
    /// Message limit of the echo endpoint (Autobahn sends up to 16 MiB).
    public var echoMaxMessageBytes = 20 * 1024 * 1024
    /// TLS on the public port (wss:// and https://); nil serves plain TCP, for a load balancer that
    /// terminates TLS in front of the node.
    public var tls: TLSContextReloader? = nil

    public init(nodeID: String) {
        self.nodeID = nodeID
    }

    /// Each connection's byte budget, as its lifecycle applies it (made once per node).
    func makeConnectionLimits() -> ConnectionStateMachine<ByteBuffer>.Limits {
        let window = slowConsumerWindow.components
        return .init(
            budgetBytes: outboundCapBytes, hardLimitBytes: max(outboundHardLimitBytes, outboundCapBytes),
            slowWindowMillis: window.seconds * 1000 + window.attoseconds / 1_000_000_000_000_000
        )
    }
}
