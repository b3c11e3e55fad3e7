import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import HeraldKafka
import Testing

@Suite("HTTP push API end to end: Kafka in the middle, real sockets at the end")
struct APITests {
    @Test("a push to a user reaches exactly that user's devices, at the offsets the API returned")
    func pushToUser() async throws {
        try await GatewayHarness.run { node in
            let alice = [try await node.connect("alice", device: "phone"), try await node.connect("alice", device: "laptop")]
            let bob = try await node.connect("bob")
            let response = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["alice"]},"data":{"n":1},"id":"p-1"}"#)
            #expect(response.status == 202)
            #expect(response.json["id"] as? String == "p-1")
            let result = try #require(response.results.first)
            #expect(result.stream == "u" && result.key == "alice")
            #expect(result.partition == Murmur2.partition(forKey: "alice", partitionCount: 4))
            for device in alice {
                let message = try await device.nextMessage()
                #expect(message.offset == result.offset && message.id == "p-1" && message.data == #"{"n":1}"#)
            }
            // Once alice's devices have it, every shard has dispatched it: bob's next frame is the fence.
            let fence = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"all":true},"data":"fence","encoding":"text"}"#)
            let next = try await bob.nextMessage()
            #expect(next.stream == "*" && next.offset == fence.results.first?.offset && next.data == #""fence""#)
        }
    }

    @Test("batch results come in order; channel, broadcast, text and base64 pushes arrive as the spec says")
    func batchAndKinds() async throws {
        try await GatewayHarness.run { node in
            let reader = try await node.connect("carol", channels: ["news"], subscribe: ["news"])
            let body = #"""
            {"messages":[
              {"to":{"users":["carol"]},"data":[1,2,3]},
              {"to":{"channels":["news"]},"data":"breaking","encoding":"text"},
              {"to":{"all":true},"data":"AAEC/w==","encoding":"base64"},
              {"to":{"users":["carol","dave"]},"data":{"two":"records"}}
            ]}
            """#
            let response = try await api(node.apiPort, "POST", "/v1/push/batch", body: body)
            #expect(response.status == 202)
            let results = try #require(response.json["results"] as? [[String: Any]])
            #expect(results.count == 4)
            let streams = results.map { ($0["results"] as? [[String: Any]] ?? []).map { $0["stream"] as? String ?? "" } }
            #expect(streams == [["u"], ["c:news"], ["*"], ["u", "u"]])
            var received: [String: ServerEvent.Message] = [:]
            for _ in 0..<4 {
                let message = try await reader.nextMessage()
                received[message.stream + (message.data.contains("two") ? "2" : "")] = message
            }
            #expect(received["u"]?.data == "[1,2,3]")
            #expect(received["c:news"]?.data == #""breaking""#)
            #expect(received["*"]?.data == #""AAEC/w==""# && received["*"]?.encoding == "base64")
            #expect(received["u2"]?.data == #"{"two":"records"}"#)
        }
    }

    @Test("a repeated id returns the first answer and produces nothing again")
    func idempotency() async throws {
        try await GatewayHarness.run { node in
            let erin = try await node.connect("erin")
            let body = #"{"to":{"users":["erin"]},"data":{"once":true},"id":"same"}"#
            let first = try await api(node.apiPort, "POST", "/v1/push", body: body)
            let second = try await api(node.apiPort, "POST", "/v1/push", body: body)
            #expect(first.status == 202 && second.status == 202)
            #expect(first.body == second.body)
            #expect(try await erin.nextMessage().offset == first.results.first?.offset)
            let fence = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["erin"]},"data":"after"}"#)
            #expect(try await erin.nextMessage().offset == fence.results.first?.offset, "the repeat was not delivered")
        }
    }

    @Test("presence lists this node's connections; kick closes every connection of the user with 4003")
    func presenceAndKick() async throws {
        try await GatewayHarness.run { node in
            let phone = try await node.connect("frank", device: "phone")
            let laptop = try await node.connect("frank", device: "laptop")
            let other = try await node.connect("grace")
            let presence = try await api(node.apiPort, "GET", "/v1/users/frank/connections")
            #expect(presence.status == 200 && presence.json["node"] as? String == "test-node")
            let connections = presence.json["connections"] as? [[String: Any]] ?? []
            #expect(Set(connections.compactMap { $0["device"] as? String }) == ["phone", "laptop"])
            #expect(Set(connections.compactMap { $0["session"] as? String }) == [phone.welcome.session, laptop.welcome.session])

            let kick = try await api(node.apiPort, "DELETE", "/v1/users/frank/connections")
            #expect(kick.status == 202)
            #expect(try await phone.closeCode() == CloseCode.kicked.rawValue)
            #expect(try await laptop.closeCode() == CloseCode.kicked.rawValue)
            let fence = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["grace"]},"data":"still here"}"#)
            #expect(try await other.nextMessage().offset == fence.results.first?.offset, "other users stay connected")
        }
    }

    @Test("refusals: 401 without or with a wrong key, 400 naming the field, 413 over the limit, 404 in the error shape")
    func refusals() async throws {
        try await GatewayHarness.run { node in
            let missing = try await api(node.apiPort, "POST", "/v1/push", body: "{}", key: nil)
            #expect(missing.status == 401 && missing.errorCode == "unauthorized")
            let wrong = try await api(node.apiPort, "POST", "/v1/push", body: "{}", key: "test-api-kez")
            #expect(wrong.status == 401)
            let cases: [(String, String)] = [
                ("not json", "body"),
                (#"{"data":1}"#, "to"),
                (#"{"to":{"users":[]},"data":1}"#, "to.users"),
                (#"{"to":{"users":[7]},"data":1}"#, "to.users[0]"),
                (#"{"to":{"users":["*"]},"data":1}"#, "to.users[0]"),
                (#"{"to":{"all":1},"data":1}"#, "to.all"),
                (#"{"to":{"all":true,"users":["a"]},"data":1}"#, "to"),
                (#"{"to":{"all":true}}"#, "data"),
                (#"{"to":{"all":true},"data":1,"encoding":"text"}"#, "data"),
                (#"{"to":{"all":true},"data":"%%%","encoding":"base64"}"#, "data"),
                (#"{"to":{"all":true},"data":1,"encoding":"xml"}"#, "encoding"),
                (#"{"to":{"all":true},"data":1,"expires_at":"soon"}"#, "expires_at"),
                (#"{"to":{"all":true},"data":1,"id":""}"#, "id"),
                (#"{"to":{"all":true},"data":1,"colour":"red"}"#, "colour"),
            ]
            for (body, field) in cases {
                let response = try await api(node.apiPort, "POST", "/v1/push", body: body)
                #expect(response.status == 400, "\(body)")
                #expect(response.errorMessage?.contains(field) == true, "\(body): \(response.body)")
            }
            let batch = try await api(node.apiPort, "POST", "/v1/push/batch", body: #"{"messages":[{"to":{"all":true},"data":1},{"to":{}}]}"#)
            #expect(batch.status == 400 && batch.errorMessage?.hasPrefix("messages[1].to") == true, "\(batch.body)")
            let big = "\"" + String(repeating: "x", count: 70_000) + "\""
            let tooBig = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"all":true},"data":\#(big)}"#)
            #expect(tooBig.status == 413 && tooBig.errorCode == "payload-too-large")
            let nowhere = try await api(node.apiPort, "GET", "/v1/nowhere")
            #expect(nowhere.status == 404 && nowhere.errorCode == "not-found")
            #expect(try await api(node.apiPort, "GET", "/healthz", key: nil).status == 200)
            #expect(try await api(node.apiPort, "GET", "/readyz", key: nil).status == 200)
        }
    }

    @Test("records produced straight to the topic by kcat are delivered: key alone to the user, herald-kind broadcast to everyone")
    func kcatDirect() async throws {
        try await GatewayHarness.run { node in
            let henry = try await node.connect("henry")
            let ivy = try await node.connect("ivy")
            try runKcat(["-P", "-b", node.cluster.bootstrapServers, "-t", node.topic, "-K", "\t", "-X", "partitioner=murmur2_random"],
                        stdin: "henry\t{\"from\":\"kcat\"}\n")
            let direct = try await henry.nextMessage()
            #expect(direct.stream == "u" && direct.data == #"{"from":"kcat"}"#)
            try runKcat(["-P", "-b", node.cluster.bootstrapServers, "-t", node.topic, "-k", "*", "-H", "herald-kind=broadcast"],
                        stdin: "hello everyone\n")
            #expect(try await henry.nextMessage().data == #""hello everyone""#)
            #expect(try await ivy.nextMessage().data == #""hello everyone""#)
        }
    }

    @Test("with the broker down pushes answer 503 in the configured time; afterwards they succeed and nothing acknowledged is lost")
    func brokerDown() async throws {
        try await GatewayHarness.run(producerTimeoutMilliseconds: 2_000) { node in
            let jack = try await node.connect("jack")
            let before = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["jack"]},"data":"before"}"#)
            #expect(before.status == 202)
            try node.cluster.setBrokerDown(1)
            let started = ContinuousClock.now
            let during = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["jack"]},"data":"during"}"#)
            #expect(during.status == 503 && during.errorCode == "kafka-unavailable" && during.headers["retry-after"] == "1")
            #expect(ContinuousClock.now - started < .seconds(15), "answered within the producer's delivery timeout, not hung")
            // Readiness answers from the node's state, refreshed in the background: it turns within a
            // refresh and one metadata timeout.
            var notReady = try await api(node.apiPort, "GET", "/readyz", key: nil)
            let turnBy = ContinuousClock.now + .seconds(10)
            while notReady.status != 503, ContinuousClock.now < turnBy {
                try await Task.sleep(for: .milliseconds(200))
                notReady = try await api(node.apiPort, "GET", "/readyz", key: nil)
            }
            #expect(notReady.status == 503 && notReady.errorCode == "not-ready", "\(notReady.body)")
            try node.cluster.setBrokerUp(1)
            var after: APIResponse? = nil
            for _ in 0..<30 {
                let attempt = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["jack"]},"data":"after"}"#)
                if attempt.status == 202 { after = attempt; break }
                try await Task.sleep(for: .milliseconds(500))
            }
            let acknowledged = try #require(after)
            var seen: [Int64: String] = [:]
            while seen[acknowledged.results[0].offset] == nil {
                let message = try await jack.nextMessage(within: .seconds(30))
                seen[message.offset] = message.data
            }
            #expect(seen[before.results[0].offset] == #""before""#, "every acknowledged push arrived")
        }
    }

    @Test("herald push sends through the API and prints the answer")
    func pushCommand() async throws {
        try await GatewayHarness.run { node in
            let kim = try await node.connect("kim")
            let process = Process()
            process.executableURL = try heraldExecutable()
            process.arguments = ["push", "--api", "http://127.0.0.1:\(node.apiPort)", "--api-key", testAPIKey, "--user", "kim", #"{"from":"cli"}"#]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            let printed = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            let result = (printed?["results"] as? [[String: Any]])?.first
            #expect(result?["stream"] as? String == "u" && result?["key"] as? String == "kim", "\(output)")
            #expect(try await kim.nextMessage().data == #"{"from":"cli"}"#)

            let refused = Process()
            refused.executableURL = try heraldExecutable()
            refused.arguments = ["push", "--api", "http://127.0.0.1:\(node.apiPort)", "--api-key", "nope", "--all", "1"]
            refused.standardOutput = Pipe()
            try refused.run()
            refused.waitUntilExit()
            #expect(refused.terminationStatus != 0, "a refused push exits non-zero")
        }
    }
}
