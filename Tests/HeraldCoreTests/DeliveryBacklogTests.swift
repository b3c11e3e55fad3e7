import HeraldCore
import Testing

@Suite("The delivery backlog: how long the oldest acknowledged push has waited for this node's fan-out")
struct DeliveryBacklogTests {
    @Test("an acknowledged push waits until the dispatcher passes its offset; past the bound the node is behind")
    func waitsUntilPassed() {
        let backlog = DeliveryBacklog(maxAgeMillis: 100)
        backlog.acknowledged([(partition: 0, offset: 5), (partition: 1, offset: 2)], now: 1_000)
        #expect(backlog.oldestAgeMillis(now: 1_050) == 50)
        #expect(!backlog.isBehind(now: 1_100))
        #expect(backlog.isBehind(now: 1_101))
        backlog.delivered(through: [0: 6])
        #expect(backlog.waitingCount == 1)
        #expect(backlog.isBehind(now: 1_200), "partition 1 still waits")
        backlog.delivered(through: [1: 3])
        #expect(backlog.waitingCount == 0)
        #expect(backlog.oldestAgeMillis(now: 5_000) == 0)
    }

    @Test("acknowledgements out of offset order: the oldest undelivered one counts; one delivered before its answer is not kept")
    func outOfOrder() {
        let backlog = DeliveryBacklog(maxAgeMillis: 100)
        backlog.delivered(through: [0: 10])
        backlog.acknowledged([(partition: 0, offset: 9)], now: 1_000)
        #expect(backlog.waitingCount == 0, "delivered before the API heard back")
        backlog.acknowledged([(partition: 0, offset: 12)], now: 1_000)
        backlog.acknowledged([(partition: 0, offset: 11)], now: 1_010)
        backlog.delivered(through: [0: 12])
        #expect(backlog.oldestAgeMillis(now: 1_050) == 50, "offset 12, acknowledged at 1000, still waits")
        backlog.delivered(through: [0: 13])
        #expect(backlog.waitingCount == 0)
    }

    @Test("a bound of 0 keeps nothing and is never behind")
    func off() {
        let backlog = DeliveryBacklog(maxAgeMillis: 0)
        backlog.acknowledged([(partition: 0, offset: 1)], now: 0)
        #expect(backlog.waitingCount == 0)
        #expect(!backlog.isBehind(now: 1_000_000))
    }

    @Test("many acknowledgements passed in steps leave nothing behind")
    func compacts() {
        let backlog = DeliveryBacklog(maxAgeMillis: 100)
        for offset in 0..<10_000 { backlog.acknowledged([(partition: 0, offset: Int64(offset))], now: Int64(offset)) }
        for next in stride(from: 100, through: 10_000, by: 100) { backlog.delivered(through: [0: Int64(next)]) }
        #expect(backlog.waitingCount == 0)
    }
}
