import Foundation
import HeraldCore
@testable import HeraldGateway
import HeraldKafka
import Logging
import NIOCore
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

    @Test("a node whose live consumer falls behind retention closes the partition's devices with 1012, and their resume is recovered:false expired")
    func nodeBehindRetentionTellsItsDevices() async throws {
        // Little prefetch, so that a stalled node stops fetching instead of buffering past retention.
        try await GatewayHarness.run(configure: { $0.hotWindowBytes = 256 * 1024 }, consumer: {
            $0.prefetchKilobytes = 64
            $0.bufferedBatches = 1
            $0.kafka.extraProperties = ["max.partition.fetch.bytes": "1024", "queued.min.messages": "1"]
        }) { node in
            // Not the broadcast stream's partition: a gap there closes every connection.
            let victim = Self.name("victim", inPartition: Murmur2.partition(forKey: "*", partitionCount: 4), false)
            let partition = Murmur2.partition(forKey: victim, partitionCount: 4)
            let filler = Self.name("filler", inPartition: partition)
            let device = try await node.connect(victim)
            let bystander = try await node.connect(Self.name("bystander", inPartition: partition, false))
            var generator = SystemRandomNumberGenerator()
            let records = (0..<160).map { _ in
                KafkaOutgoingRecord(
                    topic: node.topic, key: Array(filler.utf8),
                    value: ByteBuffer(bytes: (0..<(8 * 1024)).flatMap { _ in withUnsafeBytes(of: generator.next()) { Array($0) } })
                )
            }
            // The node's loops busy for a few seconds: its shards cannot deliver, so its dispatcher and
            // then its consumer stop, while 10 MiB go to a partition the mock keeps 5 MiB of.
            for loop in node.group.makeIterator() { loop.execute { Thread.sleep(forTimeInterval: 4) } }
            for result in await node.producer.send(records) { _ = try result.get() }
            #expect(try await device.closeCode(within: .seconds(30)) == 1012, "the device was not told")
            #expect(node.gateway.counters.partitionGaps >= 1)
            let back = try await node.connect(victim, cursor: DeviceCursor(device.welcome).text, epoch: device.welcome.epoch)
            #expect(back.welcome.recovered == false)
            #expect(back.welcome.reason == "expired")
            #expect(await bystander.pending().isEmpty, "a device of another partition is left alone")
        }
    }

    @Test("a log cut short under the node (to before from) closes the partition's connections and reaches the topicChanged hook; a retention gap does not")
    func logCutShortIsATopicChange() async throws {
        try await GatewayHarness.run { node in
            let seen = Inbox<String>()
            var dispatcher = Self.dispatcher(node)
            dispatcher.topicChanged = { event in await seen.append("\(event)") }
            let partition = (Murmur2.partition(forKey: "*", partitionCount: 4) + 1) % 4
            let device = try await node.connect(Self.name("cut", inPartition: partition))
            var count: Int32? = 4
            await dispatcher.handle(.partitionGap(partition: partition, from: 3, to: 9), partitionCount: &count)
            await dispatcher.handle(.partitionGap(partition: partition, from: 40, to: 0), partitionCount: &count)
            #expect(try await device.closeCode() == 1012)
            let change = try await seen.next(within: .seconds(1))
            #expect(change == "\(KafkaLiveEvent.partitionGap(partition: partition, from: 40, to: 0))")
            #expect(await seen.drain().isEmpty)
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

    @Test("a changed partition count is counted, reaches the gateway's topicChanged hook, and moves the misrouting check to the new count")
    func partitionCountChange() async throws {
        try await GatewayHarness.run { node in
            let seen = Inbox<String>()
            var dispatcher = Self.dispatcher(node)
            dispatcher.topicChanged = { event in await seen.append("\(event)") }
            var count: Int32? = 4
            await dispatcher.handle(.partitionCountChanged(from: 4, to: 6), partitionCount: &count)
            #expect(count == 6)
            let change = try await seen.next(within: .seconds(1))
            #expect(change == "\(KafkaLiveEvent.partitionCountChanged(from: 4, to: 6))")
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
