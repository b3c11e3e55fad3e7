import Foundation
import HeraldCore
import Testing

/// The push API's caps: records per request and records per second per API key.
@Suite("Push API limits: records per request, records per second per key")
struct PushLimitTests {
    @Test("a request over the records-per-request cap is refused naming the count and the limit")
    func recordsPerRequestCap() async throws {
        try await GatewayHarness.run(configureAPI: { $0.limits.maxRecordsPerRequest = 100 }) { node in
            let pushes = (0..<3).map { _ in #"{"to":{"users":[\#((0..<40).map { #""c\#($0)""# }.joined(separator: ","))]},"data":1}"# }
            let answer = try await api(node.apiPort, "POST", "/v1/push/batch", body: #"{"messages":[\#(pushes.joined(separator: ","))]}"#)
            #expect(answer.status == 413, "\(answer.body)")
            #expect(answer.errorMessage?.contains("120") == true && answer.errorMessage?.contains("100") == true, "\(answer.body)")
            let fits = try await api(node.apiPort, "POST", "/v1/push/batch", body: #"{"messages":[\#(pushes[0]),\#(pushes[1])]}"#)
            #expect(fits.status == 202)
        }
    }

    @Test("over the records-per-second budget of an API key: 429 with Retry-After and a message; another key is not affected")
    func recordsPerSecondPerKey() async throws {
        try await GatewayHarness.run(configureAPI: {
            $0.apiKeys = [testAPIKey, "quiet-key"]
            $0.limits.recordsPerSecondPerKey = 50
        }) { node in
            let users = (0..<30).map { #""r\#($0)""# }.joined(separator: ",")
            let body = #"{"to":{"users":[\#(users)]},"data":1}"#
            // The producer's first send takes most of a second (its producer id); after it, a push is quick.
            #expect(try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["warm"]},"data":1}"#, key: "quiet-key").status == 202)
            #expect(try await api(node.apiPort, "POST", "/v1/push", body: body).status == 202)
            let refused = try await api(node.apiPort, "POST", "/v1/push", body: body)
            #expect(refused.status == 429, "\(refused.body)")
            #expect(Int(refused.headers["retry-after"] ?? "") ?? 0 >= 1, "\(refused.headers)")
            #expect(refused.errorCode == "rate-limited" && refused.errorMessage?.contains("50") == true, "\(refused.body)")
            #expect(try await api(node.apiPort, "POST", "/v1/push", body: body, key: "quiet-key").status == 202)
        }
    }

    @Test("while this node's fan-out is stalled, a push past the delivery-delay bound is refused with 503 delivery-behind and Retry-After, and accepted again once deliveries caught up")
    func deliveryBehindRefusesUntilTheFanOutCatchesUp() async throws {
        try await GatewayHarness.run(configureAPI: { $0.limits.maxDeliveryDelayMillis = 200 }) { node in
            #expect(try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["warm"]},"data":1}"#).status == 202)
            // Every shard's loop busy for 2 s: what the consumer reads cannot reach the sockets.
            for loop in node.node.group.makeIterator() { loop.execute { usleep(2_000_000) } }
            let accepted = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["a"]},"data":1}"#)
            #expect(accepted.status == 202, "\(accepted.body)")
            try await Task.sleep(for: .milliseconds(600))
            let refused = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["b"]},"data":2}"#)
            #expect(refused.status == 503, "\(refused.body)")
            #expect(refused.errorCode == "delivery-behind" && refused.errorMessage?.contains("200 ms") == true, "\(refused.body)")
            #expect(Int(refused.headers["retry-after"] ?? "") ?? 0 >= 1, "\(refused.headers)")
            var after: APIResponse? = nil
            for _ in 0..<100 {
                let attempt = try await api(node.apiPort, "POST", "/v1/push", body: #"{"to":{"users":["b"]},"data":2}"#)
                if attempt.status == 202 { after = attempt; break }
                #expect(attempt.status == 503, "\(attempt.body)")
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(after != nil, "pushes were still refused 10 s after the fan-out resumed")
        }
    }
}
