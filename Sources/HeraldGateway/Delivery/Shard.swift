import HeraldCore
public import NIOCore

/// Owns the connections of one event loop and runs on that loop: delivery writes to its channels with
/// no thread hop, and registration from a handler on the same loop is synchronous (`assumeIsolated`).
///
/// It keeps its own delivery index (user → connections, channel → subscribers), so delivery never
/// takes a lock shared with other loops. Per batch each touched socket is flushed once.
public actor Shard {
    public nonisolated let eventLoop: any EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { eventLoop.executor.asUnownedSerialExecutor() }

    private var connections: [UInt64: Connection] = [:]
    /// The user's first connection on this shard; the others follow through `nextOfUser`.
    private var byUser: [String: Connection] = [:]
    private var byChannel: [String: [UInt64: Connection]] = [:]
    /// Per partition, the next offset this shard will see: a new connection is current up to one before it.
    private var nextOffsets: [Int32: Int64]
    nonisolated let partitionCount: Int32
    private let metrics: GatewayMetrics
    private let clock: WallClock
    /// Counted per batch, added to the metrics once per batch (indexed by `HeraldStreamKind`).
    private var deliveredCounts = [0, 0, 0]
    private var slowCounts = [0, 0, 0]
    private var tokenExpiredCounts = [0, 0, 0]
    private var bytesWritten = 0
    private var recipientsOfDelivery = 0
    private var touched: [Connection] = []
    /// Set while `deliver` writes its batch's last delivery.
    private var flushAsWritten = false
    /// Most bytes written to one socket before a flush within a batch.
    static let flushSlice = 64 * 1024
    private var sweeps = 0

    init(eventLoop: any EventLoop, startOffsets: [Int32: Int64], partitionCount: Int32, metrics: GatewayMetrics, clock: WallClock = .system) {
        self.metrics = metrics
        self.clock = clock
        self.eventLoop = eventLoop
        self.nextOffsets = startOffsets
        self.partitionCount = partitionCount
    }

    var connectionCount: Int { connections.count }

    /// Adds a connection with its initial channels and returns its positions: for each stream it
    /// follows, the offset it is current up to. Every record this shard delivers later is after them.
    func register(_ connection: Connection, channels: [String]) -> [(stream: HeraldStream, offset: Int64)] {
        connections[connection.id] = connection
        var positions: [(stream: HeraldStream, offset: Int64)] = []
        // An anonymous connection has no user stream and reads no broadcast: only channels open to it.
        if !connection.isAnonymous {
            connection.nextOfUser = byUser[connection.userID]
            byUser[connection.userID] = connection
            positions = [(.user(connection.userID), position(of: .user(connection.userID))), (.broadcast, position(of: .broadcast))]
        }
        for name in channels where subscribe(connection, to: name) {
            positions.append((.channel(name), position(of: .channel(name))))
        }
        return positions
    }

    func unregister(_ connection: Connection) {
        guard connections.removeValue(forKey: connection.id) != nil else { return }
        if let first = byUser[connection.userID] {
            if first === connection {
                byUser[connection.userID] = connection.nextOfUser
            } else {
                var previous = first
                while let next = previous.nextOfUser, next !== connection { previous = next }
                previous.nextOfUser = connection.nextOfUser
            }
        }
        connection.nextOfUser = nil
        for name in connection.subscriptions {
            byChannel[name]?[connection.id] = nil
            if byChannel[name]?.isEmpty == true { byChannel[name] = nil }
        }
        connection.subscriptions = []
    }

    /// Subscribes a connection to a channel; returns false if it already was.
    @discardableResult
    func subscribe(_ connection: Connection, to name: String) -> Bool {
        guard !connection.subscriptions.contains(name) else { return false }
        connection.subscriptions.append(name)
        byChannel[name, default: [:]][connection.id] = connection
        return true
    }

    /// Subscribes and returns the channel's position here, or nil if the connection already was subscribed.
    func subscribeReturningPosition(_ connection: Connection, to name: String) -> Int64? {
        subscribe(connection, to: name) ? position(of: .channel(name)) : nil
    }

    func unsubscribe(_ connection: Connection, from name: String) {
        guard let index = connection.subscriptions.firstIndex(of: name) else { return }
        connection.subscriptions.remove(at: index)
        byChannel[name]?[connection.id] = nil
        if byChannel[name]?.isEmpty == true { byChannel[name] = nil }
    }

    func position(of stream: HeraldStream) -> Int64 {
        (nextOffsets[partition(of: stream)] ?? 0) - 1
    }

    nonisolated func partition(of stream: HeraldStream) -> Int32 {
        Murmur2.partition(forKey: stream.kafkaKey, partitionCount: partitionCount)
    }

    /// Writes each delivery's shared frame to its local recipients and flushes each touched socket once.
    /// The batch's last delivery flushes each recipient as it writes: nothing later in the batch can join
    /// that flush, and a broadcast's first socket then goes out before the rest are written rather than
    /// after, in one pass over the connections instead of two.
    func deliver(_ batch: DeliveryBatch) {
        var reached: [Int64] = []  // timestamps of the deliveries that reached someone here
        let last = batch.deliveries.count - 1
        for (index, delivery) in batch.deliveries.enumerated() {
            flushAsWritten = index == last
            if let expiresAt = delivery.expiresAt, batch.now >= expiresAt { continue }
            guard case .frame(let frame) = delivery.action else {
                if case .user(let user) = delivery.stream { disconnect(user) }
                continue
            }
            recipientsOfDelivery = 0
            defer { if recipientsOfDelivery > 0 { reached.append(delivery.timestamp) } }
            switch delivery.stream {
            case .user(let user):
                var next = byUser[user]
                while let connection = next {
                    write(frame, of: delivery, to: connection, now: batch.now)
                    next = connection.nextOfUser
                }
            case .channel(let name):
                guard let recipients = byChannel[name] else { continue }
                for connection in recipients.values { write(frame, of: delivery, to: connection, now: batch.now) }
            case .broadcast:
                for connection in connections.values where !connection.isAnonymous { write(frame, of: delivery, to: connection, now: batch.now) }
            }
        }
        for (partition, next) in batch.nextOffsets where next > (nextOffsets[partition] ?? 0) {
            nextOffsets[partition] = next
        }
        for connection in touched where connection.unflushedBytes > 0 {
            connection.unflushedBytes = 0
            connection.channel.flush()
        }
        touched.removeAll(keepingCapacity: true)
        recordMetrics(reached)
    }

    private func recordMetrics(_ reached: [Int64]) {
        if !reached.isEmpty {
            let now = clock.nowMillis()
            for timestamp in reached where timestamp > 0 {
                metrics.deliveryLatency.recordNanoseconds(max(0, now - timestamp) * 1_000_000)
            }
        }
        let frames = deliveredCounts.reduce(0, +)
        if frames > 0 { metrics.framesWritten.increment(by: frames) }
        for kind in HeraldStreamKind.allCases {
            let index = kind.index
            metrics.delivered(kind, deliveredCounts[index])
            metrics.dropped(kind, .slowConsumer, slowCounts[index])
            metrics.dropped(kind, .tokenExpired, tokenExpiredCounts[index])
            deliveredCounts[index] = 0
            slowCounts[index] = 0
            tokenExpiredCounts[index] = 0
        }
        if bytesWritten > 0 {
            metrics.bytesWritten.increment(by: bytesWritten)
            bytesWritten = 0
        }
    }

    private func disconnect(_ user: String) {
        var next = byUser[user]
        while let connection = next {
            connection.close(.kicked)
            next = connection.nextOfUser
        }
    }

    private func write(_ frame: ByteBuffer, of delivery: Delivery, to connection: Connection, now: Int64) {
        guard delivery.exclude != connection.id else { return }
        let frame = connection.transport.bytes(of: frame, delivery)
        let kind = delivery.stream.kind.index
        switch connection.lifecycle.offer(frame, stream: delivery.stream, offset: delivery.offset, now: now) {
        case .write:
            break
        case .dropped:
            return
        case .queued:
            // Behind a replay or a full socket: written, in order, when the socket takes it.
            deliveredCounts[kind] += 1
            recipientsOfDelivery += 1
            connection.carryOut(.queued, frame)
            return
        case .close(let disconnect):
            if disconnect.code == .tokenExpired { tokenExpiredCounts[kind] += 1 } else { slowCounts[kind] += 1 }
            connection.sendClose(disconnect)
            return
        }
        deliveredCounts[kind] += 1
        recipientsOfDelivery += 1
        bytesWritten += frame.readableBytes
        if flushAsWritten {
            connection.unflushedBytes = 0
            connection.channel.writeAndFlush(frame, promise: nil)
            return
        }
        if connection.unflushedBytes == 0 { touched.append(connection) }
        connection.channel.write(frame, promise: nil)
        connection.unflushedBytes += frame.readableBytes
        if connection.unflushedBytes >= Self.flushSlice {
            connection.unflushedBytes = 0
            connection.channel.flush()
        }
    }

    /// Each connection's tick: token expiry, the slow-consumer window, pings, and a peer that answers
    /// none. One timer per shard, never one per connection.
    func sweep(now: Int64, pingEverySeconds: Int, missedPongLimit: UInt8) {
        sweeps += 1
        let ping = sweeps % pingEverySeconds == 0
        for connection in connections.values {
            switch connection.lifecycle.tick(now: now, ping: ping, missedPongLimit: missedPongLimit) {
            case .none: break
            case .sendPing: connection.channel.writeAndFlush(ShardFrames.ping, promise: nil)
            case .close(let disconnect): connection.sendClose(disconnect)
            case .abort: connection.channel.close(promise: nil)
            }
        }
    }

    /// Closes every connection (shutdown).
    func closeAll(_ disconnect: Disconnect) {
        for connection in connections.values { connection.close(disconnect) }
    }

    /// Connections not yet closing.
    var openCount: Int { connections.values.reduce(0) { $0 + ($1.isClosing ? 0 : 1) } }

    /// One step of a paced drain: closes up to `count` connections with 1012; returns how many remain open.
    func drainStep(closing count: Int) -> Int {
        var closed = 0
        var open = 0
        for connection in connections.values where !connection.isClosing {
            if closed < count {
                connection.close(.restarting)
                closed += 1
            } else {
                open += 1
            }
        }
        return open
    }
}

enum ShardFrames {
    static let ping = ServerFrame.control(.ping)
}
