import HeraldGateway
import HeraldKafka
import Metrics
import Prometheus
import Synchronization

/// The node's Prometheus registry: swift-metrics is bootstrapped onto it once, and each scrape
/// refreshes what is read rather than counted (gauges from the gateway, the producer's failures)
/// before rendering it with the process metrics.
public final class NodeMetrics: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let producerErrors: Metrics.Counter
    private let producerErrorsSeen = Mutex(0)
    private let constantText: [UInt8]

    /// Bootstraps swift-metrics; call once per process, before the gateway and the API create their
    /// metrics. `constantText` is appended to every scrape as it is (the build's info gauge).
    public init(constantText: String = "") {
        self.constantText = Array(constantText.utf8)
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Delivery latency is milliseconds on loopback and seconds under a storm.
        factory.durationHistogramBuckets["herald_delivery_latency_seconds"] = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2_500), .seconds(5), .seconds(10),
        ]
        factory.durationHistogramBuckets["herald_push_duration_seconds"] = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2_500), .seconds(5),
        ]
        MetricsSystem.bootstrap(factory)
        self.registry = registry
        // Created after the bootstrap: a metric binds to the factory in place when it is created.
        producerErrors = Metrics.Counter(label: "herald_kafka_producer_errors_total")
    }

    func scrape(gateway: Gateway, producer: KafkaProducer) -> [UInt8] {
        gateway.updateMetrics()
        let failed = producer.failedCount
        let delta = producerErrorsSeen.withLock { seen in
            defer { seen = failed }
            return failed - seen
        }
        if delta > 0 { producerErrors.increment(by: delta) }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 * 1024)
        registry.emit(into: &buffer)
        buffer.append(contentsOf: Array(ProcessMetrics.text().utf8))
        buffer.append(contentsOf: constantText)
        return buffer
    }
}
