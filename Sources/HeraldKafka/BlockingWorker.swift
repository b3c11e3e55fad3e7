import Dispatch
import Foundation
import Synchronization

/// A thread of its own for librdkafka's blocking calls, fed jobs in order.
///
/// librdkafka blocks (metadata queries, consume with a timeout, flush). Running that on an event
/// loop stalls every socket on it; running it on the cooperative pool starves every task on two cores.
/// So each blocking role gets one real thread, and async callers wait on a continuation.
final class BlockingWorker: Sendable {
    private struct State {
        var jobs: [@Sendable () -> Void] = []
        var stopped = false
    }

    private let state = Mutex(State())
    private let wakeup = DispatchSemaphore(value: 0)

    init(name: String) {
        // The thread keeps the worker alive until `stop()` lets it end.
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.start()
    }

    private func loop() {
        while true {
            wakeup.wait()
            let (next, last) = state.withLock { state in
                let next = state.jobs.isEmpty ? nil : state.jobs.removeFirst()
                return (next, state.stopped && state.jobs.isEmpty)
            }
            next?()
            if last { return }
        }
    }

    /// Runs `body` on the worker's thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws(KafkaError) -> T) async throws(KafkaError) -> T {
        let result: Result<T, KafkaError> = await withCheckedContinuation { continuation in
            let accepted = state.withLock { state in
                guard !state.stopped else { return false }
                state.jobs.append {
                    do throws(KafkaError) {
                        continuation.resume(returning: .success(try body()))
                    } catch {
                        continuation.resume(returning: .failure(error))
                    }
                }
                return true
            }
            if accepted {
                wakeup.signal()
            } else {
                continuation.resume(returning: .failure(KafkaError(.shutdown, "the client is shut down")))
            }
        }
        return try result.get()
    }

    /// Lets queued jobs finish, then ends the thread; returns once the last job has run.
    func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let enqueued = state.withLock { state in
                guard !state.stopped else { return false }
                state.stopped = true
                state.jobs.append { continuation.resume() }
                return true
            }
            if enqueued {
                wakeup.signal()
            } else {
                continuation.resume()
            }
        }
    }
}
