import Benchmark
import HeraldCore
@_spi(Benchmarks) import HeraldGateway
import HeraldKafka
import NIOCore
import NIOEmbedded

/// Drops every write: the fan-out benchmark measures the shard, not a peer.
final class DiscardingHandler: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = ByteBuffer
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        promise?.succeed(())
    }
    func flush(context: ChannelHandlerContext) {}
}

let payload = ByteBuffer(string: #"{"title":"Your order shipped","order":"A-1042","eta":"2026-12-01T10:00:00Z","items":3}"#)

func records(_ count: Int) -> [KafkaRecord] {
    (0..<count).map { index in
        let stream: HeraldStream = index % 10 == 0 ? .broadcast : index % 3 == 0 ? .channel("news") : .user("user-\(index % 1000)")
        let envelope = HeraldRecord(stream: stream, id: "id-\(index)")
        return KafkaRecord(
            topic: "herald.events", partition: Int32(index % 12), offset: Int64(index), key: Array(envelope.key.utf8), value: payload,
            headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }, timestamp: 0
        )
    }
}

/// Idle connections on one event loop, each dropping what it is written.
func discardingChannels(_ count: Int, on loop: NIOAsyncTestingEventLoop) async throws -> [any Channel] {
    var channels: [any Channel] = []
    for _ in 0..<count {
        let channel = NIOAsyncTestingChannel(loop: loop)
        try await channel.pipeline.addHandler(DiscardingHandler())
        channels.append(channel)
    }
    return channels
}

/// The committed thresholds are the p90 figures in `Thresholds/` (written by `thresholds update`);
/// `swift package benchmark thresholds check` fails (exit 2) when a run's p90 is outside these
/// tolerances of them. Allocation counts are deterministic, so they are checked exactly (a benchmark
/// whose count varies between runs says by how much); time only by ±50%, because the machine is shared.
/// A run better than the tolerance fails too (exit 4): the thresholds are then updated and committed.
func tolerances(mallocs: Int = 0) -> [BenchmarkMetric: BenchmarkThresholds] {
    [
        .wallClock: .init(relative: [.p90: 50]),
        .mallocCountTotal: .init(absolute: [.p90: mallocs]),
    ]
}

/// A shard's batch on the testing event loop allocates 24 or 25 times between runs (measured): the one
/// benchmark family whose count is not fixed.
func fanOutTolerances() -> [BenchmarkMetric: BenchmarkThresholds] { tolerances(mallocs: 2) }

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal], maxDuration: .seconds(2), thresholds: tolerances()
    )

    Benchmark("frame encoding: one message frame (JSON payload)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(ServerMessage.message(stream: "u", offset: 1842, id: "5f0c-1", payload: payload, contentType: nil))
        }
    }

    Benchmark("murmur2 partition of a user id") { benchmark in
        for index in benchmark.scaledIterations {
            blackHole(Murmur2.partition(forKey: "user-\(index % 1000)", partitionCount: 12))
        }
    }

    Benchmark("cursor parsing: u, *, two channels") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try? ResumeCursor.parse("u:1842,*:78,c:news:13,c:sports:7"))
        }
    }

    let batch = records(1_000)
    Benchmark("dispatcher routing: decode, route and encode a batch of 1,000 records", configuration: .init(scalingFactor: .one)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(DeliveryBenchmarks.dispatch(batch, now: 0))
        }
    }

    for connections in [1_000, 10_000] {
        Benchmark("fan-out: one broadcast to \(connections) connections", configuration: .init(scalingFactor: .one, thresholds: fanOutTolerances())) { benchmark in
            let loop = NIOAsyncTestingEventLoop()
            let channels = try await discardingChannels(connections, on: loop)
            let fanOut = await DeliveryBenchmarks.FanOut(eventLoop: loop, channels: channels)
            let frame = ServerMessage.message(stream: "*", offset: 0, id: nil, payload: payload, contentType: nil)
            var offset: Int64 = 0
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                offset += 1
                await fanOut.broadcast(frame, offset: offset)
            }
            benchmark.stopMeasurement()
            await loop.shutdownGracefully()
        }
    }

    Benchmark(
        "fan-out: a batch of 1,000 user records, each to a user with 10 connections",
        configuration: .init(scalingFactor: .one, thresholds: fanOutTolerances())
    ) { benchmark in
        let loop = NIOAsyncTestingEventLoop()
        let channels = try await discardingChannels(10_000, on: loop)
        let fanOut = await DeliveryBenchmarks.FanOut(eventLoop: loop, channels: channels, connectionsPerUser: 10)
        let frame = ServerMessage.message(stream: "u", offset: 0, id: nil, payload: payload, contentType: nil)
        var offset: Int64 = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            offset = await fanOut.deliverOneRecordToEachUser(frame, firstOffset: offset)
        }
        benchmark.stopMeasurement()
        await loop.shutdownGracefully()
    }
}
