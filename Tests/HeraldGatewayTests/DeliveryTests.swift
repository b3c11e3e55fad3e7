import HeraldClient
import HeraldCore
import HeraldGateway
import Testing

@Suite("Delivery over real sockets: users, channels, broadcast, exclude, per-user limit")
struct DeliveryTests {
    @Test("3 users × 3 devices: each record reaches exactly its audience")
    func routing() async throws {
        try await GatewayHarness.run { node in
            var devices: [String: [TestConnection]] = [:]
            for user in ["alice", "bob", "carol"] {
                for device in ["phone", "laptop", "browser"] {
                    // Everyone may read "news"; only the browsers subscribe to it.
                    let subscribe = device == "browser" ? ["news"] : []
                    devices[user, default: []].append(try await node.connect(user, device: device, channels: ["news"], subscribe: subscribe))
                }
            }
            let everyone = devices.values.flatMap { $0 }
            for connection in everyone {
                #expect(connection.welcome.node == "test-node")
                #expect(connection.welcome.positions["u"] != nil && connection.welcome.positions["*"] != nil)
            }
            #expect(devices["alice"]![2].welcome.positions["c:news"] != nil)
            #expect(node.gateway.registry.connectionCount == 9)
            #expect(node.gateway.registry.sessions(of: "alice").count == 3)

            let toAlice = try await node.produce(HeraldRecord(stream: .user("alice"), id: "m1"), #"{"hello":"alice"}"#)
            let toNews = try await node.produce(HeraldRecord(stream: .channel("news")), "breaking")
            let excluded = devices["bob"]![0].welcome.session
            let toBob = try await node.produce(HeraldRecord(stream: .user("bob"), exclude: excluded), #"{"sync":true}"#)

            func expected(_ user: String, _ index: Int) -> Set<String> {
                var expected: Set<String> = []
                if user == "alice" { expected.insert("u:\(toAlice.offset)") }
                if index == 2 { expected.insert("c:news:\(toNews.offset)") }
                if user == "bob" && index != 0 { expected.insert("u:\(toBob.offset)") }
                return expected
            }
            // Records of different streams sit in different partitions, which Kafka does not order
            // among themselves. So: first every recipient gets what it expects; then a broadcast fence,
            // produced after all of that was dispatched to every shard, must be the very next thing
            // every connection sees. Anything else sent to a connection would stand before its fence.
            var received: [String: [Int: [ServerEvent.Message]]] = [:]
            for (user, connections) in devices {
                for (index, connection) in connections.enumerated() {
                    var messages: [ServerEvent.Message] = []
                    while messages.count < expected(user, index).count {
                        messages.append(try await connection.nextMessage())
                    }
                    received[user, default: [:]][index] = messages
                }
            }
            let fence = try await node.produce(HeraldRecord(stream: .broadcast), #""fence""#)
            for (user, connections) in devices {
                for (index, connection) in connections.enumerated() {
                    let last = try await connection.nextMessage()
                    #expect(last.stream == "*" && last.offset == fence.offset && last.data == #""fence""#, "\(user) device \(index)")
                    let messages = received[user]![index]!
                    #expect(Set(messages.map { "\($0.stream):\($0.offset)" }) == expected(user, index), "\(user) device \(index)")
                    if let alice = messages.first(where: { $0.stream == "u" && user == "alice" }) {
                        #expect(alice.id == "m1" && alice.data == #"{"hello":"alice"}"#)
                    }
                    if let news = messages.first(where: { $0.stream == "c:news" }) {
                        #expect(news.data == #""breaking""#, "plain text arrives as a JSON string")
                    }
                    if let sync = messages.first(where: { $0.stream == "u" && user == "bob" }) {
                        #expect(sync.data == #"{"sync":true}"#)
                    }
                }
            }
        }
    }

    @Test("subscribe and unsubscribe frames maintain the channel index")
    func subscribeFrames() async throws {
        try await GatewayHarness.run { node in
            let reader = try await node.connect("dave", channels: ["sports"])
            reader.session.subscribe("sports")
            reader.session.subscribe("secret")
            guard case .error(let code, _) = try await reader.next() else { throw TestFailure("expected an error frame") }
            #expect(code == "channel-not-allowed")
            // Subscription takes effect in order with later frames; the fence proves arrival.
            try await Task.sleep(for: .milliseconds(200))
            let goal = try await node.produce(HeraldRecord(stream: .channel("sports")), #"{"goal":1}"#)
            let message = try await reader.nextMessage()
            #expect(message.stream == "c:sports" && message.offset == goal.offset)

            reader.session.unsubscribe("sports")
            try await Task.sleep(for: .milliseconds(200))
            // A witness still subscribed: once it has goal 2, every shard has dispatched it.
            let witness = try await node.connect("witness", channels: ["sports"], subscribe: ["sports"])
            let second = try await node.produce(HeraldRecord(stream: .channel("sports")), #"{"goal":2}"#)
            #expect(try await witness.nextMessage().offset == second.offset)
            let fence = try await node.produce(HeraldRecord(stream: .broadcast), "fence")
            let next = try await reader.nextMessage()
            #expect(next.stream == "*" && next.offset == fence.offset, "nothing from sports after unsubscribing")
        }
    }

    @Test("the 11th connection of a user closes the oldest with 4001")
    func perUserLimit() async throws {
        try await GatewayHarness.run { node in
            var connections: [TestConnection] = []
            for index in 0..<10 {
                connections.append(try await node.connect("erin", device: "d\(index)"))
            }
            let newest = try await node.connect("erin", device: "d10")
            #expect(try await connections[0].closeCode() == CloseCode.replaced.rawValue)
            #expect(node.gateway.registry.sessions(of: "erin").count == 10)
            #expect(!node.gateway.registry.sessions(of: "erin").contains { $0.session == connections[0].welcome.session })
            let ping = try await node.produce(HeraldRecord(stream: .user("erin")), "still here")
            #expect(try await newest.nextMessage().offset == ping.offset)
            #expect(try await connections[1].nextMessage().offset == ping.offset)
        }
    }
}
