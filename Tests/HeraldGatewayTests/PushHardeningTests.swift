import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import Testing

/// Idempotency ids, request and rate limits of the push API, through the real HTTP API.
@Suite("Push API: idempotency ids never wedge it, ids are bound to key and body, limits answer 429")
struct PushHardeningTests {
    @Test("a batch that repeats an id is 400 naming the index, at once, and the id stays usable")
    func repeatedIdInOneBatch() async throws {
        try await GatewayHarness.run { node in
            let body = #"{"messages":[{"to":{"users":["ann"]},"data":1,"id":"dup"},{"to":{"users":["bo"]},"data":2,"id":"dup"}]}"#
            let answer = try #require(try await api(within: .seconds(5), node.apiPort, "POST", "/v1/push/batch", body: body),
                                      "a batch repeating an id got no answer within 5 s")
            #expect(answer.status == 400, "\(answer.body)")
            #expect(answer.errorMessage?.contains("messages[1].id") == true, "\(answer.body)")
            let later = try #require(try await api(within: .seconds(5), node.apiPort, "POST", "/v1/push",
                                                   body: #"{"to":{"users":["ann"]},"data":1,"id":"dup"}"#), "the id is wedged")
            #expect(later.status == 202)
        }
    }

    @Test("two batches holding the same ids in opposite orders both answer; neither waits on the other")
    func oppositeOrdersDoNotDeadlock() async throws {
        try await GatewayHarness.run { node in
            let ids = (0..<40).map { "order-\($0)" }
            func batch(_ ids: [String]) -> String {
                #"{"messages":[\#(ids.map { #"{"to":{"users":["u-\#($0)"]},"data":"\#($0)","id":"\#($0)"}"# }.joined(separator: ","))]}"#
            }
            for _ in 0..<5 {
                async let forward = api(within: .seconds(10), node.apiPort, "POST", "/v1/push/batch", body: batch(ids))
                async let backward = api(within: .seconds(10), node.apiPort, "POST", "/v1/push/batch", body: batch(ids.reversed()))
                let answers = [try await forward, try await backward]
                for answer in answers {
                    let answer = try #require(answer, "a batch got no answer within 10 s")
                    // Either it produced (202), got the earlier answer (202), or was told the ids are in flight (409).
                    #expect([202, 409].contains(answer.status), "\(answer.body)")
                    if answer.status == 409 { #expect(answer.headers["retry-after"] != nil) }
                }
            }
            let settled = try await api(node.apiPort, "POST", "/v1/push/batch", body: batch(ids))
            #expect(settled.status == 202)
        }
    }

    @Test("an id reused with a different body is 409 with a message; the same body gets the first answer")
    func idBoundToBody() async throws {
        try await GatewayHarness.run { node in
            let erin = try await node.connect("erin")
            let first = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["erin"]},"data":{"v":1},"id":"bound"}"#)
            #expect(first.status == 202)
            let other = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["erin"]},"data":{"v":2},"id":"bound"}"#)
            #expect(other.status == 409, "\(other.body)")
            #expect(other.errorMessage?.contains("id") == true, "\(other.body)")
            let again = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["erin"]},"data":{"v":1},"id":"bound"}"#)
            #expect(again.status == 202 && again.body == first.body)
            #expect(try await erin.nextMessage().data == #"{"v":1}"#)
            let fence = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["erin"]},"data":"fence"}"#)
            #expect(try await erin.nextMessage().offset == fence.results.first?.offset, "nothing else was delivered")
        }
    }

    @Test("an id is bound to the API key: another key's push with the same id is produced, not answered from the first")
    func idBoundToKey() async throws {
        try await GatewayHarness.run(configureAPI: { $0.apiKeys = [testAPIKey, "second-key"] }) { node in
            let fay = try await node.connect("fay")
            let body = #"{"to":{"users":["fay"]},"data":"hello","encoding":"text","id":"shared"}"#
            let first = try await api(node.apiPort, "POST", "/v1/push", body: body)
            let second = try await api(node.apiPort, "POST", "/v1/push", body: body, key: "second-key")
            #expect(first.status == 202 && second.status == 202)
            #expect(first.results.first?.offset != second.results.first?.offset, "the second key's push was really produced")
            #expect(try await fay.nextMessage().offset == first.results.first?.offset)
            #expect(try await fay.nextMessage().offset == second.results.first?.offset)
        }
    }

    @Test("a node left with an abandoned pending id exits within its drain after SIGTERM")
    func abandonedPendingIdDoesNotHoldShutdown() async throws {
        let nodes = try await NodeProcesses.start()
        defer { nodes.stop() }
        let apiPort = Int(try await nodes.node.waitFor(#"(?:Server started and listening on|listening on) [^:]*:(\d+)"#))!
        // The client gives up after 3 s, as the reproduction's did.
        let body = #"{"messages":[{"to":{"users":["ann"]},"data":1,"id":"gone"},{"to":{"users":["ann"]},"data":1,"id":"gone"}]}"#
        _ = try await api(within: .seconds(3), apiPort, "POST", "/v1/push/batch", body: body)
        let process = nodes.node.process
        let signalled = ContinuousClock.now
        process.terminate()
        let deadline = signalled + .seconds(15)
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!process.isRunning, "the node was still running 15 s after SIGTERM with a 1 s drain")
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}
