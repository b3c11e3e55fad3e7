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
}
