import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import HeraldKafka
import NIOCore
import Testing

@Suite("Resume: replay from the hot window or Kafka, then live, with nothing lost or repeated")
struct ResumeTests {
    /// Reads `count` messages and fails on anything else.
    static func messages(_ connection: TestConnection, _ count: Int, cursor: inout DeviceCursor) async throws -> [ServerEvent.Message] {
        var messages: [ServerEvent.Message] = []
        for _ in 0..<count {
            let message = try await connection.nextMessage()
            cursor.saw(message)
            messages.append(message)
        }
        return messages
    }

    /// A device that connected and dropped at once: the cursor and epoch it would resume with.
    static func droppedDevice(_ node: GatewayHarness, _ user: String) async throws -> (cursor: DeviceCursor, epoch: String) {
        let device = try await node.connect(user)
        device.session.close()
        _ = try await device.closeCode()
        return (DeviceCursor(device.welcome), device.welcome.epoch)
    }

    /// Waits until the node has read everything produced so far to `user`'s partition: a fence
    /// message to another user of that partition reaches a watcher.
    static func waitUntilRead(_ node: GatewayHarness, partitionOf user: String) async throws {
        let neighbour = (0...).lazy.map { "fence\($0)" }.first {
            Murmur2.partition(forKey: $0, partitionCount: 4) == Murmur2.partition(forKey: user, partitionCount: 4)
        }!
        let watcher = try await node.connect(neighbour)
        let fence = try await node.produce(HeraldRecord(stream: .user(neighbour)), "{}")
        #expect(try await watcher.nextMessage(within: .seconds(30)).offset == fence.offset)
        watcher.session.close()
    }

    @Test("a device resumes u, * and a channel after the messages it missed, in order, then continues live", arguments: [true, false])
    func resumeThenLive(fromWindow: Bool) async throws {
        try await GatewayHarness.run(configure: { if !fromWindow { $0.hotWindowBytes = 0 } }) { node in
            let phone = try await node.connect("alice", device: "phone", channels: ["news"], subscribe: ["news"])
            var cursor = DeviceCursor(phone.welcome)
            #expect(phone.welcome.recovered == nil, "no cursor, no recovered field")
            try await node.produce(HeraldRecord(stream: .user("alice")), #"{"n":1}"#)
            try await node.produce(HeraldRecord(stream: .broadcast), #"{"n":2}"#)
            try await node.produce(HeraldRecord(stream: .channel("news")), #"{"n":3}"#)
            _ = try await Self.messages(phone, 3, cursor: &cursor)
            let before = cursor
            phone.session.close()
            _ = try await phone.closeCode()

            var missed: [String: [Int64]] = [:]
            for n in 4...12 {
                let stream: HeraldStream = n % 3 == 0 ? .channel("news") : n % 3 == 1 ? .user("alice") : .broadcast
                let delivery = try await node.produce(HeraldRecord(stream: stream), #"{"n":\#(n)}"#)
                missed[stream.wireName, default: []].append(delivery.offset)
            }
            // Someone else's message in the same partition is not replayed to alice.
            try await node.produce(HeraldRecord(stream: .user("bob")), #"{"n":"bob"}"#)

            let back = try await node.connect("alice", device: "phone", channels: ["news"], cursor: before.text, epoch: phone.welcome.epoch)
            #expect(back.welcome.recovered == true)
            #expect(back.welcome.reason == nil)
            #expect(back.welcome.positions == before.positions, "positions are the cursor's when recovered")
            var resumed = DeviceCursor(back.welcome)
            let replayed = try await Self.messages(back, 9, cursor: &resumed)
            for (stream, offsets) in missed {
                #expect(replayed.filter { $0.stream == stream }.map(\.offset) == offsets, "stream \(stream)")
            }
            // Live after the replay, and nothing twice.
            let live = try await node.produce(HeraldRecord(stream: .user("alice")), #"{"n":13}"#)
            let next = try await back.nextMessage()
            #expect(next.offset == live.offset && next.data == #"{"n":13}"#)
            try await Task.sleep(for: .milliseconds(200))
            #expect(await back.pending().isEmpty)
            let stats = node.gateway.replayStats
            #expect(fromWindow ? stats.servedFromWindow == 1 : stats.servedFromKafka == 1)
            let status = try await api(node.apiPort, "GET", "/v1/node")
            let resumes = try #require(status.json["resumes"] as? [String: Any], "\(status.body)")
            #expect(resumes[fromWindow ? "from_window" : "from_kafka"] as? Int == 1, "\(status.body)")
            #expect(resumes["recovered"] as? Int == 1)
        }
    }

    @Test("concurrent resumes from Kafka share reads: 40 devices, far fewer reads than streams")
    func sharedReads() async throws {
        try await GatewayHarness.run(configure: { $0.hotWindowBytes = 0 }) { node in
            let users = (0..<40).map { "sharer\($0)" }
            var cursors: [(user: String, cursor: DeviceCursor, epoch: String)] = []
            for user in users {
                let (cursor, epoch) = try await Self.droppedDevice(node, user)
                cursors.append((user, cursor, epoch))
            }
            var broadcasts: [Int64] = []
            for n in 0..<5 { broadcasts.append(try await node.produce(HeraldRecord(stream: .broadcast), #"{"b":\#(n)}"#).offset) }
            var own: [String: Int64] = [:]
            for user in users { own[user] = try await node.produce(HeraldRecord(stream: .user(user)), #"{"own":true}"#).offset }
            try await ResumeTests.waitUntilRead(node, partitionOf: "*")
            for partition in 0..<4 {
                let user = (0...).lazy.map { "fence\($0)" }.first { Murmur2.partition(forKey: $0, partitionCount: 4) == partition }!
                try await ResumeTests.waitUntilRead(node, partitionOf: user)
            }
            let readsBefore = node.gateway.replayStats.kafkaReadCount
            // Everyone comes back at once.
            let resumed = try await withThrowingTaskGroup(of: (String, [ServerEvent.Message], Bool?).self) { group in
                for (user, cursor, epoch) in cursors {
                    group.addTask {
                        let device = try await node.connect(user, cursor: cursor.text, epoch: epoch)
                        var messages: [ServerEvent.Message] = []
                        for _ in 0..<6 { messages.append(try await device.nextMessage()) }
                        return (user, messages, device.welcome.recovered)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for (user, messages, recovered) in resumed {
                #expect(recovered == true)
                #expect(messages.filter { $0.stream == "*" }.map(\.offset) == broadcasts, "\(user)")
                #expect(messages.filter { $0.stream == "u" }.map(\.offset) == [own[user]!], "\(user)")
            }
            let reads = node.gateway.replayStats.kafkaReadCount - readsBefore
            #expect(node.gateway.replayStats.servedFromKafka == 40)
            // 80 stream requests (u and * for each device) over 4 partitions.
            #expect(reads < 40, "\(reads) Kafka reads for 80 stream requests")
            print("shared reads: 40 resumes, 80 stream requests, \(reads) Kafka reads")
        }
    }

    @Test("a replay larger than the outbound cap is paced by the socket, not cut with 4008")
    func pacedReplay() async throws {
        try await GatewayHarness.run(configure: { $0.outboundCapBytes = 64 * 1024 }) { node in
            let (cursor, epoch) = try await Self.droppedDevice(node, "carol")
            let payload = #"{"pad":""# + String(repeating: "x", count: 2_000) + #""}"#
            let records = (0..<400).map { _ in
                KafkaOutgoingRecord(topic: node.topic, key: Array("carol".utf8), value: ByteBuffer(string: payload))
            }
            let offsets = try await node.producer.send(records).map { try $0.get().offset }
            // Live, 800 KB in one batch would overflow a 64 KiB cap (that is what the cap is for): wait
            // until the node has read them.
            try await Self.waitUntilRead(node, partitionOf: "carol")
            let back = try await node.connect("carol", cursor: cursor.text, epoch: epoch)
            #expect(back.welcome.recovered == true)
            var resumed = DeviceCursor(back.welcome)
            let replayed = try await Self.messages(back, 400, cursor: &resumed)
            #expect(replayed.map(\.offset) == offsets, "800 KB through a 64 KiB cap, in order")
        }
    }

    @Test("every recovered:false reason from a real situation, with nothing replayed and live delivery after")
    func failures() async throws {
        try await GatewayHarness.run(configure: { $0.replayLimit = 5 }) { node in
            let (start, epoch) = try await Self.droppedDevice(node, "dave")
            // A device that stays connected shows when the node has read the eight.
            let watcher = try await node.connect("dave", device: "watcher")
            for n in 0..<8 { try await node.produce(HeraldRecord(stream: .user("dave")), #"{"n":\#(n)}"#) }
            for _ in 0..<8 { _ = try await watcher.nextMessage() }

            let cases: [(cursor: String, epoch: String?, reason: String)] = [
                (start.text, epoch, "too-many"),
                ("u:999999999", epoch, "ahead"),
                (start.text, "another-cluster.4", "epoch"),
                (start.text, nil, "epoch"),
                ("u;17", epoch, "malformed"),
                ("u:1,u:2", epoch, "malformed"),
            ]
            for (cursor, cursorEpoch, reason) in cases {
                let device = try await node.connect("dave", cursor: cursor, epoch: cursorEpoch)
                #expect(device.welcome.recovered == false, "\(cursor) \(cursorEpoch ?? "-")")
                #expect(device.welcome.reason == reason, "\(cursor) \(cursorEpoch ?? "-")")
                #expect(device.welcome.positions["u"]! >= start.positions["u"]! + 8, "positions are live ones")
                let live = try await node.produce(HeraldRecord(stream: .user("dave")), #"{"live":true}"#)
                let next = try await device.nextMessage()
                #expect(next.offset == live.offset, "no replay, then live: \(reason)")
                device.session.close()
                _ = try await device.closeCode()
            }
            #expect(node.gateway.replayStats.failuresByReason[.tooMany] == 1)
            #expect(node.gateway.replayStats.failuresByReason[.malformed] == 2)
        }
    }

    @Test("expired: a cursor older than what Kafka keeps, once the hot window no longer has it either")
    func expired() async throws {
        try await GatewayHarness.run(configure: { $0.hotWindowBytes = 256 * 1024 }) { node in
            let (start, epoch) = try await Self.droppedDevice(node, "erin")
            // The mock keeps about 5 MiB per partition: 8 MiB of incompressible records for erin's
            // partition push its log start past her cursor.
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<8 {
                let results = await node.producer.send((0..<64).map { _ in
                    let bytes = (0..<(16 * 1024)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                    return KafkaOutgoingRecord(topic: node.topic, key: Array("erin".utf8), value: ByteBuffer(bytes: bytes))
                })
                for result in results { _ = try result.get() }
            }
            try await Self.waitUntilRead(node, partitionOf: "erin")
            let back = try await node.connect("erin", cursor: start.text, epoch: epoch)
            #expect(back.welcome.recovered == false)
            #expect(back.welcome.reason == "expired")
            try await Task.sleep(for: .milliseconds(300))
            #expect(await back.pending().isEmpty, "nothing of a partial replay")
        }
    }

    @Test("a cursor naming another user's stream or an ungranted channel is refused before the upgrade")
    func isolation() async throws {
        try await GatewayHarness.run { node in
            try await node.produce(HeraldRecord(stream: .user("bob")), #"{"secret":1}"#)
            try await node.produce(HeraldRecord(stream: .channel("payroll")), #"{"secret":2}"#)
            let probe = try await node.connect("mallory")
            let epoch = probe.welcome.epoch
            let token = try await node.token("mallory", channels: ["news"])
            for cursor in ["u:bob:-1", "*:-1,u:bob:0", "c:payroll:-1", "c:news:-1,c:payroll:-1"] {
                do {
                    _ = try await node.client.connect(token: token, cursor: cursor, epoch: epoch)
                    Issue.record("\(cursor) was accepted")
                } catch let refused as HandshakeRejected {
                    #expect(refused.status == 403, "\(cursor)")
                    #expect(refused.body.contains("cursor-not-allowed"), "\(cursor): \(refused.body)")
                }
            }
            // The granted channel resumes.
            let ok = try await node.client.connect(token: token, cursor: "c:news:-1", epoch: epoch)
            let connection = try await TestConnection.open(ok)
            #expect(connection.welcome.recovered == true)
            #expect(connection.welcome.positions.keys.sorted() == ["*", "c:news", "u"])
        }
    }

    @Test("subscribe with an offset replays the channel, then continues live")
    func subscribeWithOffset() async throws {
        try await GatewayHarness.run { node in
            let reader = try await node.connect("frank", channels: ["news"])
            var offsets: [Int64] = []
            for n in 0..<5 { offsets.append(try await node.produce(HeraldRecord(stream: .channel("news")), #"{"n":\#(n)}"#).offset) }
            reader.session.subscribe("news", offset: offsets[1])
            var cursor = DeviceCursor(reader.welcome)
            let replayed = try await Self.messages(reader, 3, cursor: &cursor)
            #expect(replayed.map(\.offset) == Array(offsets[2...]))
            let live = try await node.produce(HeraldRecord(stream: .channel("news")), #"{"n":5}"#)
            #expect(try await reader.nextMessage().offset == live.offset)

            reader.session.subscribe("news", offset: 0)
            guard case .error(let code, _) = try await reader.next() else { throw TestFailure("expected an error frame") }
            #expect(code == "already-subscribed")
            reader.session.subscribe("sports", offset: 0)
            guard case .error(let denied, _) = try await reader.next() else { throw TestFailure("expected an error frame") }
            #expect(denied == "channel-not-allowed")
        }
    }
}
