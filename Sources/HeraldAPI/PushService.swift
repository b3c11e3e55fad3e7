import Foundation
public import HeraldCore
public import HeraldKafka
public import Logging
import NIOCore

/// Where one produced record landed.
public struct PushResult: Sendable, Equatable, Encodable {
    public var stream: String
    public var key: String
    public var partition: Int32
    public var offset: Int64
}

/// The answer to one push: its id and a result per target stream.
public struct PushOutcome: Sendable, Equatable, Encodable {
    public var id: String
    public var results: [PushResult]
}

/// Turns pushes into records on the events topic and answers only once Kafka acknowledged every one.
public struct PushService: Sendable {
    let producer: KafkaProducer
    let topic: String
    let idempotency = IdempotencyCache()
    /// Where Kafka's own reasons go: an API caller is told only that Kafka did not acknowledge.
    let logger: Logger
    /// What this node acknowledged and has not delivered yet: past its bound, pushes wait (503).
    let backlog: DeliveryBacklog?
    /// Where this node's live path saw the first copy of a message id in a stream (partition and
    /// offset), if it remembers it: a push retried through this node after its first try went
    /// through another is answered with the first answer and produces nothing.
    public typealias SeenCopies = @Sendable (_ stream: HeraldStream, _ id: String) -> KafkaDelivery?
    let seenCopies: SeenCopies?
    /// Per API key (by index), the `herald-id-scope` of its pushes: a digest of the key, the same on
    /// every node, so a retry through another node is recognised and another key's id is not.
    let idScopes: [String]

    public init(
        producer: KafkaProducer, topic: String, backlog: DeliveryBacklog? = nil, logger: Logger = Logger(label: "herald.api"), seenCopies: SeenCopies? = nil,
        apiKeys: [String] = []
    ) {
        self.producer = producer
        self.topic = topic
        self.backlog = backlog
        self.logger = logger
        self.seenCopies = seenCopies
        // 32 bits of murmur2 distinguish a deployment's few keys; they do not reveal a random key.
        self.idScopes = apiKeys.map { String(UInt32(bitPattern: Murmur2.hash(Array($0.utf8))), radix: 16) }
    }

    func idScope(client: Int) -> String? {
        idScopes.indices.contains(client) ? idScopes[client] : nil
    }

    /// The first answer to a push with `id`, rebuilt from the copies the node saw, when it saw one
    /// in every target stream (else the push is produced, and the nodes drop the repeated copies).
    func answerFromSeenCopies(_ request: PushRequest, id: String, client: Int) -> PushOutcome? {
        guard let seenCopies else { return nil }
        var envelope = HeraldRecord(stream: .broadcast, id: id)
        envelope.idScope = idScope(client: client)
        guard let key = envelope.deduplicationKey else { return nil }
        var results: [PushResult] = []
        for stream in request.streams {
            guard let seen = seenCopies(stream, key) else { return nil }
            results.append(PushResult(stream: stream.wireName, key: stream.kafkaKey, partition: seen.partition, offset: seen.offset))
        }
        return PushOutcome(id: id, results: results)
    }

    static func nowMillis() -> Int64 { Int64((Date().timeIntervalSince1970 * 1_000).rounded()) }

    /// The 503 a caller sees when Kafka did not acknowledge: what happened and what to do, without
    /// librdkafka's text, the topic or the brokers (those go to the log).
    func unacknowledged(_ what: String, _ error: KafkaError) -> APIError {
        logger.warning("Kafka did not acknowledge a \(what)", metadata: ["kafka.error": "\(error)"])
        return APIError(
            .kafkaUnavailable, "Kafka did not acknowledge the \(what), so it was not sent; retry after Retry-After", retryAfter: 1
        )
    }

    /// Produces one push; a repeated id (same API key, same push) within five minutes returns the
    /// first answer.
    public func push(_ request: PushRequest, client: Int = 0) async throws(APIError) -> PushOutcome {
        try await push([request], client: client, batch: false)[0]
    }

    /// Produces pushes together (a batch); outcomes in order. All ids are claimed at once: an id used
    /// for a different push is 409, one whose first push is still in flight is 409 with Retry-After,
    /// and then nothing is produced. If any record is not acknowledged the whole call fails with 503,
    /// and no id of this call is remembered, so a retry is safe. Ids must be distinct (the API checks).
    public func push(_ requests: [PushRequest], client: Int = 0, batch: Bool = true) async throws(APIError) -> [PushOutcome] {
        if let backlog, backlog.isBehind(now: Self.nowMillis()) {
            throw APIError(
                .deliveryBehind,
                "this node's deliveries are more than \(backlog.maxAgeMillis) ms behind the pushes it accepted; nothing was sent: retry after Retry-After",
                retryAfter: 1
            )
        }
        let keyed = requests.enumerated().compactMap { index, request in
            request.id.map { (index: index, key: IdempotencyCache.Key(client: client, id: $0), digest: Self.digest(request)) }
        }
        let claims: [IdempotencyCache.Claim]
        do {
            claims = try idempotency.claim(keyed)
        } catch {
            let path = { (index: Int) in batch ? "messages[\(index)].id" : "id" }
            switch error {
            case .conflict(let index):
                throw APIError(.idConflict, "\(path(index)): this id was used for a different push (other targets, data or options) with this API key in the last 5 minutes; give this push a new id")
            case .inFlight(let index):
                throw APIError(.idInFlight, "\(path(index)): the first push with this id is still waiting for Kafka; retry after it answers", retryAfter: 1)
            }
        }

        var outcomes = [PushOutcome?](repeating: nil, count: requests.count)
        var owned: [(index: Int, id: String)] = []
        var seen: [(key: IdempotencyCache.Key, outcome: PushOutcome?)] = []
        var claimed = zip(keyed, claims).makeIterator()
        var nextClaim = claimed.next()
        for (index, request) in requests.enumerated() {
            guard let id = request.id else {
                owned.append((index, UUID().uuidString.lowercased()))
                continue
            }
            guard let (entry, claim) = nextClaim, entry.index == index else { preconditionFailure("a claim per id, in order") }
            nextClaim = claimed.next()
            switch claim {
            case .answered(let outcome): outcomes[index] = outcome
            case .owner:
                if let outcome = answerFromSeenCopies(request, id: id, client: client) {
                    outcomes[index] = outcome
                    seen.append((IdempotencyCache.Key(client: client, id: id), outcome))
                } else {
                    owned.append((index, id))
                }
            }
        }
        idempotency.finish(seen)

        let (records, slots) = self.records(for: owned.map { (requests[$0.index], $0.id, $0.index) }, client: client)
        let deliveries = await producer.send(records)
        var failure: KafkaError? = nil
        var results: [Int: [PushResult]] = [:]
        for (slot, delivery) in zip(slots, deliveries) {
            switch delivery {
            case .success(let landed):
                results[slot.index, default: []].append(PushResult(
                    stream: slot.stream.wireName, key: slot.stream.kafkaKey, partition: landed.partition, offset: landed.offset
                ))
            case .failure(let error):
                failure = failure ?? error
            }
        }
        if let failure {
            idempotency.finish(owned.compactMap { requests[$0.index].id == nil ? nil : (IdempotencyCache.Key(client: client, id: $0.id), nil) })
            throw unacknowledged("push", failure)
        }
        backlog?.acknowledged(
            deliveries.compactMap { delivery in (try? delivery.get()).map { (partition: $0.partition, offset: $0.offset) } }, now: Self.nowMillis()
        )
        var finished: [(key: IdempotencyCache.Key, outcome: PushOutcome?)] = []
        for (index, id) in owned {
            let outcome = PushOutcome(id: id, results: results[index] ?? [])
            outcomes[index] = outcome
            if requests[index].id != nil { finished.append((IdempotencyCache.Key(client: client, id: id), outcome)) }
        }
        idempotency.finish(finished)
        return outcomes.map { $0! }
    }

    /// One record per target stream of each push. A push's payload is copied into one buffer that all
    /// its records share (a ByteBuffer is a reference to its storage), never once per target.
    func records(for pushes: [(request: PushRequest, id: String, index: Int)], client: Int = -1) -> ([KafkaOutgoingRecord], [(index: Int, stream: HeraldStream)]) {
        let scope = idScope(client: client)
        var records: [KafkaOutgoingRecord] = []
        var slots: [(index: Int, stream: HeraldStream)] = []
        records.reserveCapacity(pushes.reduce(0) { $0 + $1.request.targetCount })
        for (request, id, index) in pushes {
            let value = ByteBuffer(bytes: request.payload)
            for stream in request.streams {
                var envelope = HeraldRecord(
                    stream: stream, id: id, contentType: request.contentType, exclude: request.exclude, expiresAt: request.expiresAt
                )
                envelope.idScope = scope
                records.append(KafkaOutgoingRecord(
                    topic: topic, key: Array(envelope.key.utf8), value: value,
                    headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
                ))
                slots.append((index, stream))
            }
        }
        return (records, slots)
    }

    /// 128 bits over everything the push produces, from two differently seeded hashes. Hasher's seed
    /// is random per process, which is enough: the cache lives in this process only.
    static func digest(_ request: PushRequest) -> IdempotencyCache.Digest {
        var high = Hasher()
        high.combine(0x68_65_72_61)
        high.combine(request)
        var low = Hasher()
        low.combine(0x6c_64_21)
        low.combine(request)
        low.combine(request.payload.count)
        return IdempotencyCache.Digest(high: high.finalize(), low: low.finalize())
    }

    /// Produces the control record that closes every connection of `user` on every node (4003) and,
    /// with `revokeBefore` (Unix ms), makes every node refuse the user's tokens issued before it.
    public func disconnect(user: String, revokeBefore: Int64? = nil) async throws(APIError) -> PushResult {
        let envelope = HeraldRecord(stream: .user(user), control: .disconnect, revokeBefore: revokeBefore)
        let record = KafkaOutgoingRecord(
            topic: topic, key: Array(envelope.key.utf8), value: ByteBuffer(string: #"{"reason":"disconnected by the push API"}"#),
            headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
        )
        do {
            let landed = try await producer.send(record)
            return PushResult(stream: "u", key: user, partition: landed.partition, offset: landed.offset)
        } catch {
            throw unacknowledged("disconnect", error)
        }
    }
}
