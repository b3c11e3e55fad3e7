import Foundation
import HeraldCore
public import HeraldKafka
import Logging
public import NIOCore

/// The delivery path's internal pieces for the microbenchmarks in `Benchmarks/` (a separate package,
/// so the main build stays light), reachable only through `@_spi(Benchmarks) import HeraldGateway`.
@_spi(Benchmarks)
public enum DeliveryBenchmarks {
    /// What the dispatcher does with one consumer batch: decode each record's envelope, route it to its
    /// stream, encode its frame once. Returns the number of deliveries.
    public static func dispatch(_ records: [KafkaRecord], now: Int64) -> Int {
        let dispatcher = Dispatcher(
            shards: [], window: HotWindow(startOffsets: [:], maxAgeMillis: 0, maxBytes: 0), logger: Logger(label: "bench"),
            counters: DispatchCounters(), metrics: GatewayMetrics()
        )
        return dispatcher.makeBatch(records, now: now).deliveries.count
    }

    /// A shard with idle connections on the given channels (all on `eventLoop`, which must be able to
    /// run the shard as its executor), for measuring fan-out. Consecutive runs of `connectionsPerUser`
    /// channels belong to one user (a user's devices).
    public final class FanOut: Sendable {
        private let shard: Shard
        private let users: [HeraldStream]

        public init(eventLoop: any EventLoop, channels: [any Channel], connectionsPerUser: Int = 1) async {
            precondition(connectionsPerUser > 0, "a user has at least one connection")
            shard = Shard(eventLoop: eventLoop, startOffsets: [0: 0], partitionCount: 1, metrics: GatewayMetrics())
            let limits = GatewayConfiguration(nodeID: "bench").makeConnectionLimits()
            let accounts = ConnectionAccounts(outbound: OutboundStats(), admission: nil)
            for (index, channel) in channels.enumerated() {
                let connection = Connection(
                    id: UInt64(index + 1),
                    identity: Identity(userID: "user\(index / connectionsPerUser)", deviceID: nil, channels: [], expiresAt: .max),
                    channel: channel, openedAt: 0, limits: limits, accounts: accounts
                )
                _ = await shard.register(connection, channels: [])
            }
            let userCount = (channels.count + connectionsPerUser - 1) / connectionsPerUser
            users = (0..<userCount).map { .user("user\($0)") }
        }

        /// Delivers one broadcast frame to every connection: one write each, one flush each.
        public func broadcast(_ frame: ByteBuffer, offset: Int64) async {
            let delivery = Delivery(stream: .broadcast, partition: 0, offset: offset, action: .frame(frame), exclude: nil, expiresAt: nil)
            await shard.deliver(DeliveryBatch(deliveries: [delivery], nextOffsets: [0: offset + 1], now: 0))
        }

        /// Delivers one batch of per-user records, one record to each user, the shape of per-user pushes:
        /// each user's frame written to each of its connections, each touched socket flushed once.
        /// Returns the offset after the batch.
        public func deliverOneRecordToEachUser(_ frame: ByteBuffer, firstOffset: Int64) async -> Int64 {
            var offset = firstOffset
            var deliveries: [Delivery] = []
            deliveries.reserveCapacity(users.count)
            for user in users {
                deliveries.append(Delivery(stream: user, partition: 0, offset: offset, action: .frame(frame), exclude: nil, expiresAt: nil))
                offset += 1
            }
            await shard.deliver(DeliveryBatch(deliveries: deliveries, nextOffsets: [0: offset], now: 0))
            return offset
        }
    }
}
