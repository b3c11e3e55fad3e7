import HeraldCore
import HeraldKafka
import NIOCore
import Synchronization

/// Resumes that reach Kafka, coalesced per partition: while one read of a partition runs, the
/// requests that arrive for it wait and are then served together by the next read, one pass over the
/// union of their ranges filtered to their keys. A reconnect storm of thousands of devices thus costs
/// a few reads per partition, not thousands of scans.
///
/// Reads of different partitions run at once, as many as the reader has handles; a read stops at its
/// next batch once no request it serves is still waited for (the resume's task was cancelled: the
/// connection closed, or its replay deadline passed), so an old cursor whose client gave up holds
/// no reader.
///
/// Each record a read finds is decoded and its `message` frame encoded once, and every resume it
/// serves gets that same frame (a `ByteBuffer` shares its storage), as live delivery shares one frame
/// among a stream's sockets.
///
/// Memory stays bounded: a read serves at most `maxRequestsPerRead` requests and keeps, per key, only
/// the last `limit + 1` records (more than `limit` is `too-many` anyway).
final class SharedKafkaReads: Sendable {
    enum Failure: Error, Equatable {
        case recovery(RecoveryFailure)
        /// Kafka did not answer: the client should retry later with the same cursor.
        case unavailable(String)
        /// The request's task was cancelled: nobody waits for the answer.
        case cancelled
    }

    private struct Request {
        var id: UInt64
        var key: [UInt8]
        var after: Int64
        var through: Int64
        var continuation: CheckedContinuation<Result<[Delivery], Failure>, Never>
    }

    /// What a read needs to know of a request; the continuation stays in the state, so that whoever
    /// takes it out (the read's answer or a cancellation) is the one who resumes it.
    private struct Wanted: Sendable {
        var id: UInt64
        var key: [UInt8]
        var after: Int64
        var through: Int64
    }

    private struct State {
        var nextID: UInt64 = 0
        /// Requests waiting for their partition's next read.
        var pending: [Int32: [Request]] = [:]
        /// Per partition with a read under way (or about to start), the requests it serves that are
        /// still waited for; absent when the partition is idle.
        var serving: [Int32: [UInt64: Request]] = [:]
    }

    private let reader: KafkaReplayReader
    private let limit: Int
    private let maxRequestsPerRead: Int
    private let state = Mutex(State())
    /// Called once per Kafka read, with how many requests it served.
    private let onRead: @Sendable (_ requests: Int) -> Void
    /// Called per batch a read takes from Kafka, with its size.
    private let onScanned: @Sendable (_ records: Int) -> Void
    /// Called when a read stopped because nobody waited for it any more.
    private let onCancelledRead: @Sendable () -> Void
    /// Expiry is judged when a read decodes its records.
    private let clock: WallClock

    init(
        reader: KafkaReplayReader, limit: Int, maxRequestsPerRead: Int = 1_024, onRead: @escaping @Sendable (Int) -> Void = { _ in },
        onScanned: @escaping @Sendable (Int) -> Void = { _ in }, onCancelledRead: @escaping @Sendable () -> Void = {},
        clock: WallClock = .system
    ) {
        self.clock = clock
        self.onRead = onRead
        self.onScanned = onScanned
        self.onCancelledRead = onCancelledRead
        self.reader = reader
        self.limit = limit
        self.maxRequestsPerRead = maxRequestsPerRead
    }

    /// The Herald records with `key` in `partition` at offsets `(after, through]`, in order, decoded
    /// (malformed and expired ones left out); `.cancelled` at once when the calling task is cancelled.
    func records(partition: Int32, key: [UInt8], after: Int64, through: Int64) async -> Result<[Delivery], Failure> {
        let id = state.withLock { state in
            state.nextID &+= 1
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let start = state.withLock { state -> Bool? in
                    // Cancelled before it was queued: the cancellation handler found nothing to take.
                    guard !Task.isCancelled else { return nil }
                    state.pending[partition, default: []].append(
                        Request(id: id, key: key, after: after, through: through, continuation: continuation)
                    )
                    guard state.serving[partition] == nil else { return false }
                    state.serving[partition] = [:]
                    return true
                }
                switch start {
                case nil: continuation.resume(returning: .failure(.cancelled))
                case true?: Task { await self.serve(partition) }
                case false?: break
                }
            }
        } onCancel: {
            cancel(id, partition: partition)
        }
    }

    /// The partition's high watermark (the next offset Kafka will write).
    func end(of partition: Int32) async -> Result<Int64, Failure> {
        do {
            return .success(try await reader.watermarks(partition: partition).high)
        } catch {
            return .failure(.unavailable(error.message))
        }
    }

    private func cancel(_ id: UInt64, partition: Int32) {
        let request = state.withLock { state -> Request? in
            if let index = state.pending[partition]?.firstIndex(where: { $0.id == id }) {
                return state.pending[partition]?.remove(at: index)
            }
            return state.serving[partition]?.removeValue(forKey: id)
        }
        request?.continuation.resume(returning: .failure(.cancelled))
    }

    private func serve(_ partition: Int32) async {
        while let batch = nextBatch(partition) {
            await read(partition, batch)
        }
    }

    /// Moves the next requests of `partition` from waiting to being served; nil (and the partition
    /// idle) when none wait.
    private func nextBatch(_ partition: Int32) -> [Wanted]? {
        state.withLock { state in
            guard let waiting = state.pending[partition], !waiting.isEmpty else {
                state.pending[partition] = nil
                state.serving[partition] = nil
                return nil
            }
            let batch = waiting.prefix(maxRequestsPerRead)
            state.pending[partition] = Array(waiting.dropFirst(maxRequestsPerRead))
            state.serving[partition] = Dictionary(uniqueKeysWithValues: batch.map { ($0.id, $0) })
            return batch.map { Wanted(id: $0.id, key: $0.key, after: $0.after, through: $0.through) }
        }
    }

    /// Answers a request the current read of `partition` serves, unless it was cancelled meanwhile.
    private func answer(_ id: UInt64, of partition: Int32, _ result: Result<[Delivery], Failure>) {
        let request = state.withLock { $0.serving[partition]?.removeValue(forKey: id) }
        request?.continuation.resume(returning: result)
    }

    /// Whether a request the current read of `partition` serves is still waited for.
    private func isWanted(_ partition: Int32) -> Bool {
        state.withLock { !($0.serving[partition]?.isEmpty ?? true) }
    }

    private func read(_ partition: Int32, _ batch: [Wanted]) async {
        onRead(batch.count)
        let watermarks: (low: Int64, high: Int64)
        do {
            watermarks = try await reader.watermarks(partition: partition)
        } catch {
            return batch.forEach { answer($0.id, of: partition, .failure(.unavailable(error.message))) }
        }
        var live: [Wanted] = []
        for request in batch {
            if request.after + 1 < watermarks.low {
                answer(request.id, of: partition, .failure(.recovery(.expired)))
            } else if request.after >= watermarks.high {
                answer(request.id, of: partition, .failure(.recovery(.ahead)))
            } else {
                live.append(request)
            }
        }
        guard !live.isEmpty else { return }
        let from = live.map { $0.after + 1 }.min()!
        let until = live.map { $0.through + 1 }.max()!
        do {
            let read = try await reader.read(
                partition: partition, from: from, until: until, keys: Set(live.map(\.key)), retainPerKey: limit + 1,
                isWanted: { [self] in isWanted(partition) }, progress: onScanned
            )
            let now = clock.nowMillis()
            let allocator = ByteBufferAllocator()
            let decoded = read.records.mapValues { records in
                records.compactMap { record in try? Delivery(record, now: now, allocator: allocator) }
            }
            for request in live {
                if let dropped = read.dropped[request.key], dropped > request.after {
                    answer(request.id, of: partition, .failure(.recovery(.tooMany)))
                    continue
                }
                let deliveries = (decoded[request.key] ?? []).filter { $0.offset > request.after && $0.offset <= request.through }
                answer(request.id, of: partition, .success(deliveries))
            }
        } catch {
            let failure: Failure = switch error.code {
            case .cancelled: .cancelled
            case .offsetExpired: .recovery(.expired)
            // The read ran out of its own time: more than this node replays, like the replay deadline.
            case .tooMany: .recovery(.tooMany)
            default: .unavailable(error.message)
            }
            if failure == .cancelled { onCancelledRead() }
            live.forEach { answer($0.id, of: partition, .failure(failure)) }
        }
    }
}
