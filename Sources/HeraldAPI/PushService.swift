import Foundation
import HeraldCore
public import HeraldKafka
import NIOCore

/// Where one produced record landed.
public struct PushResult: Sendable, Equatable {
    public var stream: String
    public var key: String
    public var partition: Int32
    public var offset: Int64
}

/// The answer to one push: its id and a result per target stream.
public struct PushOutcome: Sendable, Equatable {
    public var id: String
    public var results: [PushResult]

    var json: String {
        let results = results.map {
            #"{"stream":\#(JSONText.string($0.stream)),"key":\#(JSONText.string($0.key)),"partition":\#($0.partition),"offset":\#($0.offset)}"#
        }
        return #"{"id":\#(JSONText.string(id)),"results":[\#(results.joined(separator: ","))]}"#
    }
}

/// Turns pushes into records on the events topic and answers only once Kafka acknowledged every one.
public struct PushService: Sendable {
    let producer: KafkaProducer
    let topic: String
    let idempotency = IdempotencyCache()

    public init(producer: KafkaProducer, topic: String) {
        self.producer = producer
        self.topic = topic
    }

    /// Produces one push; a repeated id within five minutes returns the first answer.
    public func push(_ request: PushRequest) async throws(APIError) -> PushOutcome {
        try await push([request])[0]
    }

    /// Produces pushes together (a batch); outcomes in order. If any record is not acknowledged the
    /// whole call fails with 503, and no id of this call is remembered, so a retry is safe.
    public func push(_ requests: [PushRequest]) async throws(APIError) -> [PushOutcome] {
        var outcomes = [PushOutcome?](repeating: nil, count: requests.count)
        var owned: [(index: Int, id: String)] = []
        for (index, request) in requests.enumerated() {
            let id = request.id ?? UUID().uuidString.lowercased()
            guard request.id != nil else {
                owned.append((index, id))
                continue
            }
            switch await idempotency.claim(id) {
            case .answered(let outcome): outcomes[index] = outcome
            case .owner: owned.append((index, id))
            }
        }

        var records: [KafkaOutgoingRecord] = []
        var slots: [(index: Int, stream: HeraldStream)] = []
        for (index, id) in owned {
            let request = requests[index]
            for stream in request.streams {
                let envelope = HeraldRecord(
                    stream: stream, id: id, contentType: request.contentType, exclude: request.exclude, expiresAt: request.expiresAt
                )
                records.append(KafkaOutgoingRecord(
                    topic: topic, key: Array(envelope.key.utf8), value: ByteBuffer(bytes: request.payload),
                    headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
                ))
                slots.append((index, stream))
            }
        }
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
            for (index, id) in owned where requests[index].id != nil { idempotency.finish(id, with: nil) }
            throw APIError(.kafkaUnavailable, "Kafka did not acknowledge the push: \(failure.message)", retryAfter: 1)
        }
        for (index, id) in owned {
            let outcome = PushOutcome(id: id, results: results[index] ?? [])
            outcomes[index] = outcome
            if requests[index].id != nil { idempotency.finish(id, with: outcome) }
        }
        return outcomes.map { $0! }
    }

    /// Produces the control record that closes every connection of `user` on every node (4003).
    public func disconnect(user: String) async throws(APIError) -> PushResult {
        let envelope = HeraldRecord(stream: .user(user), control: .disconnect)
        let record = KafkaOutgoingRecord(
            topic: topic, key: Array(envelope.key.utf8), value: ByteBuffer(string: #"{"reason":"disconnected by the push API"}"#),
            headers: envelope.headers.map { KafkaHeader(name: $0.name, value: $0.value) }
        )
        do {
            let landed = try await producer.send(record)
            return PushResult(stream: "u", key: user, partition: landed.partition, offset: landed.offset)
        } catch {
            throw APIError(.kafkaUnavailable, "Kafka did not acknowledge the disconnect: \(error.message)", retryAfter: 1)
        }
    }
}
