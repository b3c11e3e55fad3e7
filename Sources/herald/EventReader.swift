import HeraldCore
import HeraldKafka
import Logging
import ServiceLifecycle

/// Reads what the live consumer hands over and accounts for it: records by stream kind, and records
/// that are not Herald messages (named in the log, with the producer's mistake), until the WebSocket
/// dispatcher takes this place.
struct EventReader: Service {
    let consumer: KafkaLiveConsumer
    let logger: Logger

    func run() async throws {
        var counts: [HeraldStreamKind: Int] = [:]
        var malformed = 0
        var lastReport = ContinuousClock.now
        for await batch in consumer.batches.cancelOnGracefulShutdown() {
            for record in batch {
                do {
                    let envelope = try HeraldRecord.decode(
                        key: record.key,
                        headers: record.headers.map { HeraldHeader(name: $0.name, value: $0.value ?? []) }
                    )
                    counts[envelope.stream.kind, default: 0] += 1
                    logger.trace(
                        "event",
                        metadata: ["stream": "\(envelope.stream.wireName)", "partition": "\(record.partition)", "offset": "\(record.offset)"]
                    )
                } catch {
                    malformed += 1
                    logger.warning(
                        "record is not a Herald message; skipped",
                        metadata: ["partition": "\(record.partition)", "offset": "\(record.offset)", "error": "\(error)"]
                    )
                }
            }
            if ContinuousClock.now - lastReport >= .seconds(10) {
                lastReport = ContinuousClock.now
                logger.info(
                    "events read",
                    metadata: [
                        "user": "\(counts[.user, default: 0])", "channel": "\(counts[.channel, default: 0])",
                        "broadcast": "\(counts[.broadcast, default: 0])", "malformed": "\(malformed)",
                    ]
                )
            }
        }
    }
}
