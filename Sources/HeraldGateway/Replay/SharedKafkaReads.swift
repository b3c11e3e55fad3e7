import HeraldCore
import HeraldKafka

/// Resumes that reach Kafka, coalesced per partition: while one read of a partition runs, the
/// requests that arrive for it wait and are then served together by the next read, one pass over the
/// union of their ranges filtered to their keys. A reconnect storm of thousands of devices thus costs
/// a few reads per partition, not thousands of scans.
///
/// Memory stays bounded: a read serves at most `maxRequestsPerRead` requests and keeps, per key, only
/// the last `limit + 1` records (more than `limit` is `too-many` anyway).
actor SharedKafkaReads {
    enum Failure: Error, Equatable {
        case recovery(RecoveryFailure)
        /// Kafka did not answer: the client should retry later with the same cursor.
        case unavailable(String)
    }

    private struct Request {
        var key: [UInt8]
        var after: Int64
        var through: Int64
        var continuation: CheckedContinuation<Result<[KafkaRecord], Failure>, Never>
    }

    private let reader: KafkaReplayReader
    private let limit: Int
    private let maxRequestsPerRead: Int
    private var pending: [Int32: [Request]] = [:]
    private var reading: Set<Int32> = []
    /// Called once per Kafka read, with how many requests it served.
    private let onRead: @Sendable (_ requests: Int) -> Void
    private let onScanned: @Sendable (_ records: Int) -> Void
    private let onCancelledRead: @Sendable () -> Void

    init(
        reader: KafkaReplayReader, limit: Int, maxRequestsPerRead: Int = 1_024, onRead: @escaping @Sendable (Int) -> Void = { _ in },
        onScanned: @escaping @Sendable (Int) -> Void = { _ in }, onCancelledRead: @escaping @Sendable () -> Void = {}
    ) {
        self.onRead = onRead
        self.onScanned = onScanned
        self.onCancelledRead = onCancelledRead
        self.reader = reader
        self.limit = limit
        self.maxRequestsPerRead = maxRequestsPerRead
    }

    /// The records with `key` in `partition` at offsets `(after, through]`, in order.
    func records(partition: Int32, key: [UInt8], after: Int64, through: Int64) async -> Result<[KafkaRecord], Failure> {
        await withCheckedContinuation { continuation in
            pending[partition, default: []].append(Request(key: key, after: after, through: through, continuation: continuation))
            if reading.insert(partition).inserted {
                Task { await self.serve(partition) }
            }
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

    private func serve(_ partition: Int32) async {
        while let waiting = pending[partition], !waiting.isEmpty {
            let batch = Array(waiting.prefix(maxRequestsPerRead))
            pending[partition] = Array(waiting.dropFirst(maxRequestsPerRead))
            await read(partition, batch)
        }
        pending[partition] = nil
        reading.remove(partition)
    }

    private func read(_ partition: Int32, _ batch: [Request]) async {
        onRead(batch.count)
        let watermarks: (low: Int64, high: Int64)
        do {
            watermarks = try await reader.watermarks(partition: partition)
        } catch {
            return batch.forEach { $0.continuation.resume(returning: .failure(.unavailable(error.message))) }
        }
        var live: [Request] = []
        for request in batch {
            if request.after + 1 < watermarks.low {
                request.continuation.resume(returning: .failure(.recovery(.expired)))
            } else if request.after >= watermarks.high {
                request.continuation.resume(returning: .failure(.recovery(.ahead)))
            } else {
                live.append(request)
            }
        }
        guard !live.isEmpty else { return }
        let from = live.map { $0.after + 1 }.min()!
        let until = live.map { $0.through + 1 }.max()!
        do {
            let read = try await reader.read(
                partition: partition, from: from, until: until, keys: Set(live.map(\.key)), retainPerKey: limit + 1, progress: onScanned
            )
            for request in live {
                if let dropped = read.dropped[request.key], dropped > request.after {
                    request.continuation.resume(returning: .failure(.recovery(.tooMany)))
                    continue
                }
                let records = (read.records[request.key] ?? []).filter { $0.offset > request.after && $0.offset <= request.through }
                request.continuation.resume(returning: .success(records))
            }
        } catch {
            let failure: Failure = error.code == .offsetExpired ? .recovery(.expired) : .unavailable(error.message)
            live.forEach { $0.continuation.resume(returning: .failure(failure)) }
        }
    }
}
