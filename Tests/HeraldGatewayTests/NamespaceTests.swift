import Foundation
import HeraldClient
import HeraldCore
@testable import HeraldGateway
import HeraldKafka
import NIOCore
import Testing

/// The namespaces these tests configure: one of each subscribe rule, publish on and off, and one that
/// lets anonymous connections publish.
private let testNamespaces =
    "video subscribe=anonymous publish history=50; members subscribe=token; team subscribe=pattern publish; open subscribe=anonymous publish user=false"

private func withNamespaces(_ configuration: inout GatewayConfiguration) {
    configuration.namespaces = try! ChannelNamespaces.parse(testNamespaces)
}

extension GatewayHarness {
    /// Connects without a token; the welcome already read.
    func anonymous(channels: [String] = [], cursor: String? = nil, epoch: String? = nil) async throws -> TestConnection {
        try await TestConnection.open(try await client.connectAnonymously(channels: channels, cursor: cursor, epoch: epoch))
    }

    /// The handshake's refusal (status and body), or a recorded issue if it was accepted.
    func refusal(_ connect: () async throws -> HeraldSession) async throws -> HandshakeRejected? {
        do {
            let session = try await connect()
            session.close()
            Issue.record("the handshake was accepted")
            return nil
        } catch let refused as HandshakeRejected {
            return refused
        }
    }

    /// The records of a topic's partition that holds `key`, once at least `count` are there.
    func records(topic: String, partitions: Int32, key: String, count: Int) async throws -> [KafkaRecord] {
        let reader = try KafkaReplayReader(
            configuration: KafkaReplayReaderConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), topic: topic),
            logger: testLogger
        )
        defer { Task { await reader.close() } }
        let partition = Murmur2.partition(forKey: key, partitionCount: partitions)
        let deadline = ContinuousClock.now + .seconds(15)
        while true {
            let records = try await reader.read(partition: partition, from: 0).records.filter { $0.key == Array(key.utf8) }
            if records.count >= count || ContinuousClock.now > deadline { return records }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

@Suite("Channel namespaces: anonymous connections, pattern grants, publishing into channels")
struct NamespaceTests {
    @Test("an anonymous connection follows a channel open to it, and nothing else: no user stream, no broadcast, no other channel")
    func anonymousAllowed() async throws {
        try await GatewayHarness.run(configure: withNamespaces) { node in
            let viewer = try await node.anonymous(channels: ["video:1"])
            #expect(viewer.welcome.positions.keys.sorted() == ["c:video:1"], "no u and no * for a connection without a user")
            try await node.produce(HeraldRecord(stream: .broadcast), #"{"to":"everyone with a token"}"#)
            try await node.produce(HeraldRecord(stream: .channel("members:1")), #"{"to":"members"}"#)
            let comment = try await node.produce(HeraldRecord(stream: .channel("video:1")), #"{"comment":"first"}"#)
            let message = try await viewer.nextMessage()
            #expect(message.stream == "c:video:1" && message.offset == comment.offset)
            // Subscribing later works the same, by the same rule.
            viewer.session.subscribe("video:2")
            viewer.session.subscribe("members:1")
            guard case .error(let code, let text) = try await viewer.next() else { throw TestFailure("members:1 was not refused") }
            #expect(code == "channel-not-allowed" && text.contains("not open to connections without a token"), "\(text)")
            let second = try await node.produce(HeraldRecord(stream: .channel("video:2")), #"{"comment":"second"}"#)
            #expect(try await viewer.nextMessage().offset == second.offset)
            #expect(await viewer.pending().isEmpty)
        }
    }

    @Test("a connection without a token is refused where no namespace is open to it, and for any channel or cursor stream not open to it")
    func anonymousRefused() async throws {
        try await GatewayHarness.run { node in
            let refused = try await node.refusal { try await node.client.connectAnonymously(channels: ["video:1"]) }
            #expect(refused?.status == 401 && refused?.body.contains("missing-token") == true, "without namespaces a token is required")
        }
        try await GatewayHarness.run(configure: withNamespaces) { node in
            for channels in [["members:1"], ["payroll"], ["team:red"], ["video:1", "payroll"]] {
                let refused = try await node.refusal { try await node.client.connectAnonymously(channels: channels) }
                #expect(refused?.status == 403 && refused?.body.contains("channel-not-allowed") == true, "\(channels): \(refused?.body ?? "")")
            }
            let epoch = try await node.anonymous().welcome.epoch
            for cursor in ["u:-1", "*:-1", "c:video:1:-1,*:0", "c:members:1:-1", "c:payroll:-1"] {
                let refused = try await node.refusal { try await node.client.connectAnonymously(cursor: cursor, epoch: epoch) }
                #expect(refused?.status == 403 && refused?.body.contains("cursor-not-allowed") == true, "\(cursor): \(refused?.body ?? "")")
            }
        }
    }

    @Test("anonymous connections have their own cap: when it is full they are refused 503, and connections with a token still open")
    func anonymousLimits() async throws {
        try await GatewayHarness.run(configure: { configuration in
            withNamespaces(&configuration)
            configuration.anonymousMaxConnections = 2
        }) { node in
            let first = try await node.anonymous(channels: ["video:1"])
            let second = try await node.anonymous(channels: ["video:1"])
            let refused = try await node.refusal { try await node.client.connectAnonymously(channels: ["video:1"]) }
            #expect(refused?.status == 503 && refused?.body.contains("at-capacity") == true, "\(refused?.body ?? "")")
            let user = try await node.connect("alice", subscribe: ["video:1"])
            #expect(user.welcome.positions["c:video:1"] != nil)
            // Anonymous connections are not one user: the per-user limit (10 here) does not replace them.
            let firstPending = await first.pending()
            let secondPending = await second.pending()
            #expect(firstPending.isEmpty && secondPending.isEmpty)
            first.session.close()
            let deadline = ContinuousClock.now + .seconds(10)
            while node.gateway.anonymousAdmission.openConnections > 1, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            _ = try await node.anonymous(channels: ["video:1"])
        }
    }

    @Test("anonymous handshakes have their own accept rate: over it they are refused 503 with Retry-After, and handshakes with a token are not")
    func anonymousAcceptRate() async throws {
        try await GatewayHarness.run(configure: { configuration in
            withNamespaces(&configuration)
            configuration.anonymousAcceptsPerSecond = 1
        }) { node in
            var refused: HandshakeRejected?
            // A bucket of one: within a few back-to-back handshakes one is over the rate.
            for _ in 0..<5 where refused == nil {
                do {
                    _ = try await node.anonymous(channels: ["video:1"])
                } catch let rejected as HandshakeRejected {
                    refused = rejected
                }
            }
            #expect(refused?.status == 503 && refused?.body.contains("rate-limited") == true, "\(refused?.body ?? "none refused")")
            #expect(refused?.header("Retry-After") != nil)
            for user in ["a", "b", "c"] { _ = try await node.connect(user) }
        }
    }

    @Test("any token follows a token namespace; a pattern grant NAMESPACE:* follows every channel of a pattern namespace, at connect, by subscribe and by cursor, and nowhere else")
    func tokenAndPatternGrants() async throws {
        try await GatewayHarness.run(configure: withNamespaces) { node in
            let member = try await node.connect("alice", subscribe: ["members:news"])
            #expect(member.welcome.positions["c:members:news"] != nil, "no grant is needed in a token namespace")
            let token = try await node.token("bob", channels: ["team:*", "other:*"])
            let bob = try await TestConnection.open(try await node.client.connect(token: token, channels: ["team:red"]))
            bob.session.subscribe("team:blue")
            bob.session.subscribe("other:1")
            guard case .error(let code, _) = try await bob.next() else { throw TestFailure("other:1 was not refused") }
            #expect(code == "channel-not-allowed", "a pattern grants only in a pattern namespace")
            let blue = try await node.produce(HeraldRecord(stream: .channel("team:blue")), #"{"team":"blue"}"#)
            #expect(try await bob.nextMessage().offset == blue.offset)
            let refused = try await node.refusal { try await node.client.connect(token: token, channels: ["other:1"]) }
            #expect(refused?.status == 403)
            let resumed = try await TestConnection.open(
                try await node.client.connect(token: token, cursor: "c:team:green:-1", epoch: bob.welcome.epoch)
            )
            #expect(resumed.welcome.recovered == true && resumed.welcome.positions["c:team:green"] != nil)
            let exact = try await node.token("carol", channels: ["team:red"])
            let carolRefused = try await node.refusal { try await node.client.connect(token: exact, channels: ["team:blue"]) }
            #expect(carolRefused?.status == 403, "an exact grant is only that channel")
        }
    }

    @Test("a publish into a channel reaches every viewer (through the events topic, as on every node) with the publisher in herald-user, and the upstream topic with the channel")
    func publishAllowed() async throws {
        try await GatewayHarness.run(configure: withNamespaces) { node in
            let viewer = try await node.anonymous(channels: ["video:7"])
            let other = try await node.connect("bob", subscribe: ["video:7"])
            let alice = try await node.connect("alice", device: "laptop", subscribe: ["video:7"])
            alice.session.publish(json: #"{"comment":"nice"}"#, toChannel: "video:7", id: "c-1")
            let seen = try await viewer.nextMessage()
            #expect(seen.stream == "c:video:7" && seen.id == "c-1" && seen.data == #"{"comment":"nice"}"#)
            #expect(seen.user == "alice", "viewers see who published it")
            #expect(try await other.nextMessage() == seen)
            var answer: ServerEvent?
            var own: ServerEvent.Message?
            for _ in 0..<2 {
                switch try await alice.next() {
                case .message(let message): own = message
                case let event: answer = event
                }
            }
            #expect(own == seen, "the publisher is a viewer too")
            #expect(answer == .published(id: "c-1", stream: "c:video:7", offset: seen.offset))

            let events = try await node.records(topic: node.topic, partitions: 4, key: "video:7", count: 1)
            #expect(events.count == 1)
            #expect(events.first?.header(HeraldHeader.user) == "alice")
            #expect(events.first?.header(HeraldHeader.kind) == "channel")
            let upstream = try await node.records(topic: upstreamTopic, partitions: 2, key: "video:7", count: 1)
            #expect(upstream.map(\.valueString) == [#"{"comment":"nice"}"#])
            #expect(upstream.first?.header(HeraldHeader.user) == "alice")
            #expect(upstream.first?.header(HeraldHeader.channel) == "video:7")
            #expect(upstream.first?.header(HeraldHeader.device) == "laptop")
            #expect(upstream.first?.header(HeraldHeader.id) == "c-1")

            // Where the namespace lets anonymous connections publish, they do, with no user.
            let guest = try await node.anonymous(channels: ["open:lobby"])
            guest.session.publish(json: #""hello""#, toChannel: "open:lobby", id: "g-1")
            // Its own message and the answer come in either order (the answer waits for the upstream write too).
            var guestEvents: [ServerEvent] = []
            for _ in 0..<2 { guestEvents.append(try await guest.next()) }
            #expect(guestEvents.contains { if case .message(let message) = $0 { message.id == "g-1" && message.user == nil } else { false } }, "\(guestEvents)")
            #expect(guestEvents.contains { if case .published(id: "g-1", stream: "c:open:lobby", _) = $0 { true } else { false } }, "\(guestEvents)")
            let lobby = try await node.records(topic: node.topic, partitions: 4, key: "open:lobby", count: 1)
            #expect(lobby.count == 1 && lobby.first?.header(HeraldHeader.user) == nil)
        }
    }

    @Test("a publish into a channel is refused where the namespace does not allow it, where the connection may not follow, and from anonymous connections where a user is needed; nothing reaches Kafka")
    func publishRefused() async throws {
        try await GatewayHarness.run(configure: withNamespaces) { node in
            let alice = try await node.connect("alice", channels: ["payroll"], subscribe: ["payroll", "members:1"])
            let viewer = try await node.anonymous(channels: ["video:1"])
            let cases: [(TestConnection, String, String)] = [
                (alice, "members:1", "does not allow it"),
                (alice, "payroll", "does not allow it"),
                (alice, "team:red", "does not grant channel team:red"),
                (viewer, "video:1", "needs a user"),
                (viewer, "team:red", "anonymous connections may not publish"),
            ]
            for (index, (connection, channel, reason)) in cases.enumerated() {
                connection.session.publish(json: #"{"n":\#(index)}"#, toChannel: channel, id: "p-\(index)")
                guard case .publishFailed(let id, let code, let message) = try await connection.next() else {
                    throw TestFailure("the publish into \(channel) was not refused")
                }
                #expect(id == "p-\(index)" && code == "publish-not-allowed" && message.contains(reason), "\(channel): \(message)")
            }
            viewer.session.publish(json: #""upstream""#, id: "u-1")
            guard case .publishFailed(_, let code, _) = try await viewer.next() else { throw TestFailure("an anonymous upstream publish was not refused") }
            #expect(code == "publish-not-allowed")
            // Nothing of them reached a viewer: the next message each gets is the fence.
            let fence = try await node.produce(HeraldRecord(stream: .channel("video:1")), #"{"fence":true}"#)
            #expect(try await viewer.nextMessage().offset == fence.offset)
            for channel in ["members:1", "payroll", "team:red", "video:1"] {
                let records = try await node.records(topic: upstreamTopic, partitions: 2, key: channel, count: 0)
                #expect(records.isEmpty, "\(channel)")
            }
        }
    }

    @Test("isolation: whatever a connection's channels, cursor or subscribe say, it never receives or replays a message of a channel it may not follow")
    func isolation() async throws {
        try await GatewayHarness.run(configure: withNamespaces) { node in
            let channels = ["video:1", "members:1", "team:red", "team:blue", "payroll", "other:1"]
            for channel in channels { try await node.produce(HeraldRecord(stream: .channel(channel)), #"{"before":"\#(channel)"}"#) }
            let patternToken = try await node.token("pat", channels: ["team:*", "other:*", "payroll:*"])
            let viewer = try await node.anonymous()
            let member = try await node.connect("mem")
            let pattern = try await TestConnection.open(try await node.client.connect(token: patternToken))
            let epoch = viewer.welcome.epoch
            let allowed: [(TestConnection, Set<String>)] = [
                (viewer, ["video:1"]), (member, ["video:1", "members:1"]), (pattern, ["video:1", "members:1", "team:red", "team:blue"]),
            ]
            // Every connection asks for every channel with an offset (a replay from the start): what it may
            // follow replays, anything else is refused and replays nothing.
            for (index, (connection, may)) in allowed.enumerated() {
                for channel in channels {
                    connection.session.subscribe(channel, offset: -1)
                    let event = try await connection.next()
                    if may.contains(channel) {
                        guard case .message(let message) = event else { throw TestFailure("\(index) \(channel): \(event)") }
                        #expect(message.stream == "c:" + channel && message.data == #"{"before":"\#(channel)"}"#)
                    } else {
                        guard case .error(let code, _) = event else { throw TestFailure("\(index) \(channel): \(event)") }
                        #expect(code == "channel-not-allowed", "\(index) \(channel)")
                    }
                }
            }
            // Cursors that name a channel a connection may not follow are refused before anything is replayed.
            for (cursor, connect) in [
                ("c:members:1:-1", { try await node.client.connectAnonymously(cursor: "c:members:1:-1", epoch: epoch) }),
                ("c:payroll:-1", { try await node.client.connect(token: patternToken, cursor: "c:payroll:-1", epoch: epoch) }),
                ("c:other:1:-1", { try await node.client.connect(token: patternToken, cursor: "c:other:1:-1", epoch: epoch) }),
            ] as [(String, () async throws -> HeraldSession)] {
                let refused = try await node.refusal(connect)
                #expect(refused?.status == 403, "\(cursor)")
            }
            // Live: every channel gets a message, then a fence every connection follows.
            for channel in channels { try await node.produce(HeraldRecord(stream: .channel(channel)), #"{"after":"\#(channel)"}"#) }
            let fence = try await node.produce(HeraldRecord(stream: .channel("video:1")), #"{"fence":true}"#)
            for (index, (connection, may)) in allowed.enumerated() {
                var seen: [String] = []
                while true {
                    let message = try await connection.nextMessage()
                    if message.stream == "c:video:1", message.offset == fence.offset { break }
                    seen.append(String(message.stream.dropFirst(2)))
                }
                #expect(seen.sorted() == may.sorted(), "connection \(index) received \(seen.sorted()), may follow \(may.sorted())")
            }
        }
    }
}
