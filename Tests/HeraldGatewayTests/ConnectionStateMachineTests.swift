import HeraldCore
@testable import HeraldGateway
import Testing

/// A frame as the lifecycle sees it: a name to check order by, and a size.
private struct TestFrame: MeasuredFrame, Equatable, CustomStringConvertible {
    var name: String
    var byteCount: Int
    init(_ name: String, _ byteCount: Int = 100) {
        self.name = name
        self.byteCount = byteCount
    }
    var description: String { name }
}

private typealias Machine = ConnectionStateMachine<TestFrame>

/// The resume contract, as the connection's lifecycle keeps it: whatever happens in whichever state,
/// a client gets each message of its streams once, in offset order, with no gap; what the node queues
/// for it stays within its byte budget; and every server close names a `Disconnect`.
@Suite("The connection lifecycle: no gap, no duplicate, one byte budget")
struct ConnectionStateMachineTests {
    private static let limits = Machine.Limits(budgetBytes: 1_000, hardLimitBytes: 4_000, slowWindowMillis: 5_000)
    private let alice = HeraldStream.user("alice")

    private func machine(resuming: Bool = false, expiresAt: Int64 = .max) -> Machine {
        Machine(limits: Self.limits, expiresAt: expiresAt, resuming: resuming)
    }

    /// What the socket would get: the frames handed out while it is writable, until nothing waits.
    private func drain(_ machine: inout Machine, now: Int64 = 0) -> [String] {
        var written: [String] = []
        while let frame = machine.nextFrameToWrite() { written.append(frame.name) }
        machine.finishedWriting(socketWritable: true, now: now)
        return written
    }

    /// Offers a live record; returns its name if the caller writes it now.
    private func live(_ machine: inout Machine, _ offset: Int64, now: Int64 = 0, bytes: Int = 100) -> (String, Machine.Offer) {
        let frame = TestFrame("u\(offset)", bytes)
        return (frame.name, machine.offer(frame, stream: alice, offset: offset, now: now))
    }

    @Test("live: written at once while the socket takes it; behind a full socket queued in order and written when it drains")
    func liveAndFullSocket() {
        var machine = machine()
        #expect(live(&machine, 1).1 == .write)
        #expect(machine.socketBecameUnwritable(now: 0) == nil)
        #expect(live(&machine, 2).1 == .queued)
        #expect(live(&machine, 3).1 == .queued)
        machine.socketBecameWritable(now: 10)
        #expect(drain(&machine) == ["u2", "u3"])
    }

    @Test("live: queued frames come out in order, each once, and then live frames are written directly again")
    func queueOrder() {
        var machine = machine()
        _ = machine.socketBecameUnwritable(now: 0)
        for offset in 1...5 { #expect(live(&machine, Int64(offset)).1 == .queued) }
        machine.socketBecameWritable(now: 1)
        #expect(drain(&machine) == ["u1", "u2", "u3", "u4", "u5"])
        #expect(machine.queuedBytes == 0)
        #expect(live(&machine, 6).1 == .write)
    }

    @Test("resume: the welcome first, then the replay, then the live records that arrived during the fetch")
    func resumeOrder() {
        var machine = machine(resuming: true)
        #expect(live(&machine, 10).1 == .queued, "held during the fetch")
        #expect(live(&machine, 11).1 == .queued)
        #expect(machine.nextFrameToWrite() == nil, "nothing is written before the welcome")
        let replay = [TestFrame("u7"), TestFrame("u8"), TestFrame("u9")]
        #expect(machine.replayArrived(first: TestFrame("welcome"), replay: replay, skip: [:], now: 0) == nil)
        #expect(machine.state == .pacing)
        #expect(live(&machine, 12).1 == .queued, "behind the replay while it is written")
        #expect(drain(&machine) == ["welcome", "u7", "u8", "u9", "u10", "u11", "u12"])
        #expect(machine.state == .live)
        #expect(live(&machine, 13).1 == .write)
    }

    @Test("resume: a client ahead of this node gets none of the records it already has, live or held")
    func clientAhead() {
        var machine = machine(resuming: true)
        _ = live(&machine, 20)
        _ = live(&machine, 21)
        _ = machine.replayArrived(first: TestFrame("welcome"), replay: [], skip: [alice: 21], now: 0)
        #expect(live(&machine, 21).1 == .dropped)
        #expect(live(&machine, 22).1 == .queued)
        #expect(drain(&machine) == ["welcome", "u22"])
        #expect(live(&machine, 21).1 == .dropped, "still skipped after the replay")
        #expect(live(&machine, 23).1 == .write)
    }

    @Test("resume: a replay that failed still gives the welcome first and then every held record")
    func replayFailed() {
        var machine = machine(resuming: true)
        _ = live(&machine, 30)
        _ = machine.replayArrived(first: TestFrame("welcome recovered:false"), replay: [], skip: [:], now: 0)
        #expect(drain(&machine) == ["welcome recovered:false", "u30"])
    }

    @Test("an error frame sent during a fetch comes after the welcome and the replay, in its place among the live records")
    func errorFrameOrder() {
        var machine = machine(resuming: true)
        _ = live(&machine, 5)
        #expect(machine.offer(TestFrame("error"), stream: nil, offset: 0, now: 0) == .queued)
        _ = live(&machine, 6)
        _ = machine.replayArrived(first: TestFrame("welcome"), replay: [TestFrame("u1")], skip: [:], now: 0)
        #expect(drain(&machine) == ["welcome", "u1", "u5", "error", "u6"])
    }

    @Test("a close during pacing discards the queue; nothing more is written or queued")
    func closeDuringPacing() {
        var machine = machine(resuming: true)
        _ = machine.replayArrived(first: TestFrame("welcome"), replay: [TestFrame("u1"), TestFrame("u2")], skip: [:], now: 0)
        #expect(machine.nextFrameToWrite()?.name == "welcome")
        #expect(machine.close(.restarting) == .close(.restarting))
        #expect(machine.queuedBytes == 0)
        #expect(machine.nextFrameToWrite() == nil)
        #expect(live(&machine, 3).1 == .dropped)
        #expect(machine.close(.kicked) == .dropped, "one close only")
    }

    @Test("a drain or a kick during the fetch closes at once, and the replay that arrives later is ignored")
    func closeDuringFetch() {
        for disconnect in [Disconnect.restarting, .kicked, .replaced] {
            var machine = machine(resuming: true)
            _ = live(&machine, 1)
            #expect(machine.close(disconnect) == .close(disconnect))
            #expect(machine.replayArrived(first: TestFrame("welcome"), replay: [TestFrame("u0")], skip: [:], now: 0) == nil)
            #expect(machine.nextFrameToWrite() == nil, "\(disconnect)")
            #expect(machine.state == .closing(byServer: true, code: disconnect.code.rawValue))
        }
    }

    @Test("pings while the socket is full keep one pong waiting, not one per ping")
    func pingFlood() {
        var machine = machine()
        #expect(machine.pong(TestFrame("pong0", 8), now: 0) == .write)
        _ = machine.socketBecameUnwritable(now: 0)
        for n in 1...10_000 { _ = machine.pong(TestFrame("pong\(n)", 8), now: 0) }
        #expect(machine.queuedBytes == 8)
        #expect(machine.countedBytes <= Self.limits.budgetBytes + 8)
        machine.socketBecameWritable(now: 1)
        #expect(drain(&machine) == ["pong10000"], "only the latest ping is answered")
    }

    @Test("a burst over the budget to a reader that keeps reading closes nothing; one that stops is closed with 4008 after the window")
    func burstAndStall() {
        var machine = machine()
        _ = machine.socketBecameUnwritable(now: 0)
        for offset in 1...30 { #expect(live(&machine, Int64(offset), bytes: 100).1 == .queued) }
        // The reader takes some every few seconds: progress restarts the window.
        for second in 1...4 {
            let now = Int64(second) * 4_000
            machine.socketBecameWritable(now: now)
            _ = machine.nextFrameToWrite()
            machine.finishedWriting(socketWritable: false, now: now)
            #expect(machine.tick(now: now + 1, ping: false, missedPongLimit: 2) == .none, "progress at \(now)")
        }
        // Then it stops.
        #expect(machine.tick(now: 16_000 + 4_999, ping: false, missedPongLimit: 2) == .none)
        #expect(machine.tick(now: 16_000 + 5_000, ping: false, missedPongLimit: 2) == .close(.slowConsumer))
        #expect(machine.queuedBytes == 0, "the queue is discarded: the client resumes from its cursor")
    }

    @Test("over the hard limit the connection is closed with 4008 at once")
    func hardLimit() {
        var machine = machine()
        _ = machine.socketBecameUnwritable(now: 0)
        var outcome = Machine.Offer.queued
        var offset: Int64 = 0
        while outcome == .queued, offset < 1_000 {
            offset += 1
            outcome = live(&machine, offset, bytes: 100).1
        }
        #expect(outcome == .close(.slowConsumerOverflow))
        // Budget 1,000 in the socket plus 3,000 queued here is the hard limit of 4,000.
        #expect(offset == 31)
    }

    @Test("a reader that resumes and never reads is closed like any other")
    func resumeNeverRead() {
        var machine = machine(resuming: true)
        _ = machine.replayArrived(first: TestFrame("welcome"), replay: (1...20).map { TestFrame("u\($0)") }, skip: [:], now: 0)
        #expect(machine.nextFrameToWrite()?.name == "welcome")
        machine.finishedWriting(socketWritable: false, now: 0)
        _ = machine.socketBecameUnwritable(now: 0)
        #expect(machine.tick(now: 5_000, ping: false, missedPongLimit: 2) == .close(.slowConsumer))
    }

    @Test("a replay too large for the hard limit is a 4008, not a node's memory")
    func replayOverHardLimit() {
        var machine = machine(resuming: true)
        let decision = machine.replayArrived(first: nil, replay: (1...50).map { TestFrame("u\($0)") }, skip: [:], now: 0)
        #expect(decision == .slowConsumerOverflow)
    }

    @Test("an expired token: a record for it closes with 4009 instead of being written, and so does the tick")
    func tokenExpiry() {
        var delivering = machine(expiresAt: 1_000)
        #expect(live(&delivering, 1, now: 999).1 == .write)
        #expect(live(&delivering, 2, now: 1_000).1 == .close(.tokenExpired))
        var idle = machine(expiresAt: 1_000)
        #expect(idle.tick(now: 1_000, ping: true, missedPongLimit: 2) == .close(.tokenExpired))
    }

    @Test("a refresh moves the expiry: records and ticks after the old exp go through until the new one; a closing connection or an expired token is not refreshed")
    func refreshMovesExpiry() {
        var refreshing = machine(expiresAt: 1_000)
        let moved = refreshing.refreshed(expiresAt: 5_000, now: 900)
        #expect(moved)
        #expect(refreshing.expiresAt == 5_000)
        #expect(live(&refreshing, 1, now: 1_000).1 == .write)
        #expect(refreshing.tick(now: 4_999, ping: false, missedPongLimit: 2) == .none)
        #expect(refreshing.tick(now: 5_000, ping: false, missedPongLimit: 2) == .close(.tokenExpired))
        let afterClose = refreshing.refreshed(expiresAt: 9_000, now: 5_000)
        #expect(!afterClose, "a 4009 sent is not taken back")
        var late = machine(expiresAt: 1_000)
        let expired = late.refreshed(expiresAt: 2_000, now: 2_000)
        #expect(!expired, "a token already expired does not move the expiry")
        #expect(late.expiresAt == 1_000)
    }

    @Test("pings every tick; a client that answers none is dropped, one that sends anything is not")
    func missedPongs() {
        var machine = machine()
        #expect(machine.tick(now: 0, ping: true, missedPongLimit: 2) == .sendPing)
        #expect(machine.tick(now: 1, ping: true, missedPongLimit: 2) == .sendPing)
        machine.frameReceived()
        #expect(machine.tick(now: 2, ping: true, missedPongLimit: 2) == .sendPing)
        #expect(machine.tick(now: 3, ping: true, missedPongLimit: 2) == .sendPing)
        #expect(machine.tick(now: 4, ping: true, missedPongLimit: 2) == .abort)
        #expect(machine.channelClosed() == (byServer: false, code: 0), "no close frame either way")
    }

    @Test("the close handshake: the client's close is answered; our close answered by the client ends it")
    func closeHandshake() {
        var client = machine()
        #expect(client.peerClosed(code: 4000) == .reply(4000))
        #expect(client.channelClosed() == (byServer: false, code: 4000))
        var server = machine()
        _ = server.close(.slowConsumer)
        #expect(server.peerClosed(code: 4008) == .closeNow)
        #expect(server.channelClosed() == (byServer: true, code: 4008))
    }

    @Test("every event in every state: nothing is written after a close, nothing before a resume's welcome")
    func everyEventInEveryState() {
        enum Setup: CaseIterable { case live, resuming, pacing, closing, closed }
        func make(_ setup: Setup) -> Machine {
            var machine = machine(resuming: setup == .resuming || setup == .pacing)
            switch setup {
            case .live, .resuming: break
            case .pacing: _ = machine.replayArrived(first: TestFrame("welcome"), replay: [TestFrame("u0")], skip: [:], now: 0)
            case .closing: _ = machine.close(.restarting)
            case .closed: _ = machine.channelClosed()
            }
            return machine
        }
        for setup in Setup.allCases {
            let ended = setup == .closing || setup == .closed
            var machine = make(setup)
            let offer = live(&machine, 1).1
            switch setup {
            case .live: #expect(offer == .write)
            case .resuming, .pacing: #expect(offer == .queued)
            case .closing, .closed: #expect(offer == .dropped)
            }
            machine = make(setup)
            #expect((machine.pong(TestFrame("pong"), now: 0) == .dropped) == ended, "pong in \(setup)")
            machine = make(setup)
            if setup == .resuming { #expect(machine.nextFrameToWrite() == nil, "nothing before the welcome") }
            if ended { #expect(machine.nextFrameToWrite() == nil) }
            machine = make(setup)
            #expect((machine.close(.kicked) == .dropped) == ended, "close in \(setup)")
            machine = make(setup)
            #expect((machine.tick(now: .max, ping: true, missedPongLimit: 0) == .none) == ended, "tick in \(setup)")
            machine = make(setup)
            let replayed = machine.replayArrived(first: TestFrame("late"), replay: [], skip: [:], now: 0)
            #expect(replayed == nil)
            #expect(machine.isReplaying == (setup == .resuming || setup == .pacing), "\(setup)")
            machine = make(setup)
            #expect(machine.socketBecameUnwritable(now: 0) == nil)
            machine.socketBecameWritable(now: 0)
            machine = make(setup)
            #expect(machine.startReplay() == (setup == .live), "a replay starts only from live")
            machine = make(setup)
            #expect(machine.peerClosed(code: 1000) == (ended ? .closeNow : .reply(1000)))
        }
    }
}
