import Foundation
import HeraldClient
import HeraldCore
import HeraldGateway
import NIOCore
import NIOWebSocket
import Testing

/// Base64url without padding, as JWT segments are.
private func base64URL(_ bytes: [UInt8]) -> String {
    Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

/// Values a careless issuer or an attacker puts in a claim.
private func hostileValue(_ random: inout SplitMix64) -> String {
    let choices = [
        "1e300", "-1", "0", "NaN", "\"3600\"", "9223372036854775807", "18446744073709551616", "1.5", "[1,2]", "{}", "null",
        "true", "\"\"", "\"\(String(repeating: "a", count: 300))\"", "\"*\"", "\"ü😀\\u0000\"",
        String(Int64(Date().timeIntervalSince1970 + 3_600) * 1_000_000_000), String(Int64(Date().timeIntervalSince1970 + 3_600) * 1_000),
    ]
    return choices[Int(random.next() % UInt64(choices.count))]
}

/// One mutated token: a valid one changed the way fuzzers and broken issuers change them.
private func mutate(_ token: String, _ random: inout SplitMix64) -> String {
    var segments = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    switch random.next() % 8 {
    case 0:
        // A character of the signature or the payload flipped.
        var chars = Array(token)
        let index = Int(random.next() % UInt64(chars.count))
        chars[index] = chars[index] == "A" ? "B" : "A"
        return String(chars)
    case 1:
        return String(token.prefix(Int(random.next() % UInt64(token.count))))
    case 2:
        let claim = ["exp", "nbf", "iat", "sub", "channels", "device", "aud", "iss"][Int(random.next() % 8)]
        let json = #"{"sub":"mallory","exp":\#(Int(Date().timeIntervalSince1970) + 600),"\#(claim)":\#(hostileValue(&random))}"#
        segments[1] = base64URL(Array(json.utf8))
    case 3:
        let alg = ["none", "HS512", "RS256", "ES256", "", "hs256"][Int(random.next() % 6)]
        segments[0] = base64URL(Array(#"{"alg":"\#(alg)","typ":"JWT"}"#.utf8))
    case 4:
        segments = Array(segments.prefix(2))
    case 5:
        segments.append(segments.last ?? "")
    case 6:
        segments[Int(random.next() % 3)] = base64URL((0..<Int(random.next() % 64)).map { _ in UInt8(truncatingIfNeeded: random.next()) })
    default:
        segments[1] = "%%%" + segments[1]
    }
    return segments.joined(separator: ".")
}

/// A client message as a fuzzer writes one: known types with wrong or missing fields, and noise.
private func hostileMessage(_ random: inout SplitMix64) -> String {
    let type = ["ack", "subscribe", "unsubscribe", "publish", "nope", ""][Int(random.next() % 6)]
    let field = ["stream", "offset", "channel", "data", "sync", "type"][Int(random.next() % 6)]
    switch random.next() % 5 {
    case 0: return #"{"type":"\#(type)","\#(field)":\#(hostileValue(&random))}"#
    case 1: return #"{"type":"\#(type)"}"#
    case 2: return String(repeating: "[", count: Int(random.next() % 2_000))
    case 3: return #"{"type":"subscribe","channel":"\#(String(repeating: "c", count: Int(random.next() % 5_000)))","offset":-1}"#
    default: return String(decoding: (0..<Int(random.next() % 200)).map { _ in UInt8(truncatingIfNeeded: random.next() % 128) }, as: UTF8.self)
    }
}

@Suite("Fuzzing a node: mutated tokens, client messages and raw frames (fixed seed, bounded)")
struct FuzzTests {
    static var seed: UInt64 { UInt64(ProcessInfo.processInfo.environment["HERALD_TEST_SEED"] ?? "") ?? 20_261_201 }

    @Test("no token, client message or frame crashes the node, answers 5xx, or leaves a connection counted; its memory stays bounded")
    func fuzz() async throws {
        try await BudgetNode.run(["HERALD_ACCEPT_RATE": "100000"]) { node in
            var random = SplitMix64(state: Self.seed)
            let valid = try await node.token("fuzzer")
            var statuses: [Int: Int] = [:]
            for _ in 0..<400 {
                let token = mutate(valid, &random)
                do {
                    let session = try await node.client.connect(token: token)
                    session.close()
                    statuses[101, default: 0] += 1
                } catch let refused as HandshakeRejected {
                    statuses[refused.status, default: 0] += 1
                }
            }
            #expect(statuses.keys.allSatisfy { [101, 400, 401, 403].contains($0) }, "handshake statuses: \(statuses)")
            #expect((statuses[401] ?? 0) > 300, "most mutations are refused as tokens: \(statuses)")

            var closes: [UInt16: Int] = [:]
            for round in 0..<20 {
                let connection = try await TestConnection.open(try await node.client.connect(token: valid))
                for _ in 0..<30 { connection.session.connection.send(text: hostileMessage(&random)) }
                if round % 2 == 0 {
                    // Raw bytes under the frame encoder: frames no client library would write.
                    let bytes = (0..<Int(random.next() % 64 + 2)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                    connection.session.connection.sendRaw(ByteBuffer(bytes: bytes))
                }
                connection.session.connection.send(text: #"{"type":"ack","stream":"u","offset":1}"#)
                connection.session.close()
                while true {
                    let event = try await connection.next(within: .seconds(15))
                    if case .closed(let code, _) = event {
                        closes[code ?? 0, default: 0] += 1
                        break
                    }
                }
            }
            // 1000 (our close answered), 1002/1007/1008/1009 for broken frames; never 1011.
            #expect(closes.keys.allSatisfy { [0, 1000, 1002, 1007, 1008, 1009].contains($0) }, "close codes: \(closes)")
            let readings = node.readings
            try await readings.wait(within: .seconds(10), "no connection left counted after the fuzz") {
                (try await readings.status()["connections"] as? NSNumber)?.intValue == 0
            }
            let resident = try await readings.metric("process_resident_memory_bytes")
            print("fuzz seed \(Self.seed): handshakes \(statuses), closes \(closes), node RSS \(Int(resident) / 1_000_000) MB")
            // A debug node on the embedded Kafka idles at about 60-120 MB here; the fuzz holds nothing.
            #expect(resident < 400_000_000, "node RSS after the fuzz: \(Int(resident)) bytes")
            #expect(try await TestConnection.open(try await node.client.connect(token: valid)).welcome.epoch.isEmpty == false)
        }
    }
}
