import Foundation
import HeraldCore
import HeraldKafka
import NIOCore
import Testing

@Suite("Producers: a record in the wrong partition is dropped and counted; every producer snippet in the docs lands where Herald reads it")
struct ProducerTests {
    @Test("a record kcat produced with its default partitioner is not delivered with a position that lies, and is counted")
    func misroutedUserRecordIsDropped() async throws {
        try await GatewayHarness.run { node in
            let alice = try await node.connect("alice")
            // kcat's default partitioner (CRC32) puts alice in partition 3 of 4; murmur2 says 1.
            #expect(Murmur2.partition(forKey: "alice", partitionCount: 4) == 1)
            try runKcat(["-P", "-b", node.cluster.bootstrapServers, "-t", node.topic, "-K", "\t"], stdin: "alice\t{\"n\":\"misrouted\"}\n")
            let routed = try await node.produce(HeraldRecord(stream: .user("alice")), #"{"n":"routed"}"#)
            let message = try await alice.nextMessage()
            #expect(message.data == #"{"n":"routed"}"#, "the misrouted record was delivered as u offset \(message.offset)")
            #expect(message.offset == routed.offset)
            #expect(node.gateway.counters.misroutedSkipped == 1)
            try await Task.sleep(for: .milliseconds(200))
            #expect(await alice.pending().isEmpty)
        }
    }

    @Test("a broadcast record in a partition other than murmur2(\"*\")'s is dropped and counted too")
    func misroutedBroadcastIsDropped() async throws {
        try await GatewayHarness.run { node in
            let bob = try await node.connect("bob")
            let home = Murmur2.partition(forKey: "*", partitionCount: 4)
            try runKcat(
                ["-P", "-b", node.cluster.bootstrapServers, "-t", node.topic, "-k", "*", "-H", "herald-kind=broadcast", "-p", String((home + 1) % 4)],
                stdin: "misrouted broadcast\n"
            )
            let routed = try await node.produce(HeraldRecord(stream: .broadcast), #""routed broadcast""#)
            let message = try await bob.nextMessage()
            #expect(message.stream == "*")
            #expect(message.data == #""routed broadcast""#, "the misrouted broadcast was delivered as * offset \(message.offset)")
            #expect(message.offset == routed.offset)
            #expect(node.gateway.counters.misroutedSkipped == 1)
        }
    }

    @Test("every kcat command in the README and docs/producers.md and the Python snippet deliver to the right streams, none misrouted")
    func documentedSnippetsDeliver() async throws {
        let producers = try String(contentsOf: repositoryRoot().appendingPathComponent("docs/producers.md"), encoding: .utf8)
        let readme = try String(contentsOf: repositoryRoot().appendingPathComponent("README.md"), encoding: .utf8)
        let shell = Self.codeBlocks(producers, language: "sh") + Self.codeBlocks(readme, language: "sh").filter { $0.contains("kcat -P") }
        let python = Self.codeBlocks(producers, language: "python")
        #expect(shell.count == 2, "the kcat blocks of docs/producers.md and the README")
        #expect(python.count == 1)
        try await GatewayHarness.run { node in
            let alice = try await node.connect("alice", channels: ["news"], subscribe: ["news"])
            for block in shell {
                let script = block.replacingOccurrences(of: "BROKERS", with: node.cluster.bootstrapServers)
                    .replacingOccurrences(of: "127.0.0.1:PORT", with: node.cluster.bootstrapServers)
                let result = try run("/bin/sh", ["-e", "-c", script])
                #expect(result.status == 0, "\(script)\n\(result.output)")
            }
            guard let python3 = which("python3") else { throw TestFailure("python3 is not installed") }
            guard try run(python3, ["-c", "import confluent_kafka"]).status == 0 else {
                throw TestFailure("confluent-kafka is not installed: pip install confluent-kafka (scripts/install-deps --test does)")
            }
            let snippet = python[0].replacingOccurrences(of: "BROKERS", with: node.cluster.bootstrapServers)
            let result = try run(python3, ["-c", snippet])
            #expect(result.status == 0, "\(result.output)")

            let expected: Set<String> = [
                #"u {"order":1234,"status":"shipped"}"#, #"c:news "breaking" news-42"#, #"* "maintenance at 22:00""#,
                #"u {"hello":"world"}"#, #"* "hi all""#,
                #"u {"order":1235,"status":"delivered"}"#, #"c:news "more news" news-43"#, #"* "maintenance is over""#,
            ]
            var received: Set<String> = []
            while received.count < expected.count {
                guard let message = try? await alice.nextMessage(within: .seconds(15)) else {
                    throw TestFailure("never delivered: \(expected.subtracting(received).sorted()); misrouted: \(node.gateway.counters.misroutedSkipped)")
                }
                received.insert([message.stream, message.data, message.id].compactMap { $0 }.joined(separator: " "))
            }
            #expect(received == expected)
            #expect(node.gateway.counters.misroutedSkipped == 0)
        }
    }

    /// The bodies of the fenced code blocks of one language.
    static func codeBlocks(_ markdown: String, language: String) -> [String] {
        markdown.matches(of: /```(\w+)\n(.*?)```/.dotMatchesNewlines()).filter { $0.1 == language }.map { String($0.2) }
    }
}
