import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import Testing

@Suite("The Swift client acks, throttled, and a device without its cursor resumes from the acked position")
struct ClientAckTests {
    @Test("ResumingConnection acks the last message of its stream; a new session of the device without a cursor resumes there")
    func swiftClientAcks() async throws {
        try await GatewayHarness.run(cursorsTopic: "herald.cursors") { node in
            let token = try await node.token("acker", device: "mac")
            func session(cursor: ResumingConnection.Cursor? = nil) -> (ResumingConnection, Inbox<ResumingConnection.Event>, Task<Void, Never>) {
                let connection = ResumingConnection(client: node.client, cursor: cursor, ackInterval: .milliseconds(200), token: { token })
                let inbox = Inbox<ResumingConnection.Event>()
                let reader = Task { for await event in connection.events { await inbox.append(event) } }
                connection.start()
                return (connection, inbox, reader)
            }
            func welcome(_ inbox: Inbox<ResumingConnection.Event>) async throws -> ServerEvent.Welcome {
                while true { if case .welcome(let welcome) = try await inbox.next(within: .seconds(15)) { return welcome } }
            }
            func message(_ inbox: Inbox<ResumingConnection.Event>) async throws -> ServerEvent.Message {
                while true { if case .message(let message) = try await inbox.next(within: .seconds(15)) { return message } }
            }

            let (first, firstInbox, firstReader) = session()
            defer { firstReader.cancel() }
            #expect(try await welcome(firstInbox).source == nil)
            var offsets: [Int64] = []
            for n in 0..<3 { offsets.append(try await node.produce(HeraldRecord(stream: .user("acker")), #"{"n":\#(n)}"#).offset) }
            for offset in offsets { #expect(try await message(firstInbox).offset == offset) }
            let acksBefore = node.gateway.status().acks
            try await eventually("the client acked the last message and the node stored it") {
                node.gateway.deviceCursors?.store.entry(user: "acker", device: "mac")?.cursor.entries.contains {
                    $0 == ResumeCursor.Entry(stream: .user, offset: offsets[2])
                } == true
            }
            #expect(node.gateway.status().acks - acksBefore <= 2, "one ack for three messages (the throttle), not one each")
            first.stop()

            // The device's storage is gone: a new session without a cursor.
            let later = try await node.produce(HeraldRecord(stream: .user("acker")), #"{"n":3}"#).offset
            let (second, secondInbox, secondReader) = session()
            defer { secondReader.cancel(); second.stop() }
            let resumed = try await welcome(secondInbox)
            #expect(resumed.recovered == true && resumed.source == "stored-cursor", "\(resumed)")
            #expect(try await message(secondInbox).offset == later, "only what it had not acked")
        }
    }
}
