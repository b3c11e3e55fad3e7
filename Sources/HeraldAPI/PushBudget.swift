import Synchronization

/// What one API key may push: records per request (and the bytes they make together), and records
/// per second, as a token bucket per key that holds one second's worth. A request that does not fit
/// the bucket is refused whole (429 with the seconds until it would fit), never half produced.
final class PushBudget: Sendable {
    private struct Bucket {
        var tokens: Double
        var refilled: ContinuousClock.Instant
    }

    private let limits: PushLimits
    private let buckets: Mutex<[Int: Bucket]>

    init(limits: PushLimits) {
        self.limits = limits
        buckets = Mutex([:])
    }

    /// Checks a request's records against the per-request caps and takes them from the key's budget.
    func admit(_ requests: [PushRequest], client: Int) throws(APIError) {
        var records = 0
        var bytes = 0
        for request in requests {
            records += request.targetCount
            bytes += request.targetCount * max(request.payload.count, 1)
        }
        guard records <= limits.maxRecordsPerRequest else {
            throw APIError(.tooManyRecords, "the request makes \(records) records (one per target); the limit is \(limits.maxRecordsPerRequest) per request: split it")
        }
        guard bytes <= limits.maxRecordBytesPerRequest else {
            throw APIError(.tooManyRecords, "the request makes \(bytes) bytes of records (payload × targets); the limit is \(limits.maxRecordBytesPerRequest) per request: split it")
        }
        let rate = limits.recordsPerSecondPerKey
        guard rate > 0 else { return }
        let now = ContinuousClock.now
        let wait: Double? = buckets.withLock { buckets in
            var bucket = buckets[client] ?? Bucket(tokens: rate, refilled: now)
            let elapsed = Double((now - bucket.refilled).components.attoseconds) / 1e18 + Double((now - bucket.refilled).components.seconds)
            bucket.tokens = min(rate, bucket.tokens + elapsed * rate)
            bucket.refilled = now
            // A request larger than one second's budget is let through on a full bucket, and the debt
            // delays the next ones.
            let needed = min(Double(records), rate)
            defer { buckets[client] = bucket }
            guard bucket.tokens >= needed else { return (needed - bucket.tokens) / rate }
            bucket.tokens -= Double(records)
            return nil
        }
        if let wait {
            let seconds = max(1, Int(wait.rounded(.up)))
            throw APIError(
                .rateLimited,
                "this API key may push \(Int(rate)) records per second; this request (\(records) records) would exceed it: retry after \(seconds) s",
                retryAfter: seconds
            )
        }
    }
}
