import Foundation
import HeraldClient
import HeraldCore
@testable import HeraldGateway
import HeraldKafka
import NIOCore
import Testing

@Suite("Publish: upstream to Kafka, and multi-device sync")
struct PublishTests {
    @Test("publish reaches the upstream topic with session and device; sync reaches the user's other devices, not the sender")
    func publishAndSync() async throws {
        try await GatewayHarness.run { node in
            let phone = try await node.connect("alice", device: "phone")
            let laptop = try await node.connect("alice", device: "laptop")
            phone.session.publish(json: #"{"draft":"hello"}"#, sync: true)
            let synced = try await laptop.nextMessage()
            #expect(synced.stream == "u")
            #expect(synced.data == #"{"draft":"hello"}"#)
            phone.session.publish(json: #""upstream only""#)

            // A fence after both: the phone saw neither its own sync nor anything else.
            let fence = try await node.produce(HeraldRecord(stream: .user("alice")), #"{"fence":true}"#)
            #expect(try await phone.nextMessage().offset == fence.offset)
            #expect(try await laptop.nextMessage().offset == fence.offset, "the non-sync publish is not on the events topic")

            let reader = try KafkaReplayReader(
                configuration: KafkaReplayReaderConfiguration(
                    kafka: KafkaConfiguration(bootstrapServers: node.cluster.bootstrapServers), topic: upstreamTopic
                ),
                logger: testLogger
            )
            defer { Task { await reader.close() } }
            let partition = Murmur2.partition(forKey: "alice", partitionCount: 2)
            // The upstream record is written after the user's stream's copy: it may land after the fence.
            var upstream = try await reader.read(partition: partition, from: 0).records
            let deadline = ContinuousClock.now + .seconds(10)
            while upstream.count < 2, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                upstream = try await reader.read(partition: partition, from: 0).records
            }
            #expect(upstream.map(\.valueString) == [#"{"draft":"hello"}"#, #""upstream only""#])
            for record in upstream {
                #expect(record.key == Array("alice".utf8))
                #expect(record.header(HeraldHeader.session) == phone.welcome.session)
                #expect(record.header(HeraldHeader.device) == "phone")
                #expect(record.header(HeraldHeader.node) == "test-node")
                #expect(record.header(HeraldHeader.id)?.count == 36)
            }
        }
    }

    @Test("a publish with an id is answered published once Kafka took it, with its copy's position when sync; one without an id gets no answer")
    func publishedAcknowledgement() async throws {
        try await GatewayHarness.run { node in
            let phone = try await node.connect("alice", device: "phone")
            let laptop = try await node.connect("alice", device: "laptop")
            phone.session.publish(json: #"{"draft":1}"#, sync: true, id: "draft-1")
            let synced = try await laptop.nextMessage()
            #expect(synced.id == "draft-1", "the client's id is the record's herald-id")
            #expect(try await phone.next() == .published(id: "draft-1", stream: "u", offset: synced.offset))
            phone.session.publish(json: #""upstream only""#, id: "note-2")
            #expect(try await phone.next() == .published(id: "note-2", stream: nil, offset: nil))
            phone.session.publish(json: #""no id""#)
            let fence = try await node.produce(HeraldRecord(stream: .user("alice")), #"{"fence":true}"#)
            #expect(try await phone.nextMessage().offset == fence.offset, "a publish without an id is not answered")
            #expect(try await laptop.nextMessage().offset == fence.offset)
        }
    }

    @Test("a publish Kafka refuses is answered with an error naming its id and no Kafka internals; the same id again is published")
    func publishFailureNamesTheID() async throws {
        try await GatewayHarness.run { node in
            let phone = try await node.connect("alice", device: "phone")
            node.cluster.failNextProduceRequests([.messageTooLarge])
            phone.session.publish(json: #"{"n":1}"#, id: "n-1")
            guard case .publishFailed(let id, let code, let message) = try await phone.next(within: .seconds(20)) else {
                throw TestFailure("expected an error frame naming the publish")
            }
            #expect(id == "n-1" && code == "publish-failed")
            #expect(!message.contains("Broker") && !message.contains(upstreamTopic) && !message.contains("RD_KAFKA"), "\(message)")
            phone.session.publish(json: #"{"n":1}"#, id: "n-1")
            #expect(try await phone.next(within: .seconds(20)) == .published(id: "n-1", stream: nil, offset: nil))
        }
    }

    @Test(
        "a sync publish that failed and is retried with its id reaches the user's other devices once, live and on resume",
        arguments: [[EmbeddedKafkaCluster.RequestError.messageTooLarge], [.none, .messageTooLarge]], [true, false]
    )
    func syncRetryDeliversOnce(failing errors: [EmbeddedKafkaCluster.RequestError], replayFromWindow: Bool) async throws {
        try await GatewayHarness.run(configure: { if !replayFromWindow { $0.hotWindowBytes = 0 } }) { node in
            let (dropped, epoch) = try await ResumeTests.droppedDevice(node, "alice")
            let phone = try await node.connect("alice", device: "phone")
            let laptop = try await node.connect("alice", device: "laptop")
            node.cluster.failNextProduceRequests(errors)
            var attempts = 0
            publishing: while true {
                attempts += 1
                guard attempts <= 3 else { throw TestFailure("the publish never succeeded") }
                phone.session.publish(json: #"{"draft":"once"}"#, sync: true, id: "draft-once")
                while true {
                    switch try await phone.next(within: .seconds(20)) {
                    case .published(let id, _, _):
                        #expect(id == "draft-once")
                        break publishing
                    case .publishFailed(let id, let code, _):
                        #expect(id == "draft-once" && code == "publish-failed")
                        continue publishing
                    case let other:
                        throw TestFailure("the phone got \(other)")
                    }
                }
            }
            #expect(attempts == 2, "one failure, one retry")
            let fence = try await node.produce(HeraldRecord(stream: .user("alice")), #"{"fence":true}"#)
            var live: [ServerEvent.Message] = []
            while live.last?.offset != fence.offset { live.append(try await laptop.nextMessage()) }
            #expect(live.filter { $0.id == "draft-once" }.count == 1, "live: \(live.map(\.offset))")
            // A device that was away gets it once in its replay as well.
            let back = try await node.connect("alice", device: "tablet", cursor: dropped.text, epoch: epoch)
            #expect(back.welcome.recovered == true)
            var replayed: [ServerEvent.Message] = []
            while replayed.last?.offset != fence.offset { replayed.append(try await back.nextMessage()) }
            #expect(replayed.filter { $0.id == "draft-once" }.count == 1, "replay: \(replayed.map(\.offset))")
        }
    }

    @Test("a bad publish gets an error frame and the connection stays")
    func badPublish() async throws {
        try await GatewayHarness.run { node in
            let phone = try await node.connect("bob")
            phone.session.connection.send(text: #"{"type":"publish","data":1,"sync":"yes"}"#)
            guard case .error(let code, let message) = try await phone.next() else { throw TestFailure("expected an error frame") }
            #expect(code == "bad-request")
            #expect(message.contains("sync"))
            let live = try await node.produce(HeraldRecord(stream: .user("bob")), "{}")
            #expect(try await phone.nextMessage().offset == live.offset)
        }
    }

    @Test("a user publishing over its rate gets slow-down and, going on, 1008; another user publishes meanwhile")
    func publishFlood() async throws {
        // One publish every 2 s (a burst of one): the first publish is taken, the next 51 are refused
        // in a row and the 51st refusal closes the connection. Exactly that many are sent: a server
        // that closes a socket holding unread client frames makes the kernel answer with a reset,
        // which can take the close frame (and the last slow-downs) away from the client.
        try await GatewayHarness.run(configure: { $0.publishesPerSecondPerUser = 0.5 }) { node in
            let flooder = try await node.connect("flooder")
            let other = try await node.connect("other", device: "phone")
            let otherLaptop = try await node.connect("other", device: "laptop")
            for n in 0..<(Int(SessionHandler.slowDownLimit) + 2) { flooder.session.publish(json: #"{"n":\#(n)}"#) }
            var slowDowns = 0
            var closedWith: UInt16?
            while closedWith == nil {
                switch try await flooder.next(within: .seconds(10)) {
                case .error(let code, _) where code == "slow-down": slowDowns += 1
                case .closed(let code, _): closedWith = code
                default: break
                }
            }
            #expect(slowDowns >= 50, "\(slowDowns) slow-downs before the close")
            #expect(closedWith == CloseCode.policyViolation.rawValue)
            other.session.publish(json: #"{"still":"fine"}"#, sync: true)
            #expect(try await otherLaptop.nextMessage(within: .seconds(11)).data == #"{"still":"fine"}"#, "another user is not limited by the flood")
        }
    }

    @Test("a connection sending more messages a second than its limit is closed with 1008")
    func messageFlood() async throws {
        try await GatewayHarness.run(configure: { $0.clientMessagesPerSecond = 20 }) { node in
            let chatty = try await node.connect("chatty")
            for n in 0..<500 { chatty.session.ack(stream: "u", offset: Int64(n)) }
            #expect(try await chatty.closeCode() == CloseCode.policyViolation.rawValue)
        }
    }
}
