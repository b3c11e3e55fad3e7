import Foundation
import HeraldCore
@testable import HeraldGateway
import HeraldKafka
import Logging
import Testing

@Suite("Kafka gaps and partition changes reach the connections they affect")
struct PartitionGapTests {
    /// A dispatcher of the node's own connections (the gateway's dispatcher is built the same way).
    static func dispatcher(_ node: GatewayHarness, metrics: GatewayMetrics = GatewayMetrics()) -> Dispatcher {
        Dispatcher(
            shards: [], window: HotWindow(startOffsets: [:], maxAgeMillis: 60_000, maxBytes: 1 << 20), logger: testLogger,
            counters: DispatchCounters(), metrics: metrics, registry: node.gateway.registry
        )
    }

    static func name(_ prefix: String, inPartition partition: Int32, _ inside: Bool = true) -> String {
        (0...).lazy.map { "\(prefix)\($0)" }.first { (Murmur2.partition(forKey: $0, partitionCount: 4) == partition) == inside }!
    }

    @Test("a gap in a partition closes, with 1012, exactly the connections that follow one of its streams")
    func gapClosesTheFollowersOfItsPartition() async throws {
        try await GatewayHarness.run { node in
            let partition = (Murmur2.partition(forKey: "*", partitionCount: 4) + 1) % 4
            let channel = Self.name("topic", inPartition: partition)
            let inside = try await node.connect(Self.name("in", inPartition: partition))
            let subscriber = try await node.connect(Self.name("sub", inPartition: partition, false), channels: [channel], subscribe: [channel])
            let outsider = Self.name("out", inPartition: partition, false)
            let outside = try await node.connect(outsider)

            var count: Int32? = 4
            await Self.dispatcher(node).handle(.partitionGap(partition: partition, from: 10, to: 20), partitionCount: &count)
            #expect(try await inside.closeCode() == 1012)
            #expect(try await subscriber.closeCode() == 1012)
            try await Task.sleep(for: .milliseconds(300))
            #expect(await outside.pending().isEmpty, "a connection of another partition stays open and is told nothing")
            let later = try await node.produce(HeraldRecord(stream: .user(outsider)), "{}")
            #expect(try await outside.nextMessage().offset == later.offset)
        }
    }

    @Test("a gap in the broadcast stream's partition closes every connection with 1012")
    func gapInTheBroadcastPartitionClosesEveryone() async throws {
        try await GatewayHarness.run { node in
            let partition = Murmur2.partition(forKey: "*", partitionCount: 4)
            let devices = [
                try await node.connect(Self.name("a", inPartition: partition)),
                try await node.connect(Self.name("b", inPartition: partition, false)),
            ]
            var count: Int32? = 4
            await Self.dispatcher(node).handle(.partitionGap(partition: partition, from: 5, to: 9), partitionCount: &count)
            for device in devices { #expect(try await device.closeCode() == 1012) }
        }
    }

    @Test("a changed partition count is counted, reaches the gateway's hook, and moves the misrouting check to the new count")
    func partitionCountChange() async throws {
        try await GatewayHarness.run { node in
            let seen = Inbox<String>()
            var dispatcher = Self.dispatcher(node)
            dispatcher.partitionCountChanged = { from, to in await seen.append("\(from)->\(to)") }
            var count: Int32? = 4
            await dispatcher.handle(.partitionCountChanged(from: 4, to: 6), partitionCount: &count)
            #expect(count == 6)
            let change = try await seen.next(within: .seconds(1))
            #expect(change == "4->6")
            // A key whose partition differs between 4 and 6 partitions: judged by the new count.
            let key = (0...).lazy.map { "moved\($0)" }.first {
                Murmur2.partition(forKey: $0, partitionCount: 4) != Murmur2.partition(forKey: $0, partitionCount: 6)
            }!
            let record = KafkaRecord(
                topic: node.topic, partition: Murmur2.partition(forKey: key, partitionCount: 6), offset: 0, key: Array(key.utf8),
                value: .init(string: "{}"), headers: [], timestamp: 0
            )
            #expect(dispatcher.makeBatch([record], now: 0, partitionCount: count).deliveries.count == 1)
            #expect(dispatcher.makeBatch([record], now: 0, partitionCount: 4).deliveries.isEmpty)
            #expect(dispatcher.counters.misroutedSkipped == 1)
        }
    }
}
