import HeraldGateway
import HeraldKafka
import ServiceLifecycle

/// Reads the cursors topic into the node's stored cursors for as long as the node runs: until its
/// graceful shutdown, or until the consumer ends (then it waits for the shutdown, as a service that
/// ended out of order would fail the group).
struct CursorFeed: Service {
    let cursors: DeviceCursors
    let consumer: KafkaLiveConsumer

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await cursors.follow(consumer.batches) }
            group.addTask { try? await gracefulShutdown() }
            // The feed's end alone is not the node's: wait for the shutdown.
            await group.next()
            if !Task.isCancelled { try? await gracefulShutdown() }
            group.cancelAll()
        }
    }
}
