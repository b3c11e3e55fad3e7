import HeraldCore
import Testing

@Suite("Reconnect policy: close codes and full-jitter backoff")
struct ReconnectPolicyTests {
    @Test func closeCodes() {
        for code: UInt16? in [nil, 1001, 1006, 1011, 1012, 1013, 4008] { #expect(ReconnectPolicy.action(forClose: code) == .resume) }
        #expect(ReconnectPolicy.action(forClose: 4009) == .refreshToken)
        for code: UInt16 in [1000, 1002, 1007, 1008, 1009, 4001, 4003] { #expect(ReconnectPolicy.action(forClose: code) == .stop) }
        #expect(!ReconnectPolicy().reconnects(after: .stop))
        #expect(ReconnectPolicy(reconnectAfterStop: true).reconnects(after: .stop))
        #expect(ReconnectPolicy().reconnects(after: .refreshToken))
    }

    @Test func backoffGrowsWithJitterUnderACap() {
        let policy = ReconnectPolicy(base: .milliseconds(500), cap: .seconds(30))
        #expect(policy.delay(attempt: 0, unit: 0.5) == .milliseconds(250))
        #expect(policy.delay(attempt: 3, unit: 0.5) == .seconds(2))
        #expect(policy.delay(attempt: 40, unit: 0.5) == .seconds(15), "capped at 30 s")
        #expect(policy.delay(attempt: 2, unit: 0) == .zero)
        #expect(policy.delay(attempt: 2, unit: 1) < .seconds(2), "always below the ceiling")
        var generator = SystemRandomNumberGenerator()
        let spread = Set((0..<200).map { _ in policy.delay(attempt: 4, unit: Double.random(in: 0..<1, using: &generator)) })
        #expect(spread.count > 150, "clients dropped together do not come back together")
    }
}
