import ArgumentParser
import Foundation
import HeraldCore
import HeraldGateway
import HeraldKafka

/// The data plane's options; each also reads a `HERALD_*` variable.
struct GatewayOptions: ParsableArguments {
    @Option(help: "Public WebSocket port. Env: HERALD_PORT. Default: 8080.")
    var port: Int?

    @Option(help: "Address to listen on. Env: HERALD_HOST. Default: 0.0.0.0.")
    var host: String?

    @Option(help: "HS256 secret for connection tokens (at least 32 bytes). Env: HERALD_JWT_SECRET.")
    var jwtSecret: String?

    @Option(help: "A file holding the HS256 secret (a mounted Secret); --jwt-secret wins over it. Env: HERALD_JWT_SECRET_FILE.")
    var jwtSecretFile: String?

    @Option(help: "RS256/ES256 public key PEM files, comma-separated; each file's name (without extension) is its kid. Env: HERALD_JWT_PUBLIC_KEYS.")
    var jwtPublicKeys: String?

    @Option(help: "Required token audience. Env: HERALD_JWT_AUDIENCE.")
    var jwtAudience: String?

    @Option(help: "Required token issuer. Env: HERALD_JWT_ISSUER.")
    var jwtIssuer: String?

    @Option(help: "Longest token lifetime accepted (exp - iat, or exp - now without iat), e.g. 12h. Env: HERALD_JWT_MAX_LIFETIME. Default: no limit.")
    var jwtMaxLifetime: String?

    @Option(help: "How long a kick with revoke=true stays in force when no --jwt-max-lifetime is set, e.g. 24h. Env: HERALD_REVOCATION_HORIZON. Default: 24h.")
    var revocationHorizon: String?

    @Option(help: "Allowed browser origins, comma-separated (empty: any). Env: HERALD_ALLOWED_ORIGINS.")
    var allowedOrigins: String?

    @Option(help: "Most connections this node holds. Env: HERALD_MAX_CONNECTIONS. Default: the open-file limit less 200.")
    var maxConnections: Int?

    @Option(help: "Handshakes accepted per second. Env: HERALD_ACCEPT_RATE. Default: 2000.")
    var acceptRate: Double?

    @Option(help: "Handshakes one source address may have in token verification at once (0: no limit; more get 429). Env: HERALD_SOURCE_HANDSHAKES_IN_FLIGHT. Default: 256.")
    var sourceHandshakesInFlight: Int?

    @Option(help: "Handshakes one source address may start per second (0: no limit; more get 429). Env: HERALD_SOURCE_HANDSHAKE_RATE. Default: 0.")
    var sourceHandshakeRate: Double?

    @Option(help: "Publishes one user may make through this node per second (0: no limit; more get slow-down). Env: HERALD_PUBLISH_RATE. Default: 20.")
    var publishRate: Double?

    @Option(help: "Bytes one user may publish through this node per second (0: no limit). Env: HERALD_PUBLISH_BYTES_RATE. Default: 262144.")
    var publishBytesRate: Double?

    @Option(help: "Messages (not pings) a connection may send in any one second (0: no limit; more close it with 1008). Env: HERALD_CLIENT_MESSAGE_RATE. Default: 200.")
    var clientMessageRate: Double?

    @Option(help: "Connections per user before the oldest is replaced. Env: HERALD_USER_CONNECTION_LIMIT. Default: 10.")
    var userConnectionLimit: Int?

    @Option(help: "Outbound byte budget per connection: queued longer than the slow-consumer window, the connection is closed with 4008. Env: HERALD_OUTBOUND_CAP. Default: 1048576.")
    var outboundCap: Int?

    @Option(help: "Outbound bytes queued per connection beyond which it is closed with 4008 at once. Env: HERALD_OUTBOUND_HARD_LIMIT. Default: 8388608.")
    var outboundHardLimit: Int?

    @Option(help: "Seconds a connection may stay over its outbound budget while its client reads nothing. Env: HERALD_SLOW_CONSUMER_SECONDS. Default: 5.")
    var slowConsumerSeconds: Double?

    @Option(help: "Seconds of recent records kept in memory to serve resumes. Env: HERALD_HOT_WINDOW_SECONDS. Default: 120.")
    var hotWindowSeconds: Int?

    @Option(help: "Bytes of recent records kept in memory to serve resumes. Env: HERALD_HOT_WINDOW_BYTES. Default: 67108864.")
    var hotWindowBytes: Int?

    @Option(help: "Most messages one resume replays (more: recovered:false, too-many). Env: HERALD_REPLAY_LIMIT. Default: 10000.")
    var replayLimit: Int?

    @Option(help: "Message ids remembered per stream to drop a retried copy (about 71 bytes each). Env: HERALD_MESSAGE_ID_MEMORY. Default: 262144.")
    var messageIdMemory: Int?

    @Option(help: "Devices whose committed cursor the node keeps (about 220 bytes each). Env: HERALD_STORED_CURSORS. Default: 100000.")
    var storedCursors: Int?

    @Option(help: "Most bytes one resume replays (more: recovered:false, too-many). Env: HERALD_REPLAY_MAX_BYTES. Default: 4194304.")
    var replayMaxBytes: Int?

    @Option(help: "Seconds a resume's replay may take (longer: recovered:false, too-many). Env: HERALD_REPLAY_DEADLINE_SECONDS. Default: 10.")
    var replayDeadlineSeconds: Double?

    @Option(help: "Partitions read from Kafka at once for resumes, one consumer handle each (1-64). Env: HERALD_REPLAY_READERS. Default: 4.")
    var replayReaders: Int?

    @Option(help: "Most messages one history answer holds (more asked: cut \"count\"). Env: HERALD_HISTORY_MAX_MESSAGES. Default: 1000.")
    var historyMaxMessages: Int?

    @Option(help: "Most bytes of messages one history answer holds, at most --outbound-cap (more: cut \"bytes\"). Env: HERALD_HISTORY_MAX_BYTES. Default: 524288, or --outbound-cap when that is smaller.")
    var historyMaxBytes: Int?

    @Option(help: "Seconds a graceful drain (SIGTERM) takes in all: connections are closed with 1012, spread over it. Env: HERALD_DRAIN_SECONDS. Default: 20.")
    var drainSeconds: Double?

    @Option(help: "Seconds between SIGTERM (readiness fails at once) and closing the listener. Env: HERALD_DRAIN_DELAY_SECONDS. Default: 3.")
    var drainDelaySeconds: Double?

    @Option(help: "Channel namespaces, separated by ';': NAME then subscribe=anonymous|token|grant|pattern, publish=true|false, history=N, user=true|false (e.g. 'video subscribe=anonymous publish history=50'). Env: HERALD_NAMESPACES. Default: none (every channel needs a grant by name).")
    var namespaces: String?

    @Option(help: "Most connections without a token this node holds (only with a namespace open to them). Env: HERALD_ANONYMOUS_MAX_CONNECTIONS. Default: 10000.")
    var anonymousMaxConnections: Int?

    @Option(help: "Handshakes without a token accepted per second. Env: HERALD_ANONYMOUS_ACCEPT_RATE. Default: 200.")
    var anonymousAcceptRate: Double?

    @Option(help: "Seconds after its last heartbeat that a node is forgotten with its connections by the cluster's view. Env: HERALD_SESSION_LEASE_SECONDS. Default: 15.")
    var sessionLeaseSeconds: Double?

    @Option(help: "Seconds between a node's heartbeats on the sessions topic (less than the lease). Env: HERALD_SESSION_HEARTBEAT_SECONDS. Default: 5.")
    var sessionHeartbeatSeconds: Double?

    @Option(help: "PEM certificate chain for TLS on the public port (wss:// and https://); reloaded when the file changes. Needs --tls-key-file. Env: HERALD_TLS_CERT_FILE. Default: plain TCP.")
    var tlsCertFile: String?

    @Option(help: "PEM private key of --tls-cert-file. Env: HERALD_TLS_KEY_FILE.")
    var tlsKeyFile: String?

    func gatewayConfiguration(nodeID: String, dev: Bool, environment: [String: String]) throws -> GatewayConfiguration {
        let settings = Settings(environment: environment)
        let value = settings.string
        func number<T: LosslessStringConvertible>(_ flag: T?, _ name: String) throws -> T? { try settings.number(flag, name) }
        var configuration = GatewayConfiguration(nodeID: nodeID)
        configuration.port = try number(port, "HERALD_PORT") ?? 8080
        configuration.host = value(host, "HERALD_HOST") ?? "0.0.0.0"
        configuration.maxConnections = try number(maxConnections, "HERALD_MAX_CONNECTIONS") ?? Self.defaultMaxConnections()
        configuration.acceptsPerSecond = try number(acceptRate, "HERALD_ACCEPT_RATE") ?? 2_000
        configuration.perUserConnectionLimit = try number(userConnectionLimit, "HERALD_USER_CONNECTION_LIMIT") ?? 10
        configuration.publishesPerSecondPerUser = try number(publishRate, "HERALD_PUBLISH_RATE") ?? 20
        configuration.publishBytesPerSecondPerUser = try number(publishBytesRate, "HERALD_PUBLISH_BYTES_RATE") ?? 256 * 1024
        configuration.clientMessagesPerSecond = try number(clientMessageRate, "HERALD_CLIENT_MESSAGE_RATE") ?? 200
        for rate in [configuration.publishesPerSecondPerUser, configuration.publishBytesPerSecondPerUser, configuration.clientMessagesPerSecond] {
            guard rate.isFinite, rate >= 0 else { throw ValidationError("publish and client message rates must be 0 (off) or more") }
        }
        configuration.handshakesInFlightPerSource = try number(sourceHandshakesInFlight, "HERALD_SOURCE_HANDSHAKES_IN_FLIGHT") ?? 256
        configuration.handshakesPerSecondPerSource = try number(sourceHandshakeRate, "HERALD_SOURCE_HANDSHAKE_RATE") ?? 0
        guard configuration.handshakesInFlightPerSource >= 0, configuration.handshakesPerSecondPerSource >= 0,
              configuration.handshakesPerSecondPerSource.isFinite else {
            throw ValidationError("per-source handshake limits must be 0 (off) or more")
        }
        configuration.allowedOrigins = Set((value(allowedOrigins, "HERALD_ALLOWED_ORIGINS") ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty })
        configuration.outboundCapBytes = try number(outboundCap, "HERALD_OUTBOUND_CAP") ?? 1024 * 1024
        configuration.outboundHardLimitBytes = try number(outboundHardLimit, "HERALD_OUTBOUND_HARD_LIMIT") ?? 8 * 1024 * 1024
        configuration.slowConsumerWindow = try Self.duration(number(slowConsumerSeconds, "HERALD_SLOW_CONSUMER_SECONDS") ?? 5, "the slow-consumer window")
        configuration.replayMaxBytes = try number(replayMaxBytes, "HERALD_REPLAY_MAX_BYTES") ?? 4 * 1024 * 1024
        configuration.messageIDMemory = try number(messageIdMemory, "HERALD_MESSAGE_ID_MEMORY") ?? RepeatedMessages.defaultCapacity
        guard (1...100_000_000).contains(configuration.messageIDMemory) else {
            throw ValidationError("the message id memory must be 1 to 100000000 ids, not \(configuration.messageIDMemory)")
        }
        configuration.replayDeadline = try Self.duration(number(replayDeadlineSeconds, "HERALD_REPLAY_DEADLINE_SECONDS") ?? 10, "the replay deadline")
        guard configuration.outboundCapBytes >= 1_024 else { throw ValidationError("the outbound cap must be at least 1024 bytes") }
        guard configuration.outboundHardLimitBytes >= configuration.outboundCapBytes else {
            throw ValidationError("the outbound hard limit must be at least the outbound cap")
        }
        guard configuration.replayMaxBytes >= 1 else { throw ValidationError("the replay byte limit must be at least 1") }
        configuration.history.maxMessages = try number(historyMaxMessages, "HERALD_HISTORY_MAX_MESSAGES") ?? 1_000
        let historyBytes = try number(historyMaxBytes, "HERALD_HISTORY_MAX_BYTES")
        // Unset, the bound follows a smaller outbound cap instead of refusing to start beside it.
        configuration.history.maxBytes = historyBytes ?? min(512 * 1024, configuration.outboundCapBytes)
        guard (1...1_000_000).contains(configuration.history.maxMessages) else {
            throw ValidationError("the history message bound must be 1 to 1000000")
        }
        guard historyBytes == nil || (1_024...max(1_024, configuration.outboundCapBytes)).contains(configuration.history.maxBytes) else {
            throw ValidationError("the history byte bound must be 1024 to the outbound cap (\(configuration.outboundCapBytes))")
        }
        configuration.hotWindowAge = .seconds(try number(hotWindowSeconds, "HERALD_HOT_WINDOW_SECONDS") ?? 120)
        configuration.hotWindowBytes = try number(hotWindowBytes, "HERALD_HOT_WINDOW_BYTES") ?? 64 * 1024 * 1024
        configuration.replayLimit = try number(replayLimit, "HERALD_REPLAY_LIMIT") ?? 10_000
        configuration.drainDuration = .milliseconds(Int((try number(drainSeconds, "HERALD_DRAIN_SECONDS") ?? 20) * 1_000))
        configuration.drainDelay = .milliseconds(Int((try number(drainDelaySeconds, "HERALD_DRAIN_DELAY_SECONDS") ?? 3) * 1_000))
        guard configuration.drainDelay <= configuration.drainDuration else {
            throw ValidationError("the drain delay must not be longer than the drain")
        }
        configuration.echoEndpoint = dev
        do {
            configuration.namespaces = try ChannelNamespaces.parse(value(namespaces, "HERALD_NAMESPACES") ?? "")
        } catch {
            throw ValidationError("HERALD_NAMESPACES (--namespaces): \(error.message)")
        }
        configuration.anonymousMaxConnections = try number(anonymousMaxConnections, "HERALD_ANONYMOUS_MAX_CONNECTIONS") ?? 10_000
        configuration.anonymousAcceptsPerSecond = try number(anonymousAcceptRate, "HERALD_ANONYMOUS_ACCEPT_RATE") ?? 200
        guard configuration.anonymousMaxConnections >= 0, configuration.anonymousAcceptsPerSecond.isFinite,
              configuration.anonymousAcceptsPerSecond > 0 else {
            throw ValidationError("the anonymous connection limit must be 0 or more and the anonymous accept rate more than 0")
        }
        configuration.tls = try Self.tls(
            certificate: value(tlsCertFile, "HERALD_TLS_CERT_FILE"), key: value(tlsKeyFile, "HERALD_TLS_KEY_FILE"),
            clientCA: nil, flags: ("--tls-cert-file", "--tls-key-file"), port: "public"
        )
        guard configuration.replayLimit >= 1 else { throw ValidationError("the replay limit must be at least 1") }
        guard configuration.perUserConnectionLimit >= 1 else { throw ValidationError("the per-user connection limit must be at least 1") }
        return configuration
    }

    /// How many devices' committed cursors the node keeps.
    func storedCursorCount(environment: [String: String]) throws -> Int {
        let count = try Settings(environment: environment).number(storedCursors, "HERALD_STORED_CURSORS") ?? StoredCursors.defaultCapacity
        guard (1...100_000_000).contains(count) else { throw ValidationError("the stored cursors must be 1 to 100000000 devices, not \(count)") }
        return count

    }

    /// The node's part in the cluster's view of sessions.
    func sessionsConfiguration(topic: String, environment: [String: String]) throws -> ClusterSessionsConfiguration {
        let settings = Settings(environment: environment)
        var configuration = ClusterSessionsConfiguration()
        configuration.topic = topic
        configuration.lease = try Self.duration(settings.number(sessionLeaseSeconds, "HERALD_SESSION_LEASE_SECONDS") ?? 15, "the session lease")
        configuration.heartbeatInterval = try Self.duration(
            settings.number(sessionHeartbeatSeconds, "HERALD_SESSION_HEARTBEAT_SECONDS") ?? 5, "the session heartbeat"
        )
        guard configuration.heartbeatInterval < configuration.lease else {
            throw ValidationError("the session heartbeat must be shorter than the session lease, or every node's lease runs out between its heartbeats")
        }
        return configuration
    }

    /// How many partitions the replay reader reads at once.
    func replayReaderCount(environment: [String: String]) throws -> Int {
        let count = try Settings(environment: environment).number(replayReaders, "HERALD_REPLAY_READERS") ?? 4
        guard (1...KafkaReplayReaderConfiguration.maxReaders).contains(count) else {
            throw ValidationError("the replay readers must be 1 to \(KafkaReplayReaderConfiguration.maxReaders), not \(count)")
        }
        return count
    }

    func tokenConfiguration(devSecret: String?, environment: [String: String]) throws -> TokenConfiguration {
        let settings = Settings(environment: environment)
        let value = settings.string
        if devSecret != nil, try settings.secret(jwtSecret, file: jwtSecretFile, "HERALD_JWT_SECRET") != nil {
            // --dev serves /dev/token (a valid token for any user) on the public port: with the real
            // secret, that would hand out real tokens.
            throw ValidationError(
                "--dev refuses to run with a configured token secret (HERALD_JWT_SECRET, --jwt-secret or a secret file is set): development mode serves /dev/token, which signs a token for any user, so it only ever uses a random secret. Unset HERALD_JWT_SECRET, or run without --dev."
            )
        }
        var publicKeys: [(kid: String, pem: String)] = []
        for path in (value(jwtPublicKeys, "HERALD_JWT_PUBLIC_KEYS") ?? "").split(separator: ",").map(String.init) {
            let url = URL(fileURLWithPath: path.trimmingCharacters(in: .whitespaces))
            guard let pem = try? String(contentsOf: url, encoding: .utf8) else {
                throw ValidationError("cannot read public key file \(url.path)")
            }
            publicKeys.append((url.deletingPathExtension().lastPathComponent, pem))
        }
        let secret = try settings.secret(jwtSecret, file: jwtSecretFile, "HERALD_JWT_SECRET") ?? devSecret
        guard secret != nil || !publicKeys.isEmpty else {
            throw ValidationError("no token key: set --jwt-secret (HERALD_JWT_SECRET) or --jwt-public-keys, or run with --dev")
        }
        return TokenConfiguration(
            hmacSecret: secret, publicKeys: publicKeys,
            audience: value(jwtAudience, "HERALD_JWT_AUDIENCE"), issuer: value(jwtIssuer, "HERALD_JWT_ISSUER"),
            maxLifetime: try settings.duration(jwtMaxLifetime, "HERALD_JWT_MAX_LIFETIME"),
            revocationHorizon: try settings.duration(revocationHorizon, "HERALD_REVOCATION_HORIZON") ?? .seconds(86_400)
        )
    }

    /// A reloader for a certificate and key given together, or nil for neither; the files are read
    /// now, so a node with an unusable certificate does not start.
    static func tls(certificate: String?, key: String?, clientCA: String?, flags: (String, String), port: String) throws -> TLSContextReloader? {
        switch (certificate, key) {
        case (nil, nil):
            guard clientCA == nil else { throw ValidationError("a client CA file needs TLS on the port: set \(flags.0) and \(flags.1) too") }
            return nil
        case (.some, nil): throw ValidationError("\(flags.0) needs \(flags.1) (the certificate's private key)")
        case (nil, .some): throw ValidationError("\(flags.1) needs \(flags.0) (the certificate chain)")
        case (let certificate?, let key?):
            do {
                return try TLSContextReloader(files: TLSFiles(certificateFile: certificate, keyFile: key, clientCAFile: clientCA), port: port)
            } catch {
                throw ValidationError(error.message)
            }
        }
    }

    /// Seconds from a flag or the environment, range-checked before the conversion.
    static func duration(_ seconds: Double, _ name: String) throws -> Duration {
        guard seconds.isFinite, seconds > 0, seconds <= 86_400 else { throw ValidationError("\(name) must be between 0 and 86400 seconds") }
        return .milliseconds(Int64((seconds * 1_000).rounded()))
    }

    /// One socket per connection, and some files for Kafka, logs and the listener.
    static func defaultMaxConnections() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < 100_000_000 else { return 1_000_000 }
        return max(100, Int(limit.rlim_cur) - 200)
    }
}
