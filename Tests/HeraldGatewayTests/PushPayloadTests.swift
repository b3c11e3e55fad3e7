@testable import HeraldAPI
import HeraldCore
import Testing

@Suite("Push memory: one payload buffer per push")
struct PushPayloadTests {
    @Test("a push to 1,000 users makes 1,000 records that share one payload buffer, not 1,000 copies")
    func recordsShareOnePayload() async throws {
        try await GatewayHarness.run { node in
            let service = PushService(producer: node.producer, topic: node.topic)
            let request = PushRequest(
                target: .users((0..<1_000).map { "user\($0)" }), payload: [UInt8](repeating: 7, count: 64 * 1024),
                contentType: .binary, id: nil, exclude: nil, expiresAt: nil
            )
            let (records, slots) = service.records(for: [(request, "id-1", 0)])
            #expect(records.count == 1_000 && slots.count == 1_000)
            let addresses = Set(records.map { record in record.value.withUnsafeReadableBytes { Int(bitPattern: $0.baseAddress) } })
            #expect(addresses.count == 1, "\(addresses.count) payload buffers for one push")
            #expect(records.allSatisfy { $0.value.readableBytes == 64 * 1024 })
        }
    }
}

@Suite("Idempotency cache: all ids at once, bounded, pending entries expire")
struct IdempotencyCacheTests {
    @Test("a pending id whose owner never finishes expires, and a request that hits a taken id claims none of its ids")
    func pendingExpiresAndClaimsAreAllOrNothing() async throws {
        let cache = IdempotencyCache(lifetime: .seconds(60), pendingLifetime: .milliseconds(100))
        let digest = IdempotencyCache.Digest(high: 1, low: 2)
        let a = IdempotencyCache.Key(client: 0, id: "a")
        let b = IdempotencyCache.Key(client: 0, id: "b")
        #expect(try cache.claim([(0, a, digest)]) == [.owner])
        #expect(throws: IdempotencyCache.Refusal.inFlight(index: 1)) { try cache.claim([(0, b, digest), (1, a, digest)]) }
        #expect(throws: IdempotencyCache.Refusal.conflict(index: 0)) { try cache.claim([(0, a, IdempotencyCache.Digest(high: 9, low: 9))]) }
        // b was not left claimed by the refused request.
        #expect(try cache.claim([(0, b, digest)]) == [.owner])
        // The owner of a never finishes (its task was lost): after the pending lifetime the id is free.
        try await Task.sleep(for: .milliseconds(150))
        #expect(try cache.claim([(0, a, digest)]) == [.owner])
        // Another API key's id of the same name is its own.
        #expect(try cache.claim([(0, IdempotencyCache.Key(client: 1, id: "b"), digest)]) == [.owner])
    }
}
