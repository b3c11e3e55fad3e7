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
